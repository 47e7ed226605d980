//! The `meeting-agent` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meeting_agent::config::Config;
use meeting_agent::livekit::{Engine, token};
use meeting_agent::services::Services;
use meeting_agent::worker::{Shutdown, Worker};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "meeting-agent",
    version,
    about = "Headless LiveKit media worker"
)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "MEETING_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum RecordingsAction {
    /// Recordings in storage, oldest first.
    List {
        #[arg(long)]
        room: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A playback link (presigned for S3, `recording.link_expiry_secs`).
    Link { id: String },
    /// Deletes a recording (file or object, its metadata, its row in the store).
    Delete { id: String },
    /// Deletes recordings that started more than DAYS days ago.
    Prune { days: u32 },
    /// Decodes a recording file and prints its streams and length.
    Check { path: PathBuf },
}

#[derive(Subcommand)]
enum Command {
    /// Register with the LiveKit server as an agent worker and take jobs until SIGTERM.
    Worker {
        /// Agent name for explicit dispatch (overrides the configuration; empty = automatic).
        #[arg(long)]
        agent_name: Option<String>,
    },
    /// Join one room directly (debugging), until Ctrl-C.
    Join {
        #[arg(long)]
        room: String,
        #[arg(long, default_value = "meeting-agent")]
        identity: String,
    },
    /// Load and validate the configuration, then print it without secrets.
    CheckConfig,
    /// Full-text search over stored transcripts and messages.
    Search {
        /// Words to find (all of them).
        text: String,
        #[arg(long)]
        room: Option<String>,
        /// Speaker (transcripts) or sender (messages).
        #[arg(long)]
        speaker: Option<String>,
        /// From this day (YYYY-MM-DD, UTC) on.
        #[arg(long)]
        since: Option<String>,
        /// Before this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// One JSON object per hit.
        #[arg(long)]
        json: bool,
    },
    /// List stored meetings, newest first.
    Meetings {
        #[arg(long)]
        room: Option<String>,
    },
    /// Run the meeting pipelines over recorded media: DIR/<identity>.wav per participant's
    /// microphone, DIR/<identity>.mp4 (mkv, webm, mov, ivf) per camera. Writes the meeting to the
    /// messaging store, its transcript and summary and the composite recording to DIR/out/.
    Process {
        dir: PathBuf,
        /// Room name for the meeting (default: DIR's name).
        #[arg(long)]
        room: Option<String>,
    },
    /// Stored recordings: list, playback link, delete, retention, inspect a file.
    Recordings {
        #[command(subcommand)]
        action: RecordingsAction,
    },
    /// Print a stored meeting's transcript.
    Export {
        /// The meeting id (`meeting-agent meetings` lists them).
        meeting: String,
        /// vtt, srt, json or txt.
        #[arg(long, default_value = "vtt")]
        format: String,
    },
}

fn main() -> std::process::ExitCode {
    // Before anything else, so everything the agent writes (database, transcripts,
    // recordings, uploads, spools) is readable by its own user only (0600 files, 0700 folders).
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let cli = Cli::parse();
    let success = match run(cli) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("meeting-agent: error: {e:#}");
            false
        }
    };
    meeting_agent::services::exit(success)
}

fn run(cli: Cli) -> Result<()> {
    if matches!(
        cli.command,
        Command::Search { .. }
            | Command::Meetings { .. }
            | Command::Export { .. }
            | Command::Process { .. }
            | Command::Recordings { .. }
    ) {
        let config = Config::load_unvalidated(cli.config.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(offline(cli.command, config));
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Command::Worker {
        agent_name: Some(name),
    } = &cli.command
    {
        config.agent.name = name.clone();
        config.validate()?;
    }
    meeting_agent::telemetry::init_logging(config.log.format, &config.log.filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::CheckConfig => {
                println!(
                    "livekit.url = {}\nlivekit.api_key = {}\nagent.name = {:?}\nagent.load_threshold = {}\nengine.library = {}",
                    config.livekit.url,
                    config.livekit.api_key,
                    config.agent.name,
                    config.agent.load_threshold,
                    config.engine.library.display()
                );
                Ok(())
            }
            Command::Worker { .. } => run_worker(config).await,
            Command::Join { room, identity } => run_join(config, &room, &identity).await,
            Command::Search { .. }
            | Command::Meetings { .. }
            | Command::Export { .. }
            | Command::Process { .. }
            | Command::Recordings { .. } => unreachable!("handled before configuration"),
        }
    })
}

