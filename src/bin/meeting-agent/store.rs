//! Commands over the messaging store, without a LiveKit server: `search`, `meetings`, `export`.

use anyhow::{Context, Result};
use meeting_agent::store::Store;

use crate::Command;

/// `meeting-agent search`'s arguments.
#[derive(clap::Args)]
pub struct SearchArgs {
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
}

/// Runs one store command.
pub async fn run(command: Command, store: Store) -> Result<()> {
    match command {
        Command::Search(SearchArgs {
            text,
            room,
            speaker,
            since,
            until,
            limit,
            json,
        }) => {
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
            // The meeting controls during it go in as notes (WebVTT and text).
            let notes = match store.meeting(&meeting).await? {
                Some(found) => store.meeting_notes(&found).await?,
                None => Vec::new(),
            };
            print!(
                "{}",
                meeting_agent::captions::export::export_with_notes(&segments, &notes, format)
            );
        }
        _ => unreachable!("only store commands come here"),
    }
    Ok(())
}
