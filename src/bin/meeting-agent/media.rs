//! `meeting-agent media`: the voice and video message queue (enqueue an attachment, see jobs,
//! re-run one, run a worker); `retention` and `archive`, the data's end of life.

use anyhow::{Context, Result};
use meeting_agent::config::Config;
use meeting_agent::store::JobStatus;

#[derive(clap::Subcommand)]
pub enum MediaAction {
    /// Queue a message's attachment: SOURCE is file:PATH (under `media_messages.dir`) or
    /// s3:KEY (the recordings' bucket).
    Enqueue { message: String, source: String },
    /// Jobs as JSON lines: one message's, or all (newest first), or those with --status.
    Status {
        message: Option<String>,
        /// queued, running, done or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Queue a job again now, whatever happened to it.
    Rerun { message: String },
    /// Run a media worker until Ctrl-C (or, with --once, until the queue is empty).
    Work {
        #[arg(long)]
        once: bool,
    },
}

pub async fn run(action: MediaAction, config: Config) -> Result<()> {
    config.validate_media()?;
    let store = meeting_agent::services::connect_store(&config).await?;
    let now = meeting_agent::captions::journal::unix_ms() as i64;
    match action {
        MediaAction::Enqueue { message, source } => {
            meeting_agent::media_messages::check_job(&message, &source)?;
            let added = store.enqueue_media(&message, &source, now).await?;
            println!("{}", if added { "queued" } else { "already queued" });
        }
        MediaAction::Status { message, status } => {
            let jobs = match message {
                Some(m) => store.media_job(&m).await?.into_iter().collect(),
                None => {
                    let status = status
                        .map(|s| s.parse::<JobStatus>().map_err(anyhow::Error::msg))
                        .transpose()?;
                    store.media_jobs(status).await?
                }
            };
            for job in jobs {
                println!("{}", serde_json::to_string(&job)?);
            }
        }
        MediaAction::Rerun { message } => {
            anyhow::ensure!(
                store.requeue_media(&message, now).await?,
                "no job for message {message:?}"
            );
            println!("queued");
        }
        MediaAction::Work { once } => {
            meeting_agent::telemetry::init_logging(config.log.format, &config.log.filter);
            let services = meeting_agent::services::Services::build(&config).await?;
            let worker = services
                .media_worker()
                .context("a media worker needs the store and captions (captions.enabled)")?;
            if once {
                while worker.run_once().await?.is_some() {}
            } else {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = stop.send(true);
                });
                worker.run(stopped).await;
            }
        }
    }
    Ok(())
}

/// `meeting-agent retention`: one pass now; prints what it deleted (or would).
pub async fn retention(config: &Config, dry_run: bool) -> Result<()> {
    let store = meeting_agent::services::connect_store(config).await?;
    // Storage only: no GStreamer needed to list and delete recordings.
    let recorder = meeting_agent::features::recording::Recorder::for_storage(config)
        .ok()
        .map(|r| r.with_store(store.clone()));
    let report = meeting_agent::compliance::retention::run_configured(
        config,
        &store,
        recorder.as_ref(),
        dry_run,
    )
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `meeting-agent archive`: the compliance export into `output` (0600).
pub async fn archive(
    config: &Config,
    id: &str,
    conversation: bool,
    output: &std::path::Path,
) -> Result<()> {
    let store = meeting_agent::services::connect_store(config).await?;
    let recorder = meeting_agent::features::recording::Recorder::for_storage(config).ok();
    let archive = if conversation {
        meeting_agent::compliance::archive::conversation(&store, id).await?
    } else {
        meeting_agent::compliance::archive::meeting(&store, recorder.as_ref(), id).await?
    }
    .with_context(|| format!("nothing stored for {id:?}"))?;
    std::fs::write(output, archive)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