async fn run_worker(config: Config) -> Result<()> {
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
    let worker = Worker::new(config, Arc::new(services.session()));
    worker.run(shutdown_rx).await.context("worker stopped")
}

async fn run_join(config: Config, room: &str, identity: &str) -> Result<()> {
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

/// Commands over the messaging store, without a LiveKit server.
/// `meeting-agent recordings ...`: works on storage (and the store, when it is on).
async fn recordings(action: RecordingsAction, config: Config) -> Result<()> {
    use meeting_agent::features::recording::Recorder;
    if let RecordingsAction::Check { path } = &action {
        let decoded = meeting_agent::recording::inspect::decode(path, &[])?;
        println!(
            "video: {}\naudio: {}\nframes: {}\nduration: {:.3} s",
            decoded.video_caps,
            decoded.audio_caps,
            decoded.frames.len(),
            decoded.duration().as_secs_f64()
        );
        return Ok(());
    }
    let mut recorder = Recorder::from_config(&config).context("recording storage")?;
    if config.store.enabled {
        recorder = recorder.with_store(
            meeting_agent::store::Store::connect(&config.store_url())
                .await
                .context("messaging store")?,
        );
    }
    let find = |id: String| {
        let recorder = recorder.clone();
        async move {
            recorder
                .storage
                .list()
                .await?
                .into_iter()
                .find(|m| m.id == id)
                .ok_or(meeting_agent::recording::RecordingError::NotFound(id))
        }
    };
    match action {
        RecordingsAction::List { room, json } => {
            for meta in recorder.storage.list().await? {
                if room.as_ref().is_some_and(|r| *r != meta.room) {
                    continue;
                }
                if json {
                    println!("{}", serde_json::to_string(&meta)?);
                } else {
                    println!(
                        "{}  {}  {}  {:>8.1} s  {:>10} B  {:?}  {}",
                        meta.id,
                        meeting_agent::summary::utc_time(meta.started_unix_ms),
                        meta.room,
                        meta.duration_ms.unwrap_or(0) as f64 / 1000.0,
                        meta.size_bytes.unwrap_or(0),
                        meta.status,
                        meta.participants.join(",")
                    );
                }
            }
        }
        RecordingsAction::Link { id } => {
            let meta = find(id).await?;
            let expiry = std::time::Duration::from_secs(config.recording.link_expiry_secs);
            println!("{}", recorder.storage.link(&meta, expiry).await?);
        }
        RecordingsAction::Delete { id } => {
            let meta = find(id).await?;
            recorder.delete(&meta).await?;
            println!("deleted {}", meta.id);
        }
        RecordingsAction::Prune { days } => {
            let cutoff =
                meeting_agent::captions::journal::unix_ms() as i64 - days as i64 * 86_400_000;
            println!("deleted {}", recorder.delete_older_than(cutoff).await?);
        }
        RecordingsAction::Check { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn offline(command: Command, config: Config) -> Result<()> {
    if let Command::Recordings { action } = command {
        return recordings(action, config).await;
    }
    let store = meeting_agent::services::connect_store(&config).await?;
    match command {
        Command::Search {
            text,
            room,
            speaker,
            since,
            until,
            limit,
            json,
        } => {
            let day = |d: Option<String>| -> Result<Option<i64>> {
                d.map(|d| {
                    meeting_agent::summary::parse_day_ms(&d)
                        .with_context(|| format!("{d:?} is not a YYYY-MM-DD date"))
                })
                .transpose()
            };
            let hits = store
                .search(&meeting_agent::store::SearchQuery {
                    text,
                    room,
                    speaker,
                    since_ms: day(since)?,
                    until_ms: day(until)?,
                    limit,
                })
                .await?;
            for hit in &hits {
                if json {
                    println!("{}", serde_json::to_string(hit)?);
                } else {
                    let at = hit
                        .offset_ms
                        .map(meeting_agent::summary::clock)
                        .unwrap_or_default();
                    println!(
                        "{} {} {} {at}: {}",
                        hit.conversation, hit.kind, hit.speaker, hit.snippet
                    );
                }
            }
            if hits.is_empty() && !json {
                eprintln!("no matches");
            }
        }
        Command::Meetings { room } => {
            for m in store.meetings(room.as_deref()).await? {
                let length = m
                    .ended_at_ms
                    .map(|e| meeting_agent::summary::clock(e - m.started_at_ms))
                    .unwrap_or_else(|| "running".into());
                println!("{}	{}	{length}", m.id, m.room);
            }
        }
        Command::Export { meeting, format } => {
            let format: meeting_agent::captions::export::Format =
                format.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let segments = store.segments(&meeting).await?;
            anyhow::ensure!(
                !segments.is_empty(),
                "no transcript stored for meeting {meeting:?}"
            );
            print!(
                "{}",
                meeting_agent::captions::export::export(&segments, format)
            );
        }
        Command::Process { dir, room } => process(&config, store, &dir, room).await?,
        _ => unreachable!("only offline commands come here"),
    }
    Ok(())
}

async fn process(
    config: &Config,
    store: meeting_agent::store::Store,
    dir: &std::path::Path,
    room: Option<String>,
) -> Result<()> {
    use meeting_agent::captions::export::{Format, export};
    use meeting_agent::features::meeting_log::{MeetingLog, MeetingLogOptions};
    let tracks = meeting_agent::offline::tracks(dir)?;
    let room = room.unwrap_or_else(|| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("offline")
            .to_string()
    });
    // The live path's recognizer, segmenter and noise suppression, as configured.
    let captioning = meeting_agent::features::captions::Captioning::from_config(config)?
        .context("`process` transcribes: captions are off (`captions.enabled = false`)")?;
    eprintln!("transcribing {} participants ...", tracks.len());
    let (segments, lengths) =
        meeting_agent::offline::transcribe(&tracks, &captioning, config.audio.noise_suppression)
            .await?;
    let length_ms = lengths.iter().map(|l| l.1).max().unwrap_or(0);
    let now = meeting_agent::captions::journal::unix_ms() as i64;
    let meeting = meeting_agent::store::Meeting::new(&room, now - length_ms);
    let (log, task) = MeetingLog::start(
        store.clone(),
        meeting.clone(),
        MeetingLogOptions::from_config(config),
    );
    for (identity, length) in &lengths {
        log.presence_at(identity, true, 0);
        log.presence_at(identity, false, *length);
    }
    for s in &segments {
        log.final_caption(s.clone());
    }
    drop(log);
    task.await.context("writing the meeting")?;
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    for (format, ext) in [
        (Format::WebVtt, "vtt"),
        (Format::Srt, "srt"),
        (Format::Json, "json"),
        (Format::Text, "txt"),
    ] {
        std::fs::write(
            out.join(format!("transcript.{ext}")),
            export(&segments, format),
        )?;
    }
    // The composite recording: every camera in the layout, every microphone mixed.
    let media = meeting_agent::offline::media(dir)?;
    let recording = out.join("recording.mp4");
    let settings =
        meeting_agent::recording::pipeline::PipelineSettings::from_config(&config.recording)?;
    settings.check()?;
    let layout = config.recording.layout;
    let target = recording.clone();
    let length = tokio::task::spawn_blocking(move || {
        meeting_agent::recording::offline::composite(&media, &settings, layout, &target)
    })
    .await??;
    let thread = store.thread(&meeting.id).await?;
    let summary = thread
        .iter()
        .rev()
        .find(|m| m.kind == "summary")
        .map(|m| m.text.clone())
        .unwrap_or_default();
    std::fs::write(out.join("summary.txt"), &summary)?;
    println!(
        "meeting {} ({} segments, {} messages in its thread)",
        meeting.id,
        segments.len(),
        thread.len()
    );
    println!(
        "transcript: {}/transcript.{{vtt,srt,json,txt}}",
        out.display()
    );
    println!(
        "recording: {} ({:.1} s)\n",
        recording.display(),
        length.as_secs_f64()
    );
    print!("{summary}");
    Ok(())
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
