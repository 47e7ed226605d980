//! The commands that join LiveKit: `worker` (take jobs until SIGTERM) and `join` (one room).

use anyhow::{Context, Result};
use meeting_agent::config::Config;
use meeting_agent::livekit::{Engine, token};
use meeting_agent::services::Services;
use meeting_agent::worker::Shutdown;
use tokio::sync::watch;

/// `check-config`: the configuration without its secrets.
pub fn print_config(config: &Config) {
    println!(
        "livekit.url = {}\nlivekit.api_key = {}\nagent.name = {:?}\nagent.load_threshold = {}\nengine.library = {}",
        config.livekit.url,
        config.livekit.api_key,
        config.agent.name,
        config.agent.load_threshold,
        config.engine.library.display()
    );
}

pub async fn run_worker(config: Config) -> Result<()> {
    Engine::start(&config.engine.library)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(Shutdown::Running);
    tokio::spawn(forward_signals(shutdown_tx));
    let services = Services::build(&config).await?;
    services.start_background_jobs();
    if config.api.enabled {
        // One store (one connection pool) for the meetings and the API.
        let state = meeting_agent::api::ApiState::new(
            &config,
            services.store.clone(),
            services.recorder.clone(),
        );
        let bind = config.api.bind.clone();
        // Bind now, so a taken port is an error at start rather than a log line later.
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("control API `api.bind` = {bind}"))?;
        tokio::spawn(async move {
            if let Err(e) = meeting_agent::api::serve_on(listener, state).await {
                tracing::error!(error = %e, "control API stopped");
            }
        });
    }
    // Voice and video messages in the same process, when the store and captions are on.
    let (media_stop, media_stopped) = watch::channel(false);
    services.start_media_workers(media_stopped.clone());
    // Webhooks and e-mail follow-ups from the store's outbox.
    services.start_outbox_dispatchers(media_stopped);
    let worker = services.worker();
    let result = worker.run(shutdown_rx).await.context("worker stopped");
    let _ = media_stop.send(true);
    result
}

pub async fn run_join(config: Config, room: &str, identity: &str) -> Result<()> {
    Engine::start(&config.engine.library)?;
    let token = token::room_token(
        &config.livekit.api_key,
        &config.livekit.api_secret,
        room,
        identity,
        &config.agent.participant_name,
    )?;
    let (terminate_tx, terminate_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = terminate_tx.send(true);
    });
    let services = Services::build(&config).await?;
    services.start_background_jobs();
    services
        .session()
        .run_in_room(&config.ws_url(), &token, terminate_rx)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("join")
}

/// First SIGTERM/SIGINT drains, the second terminates running jobs.
async fn forward_signals(shutdown: watch::Sender<Shutdown>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for level in [Shutdown::Drain, Shutdown::Terminate] {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = shutdown.send(level);
    }
}
