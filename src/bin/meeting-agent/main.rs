//! The `meeting-agent` command line.

mod live;
mod media;
mod process;
mod recordings;
mod store;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use meeting_agent::config::Config;

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
pub enum Command {
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
    Search(store::SearchArgs),
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
        action: recordings::RecordingsAction,
    },
    /// Voice and video messages: queue attachments, see and re-run jobs, run a worker.
    Media {
        #[command(subcommand)]
        action: media::MediaAction,
    },
    /// Delete what is past `[retention]` now (with --dry-run: only count), as the worker does
    /// every `retention.interval_secs`; deletions go into the audit log.
    Retention {
        #[arg(long)]
        dry_run: bool,
    },
    /// The compliance export of a meeting (or, with --conversation, any conversation) as one tar
    /// archive: transcript, summary, messages, recordings and links, media, audit entries.
    Archive {
        /// The meeting id, or with --conversation the conversation id.
        id: String,
        #[arg(long)]
        conversation: bool,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
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
        Command::Search(_)
            | Command::Meetings { .. }
            | Command::Export { .. }
            | Command::Process { .. }
            | Command::Recordings { .. }
            | Command::Media { .. }
            | Command::Retention { .. }
            | Command::Archive { .. }
    ) {
        let config = Config::load_unvalidated(cli.config.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(async move {
            match cli.command {
                Command::Recordings { action } => recordings::run(action, config).await,
                Command::Media { action } => media::run(action, config).await,
                Command::Retention { dry_run } => media::retention(&config, dry_run).await,
                Command::Archive {
                    id,
                    conversation,
                    output,
                } => media::archive(&config, &id, conversation, &output).await,
                Command::Process { dir, room } => {
                    let store = meeting_agent::services::connect_store(&config).await?;
                    process::process(&config, store, &dir, room).await
                }
                command => {
                    store::run(
                        command,
                        meeting_agent::services::connect_store(&config).await?,
                    )
                    .await
                }
            }
        });
    }
    let mut config = Config::load(cli.config.as_deref())?;
    meeting_agent::features::check_config(&config)?;
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
                live::print_config(&config);
                Ok(())
            }
            Command::Worker { .. } => live::run_worker(config).await,
            Command::Join { room, identity } => live::run_join(config, &room, &identity).await,
            Command::Search(_)
            | Command::Meetings { .. }
            | Command::Export { .. }
            | Command::Process { .. }
            | Command::Recordings { .. }
            | Command::Media { .. }
            | Command::Retention { .. }
            | Command::Archive { .. } => unreachable!("handled before configuration"),
        }
    })
}
