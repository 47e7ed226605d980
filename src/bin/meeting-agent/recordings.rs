//! `meeting-agent recordings ...`: stored recordings, on storage (and the store, when it is on).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use meeting_agent::config::Config;

#[derive(Subcommand)]
pub enum RecordingsAction {
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

/// Runs one `recordings` command.
pub async fn run(action: RecordingsAction, config: Config) -> Result<()> {
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
    let mut recorder = Recorder::for_storage(&config).context("recording storage")?;
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
