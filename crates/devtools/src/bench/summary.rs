//! summary_after_end_s: a meeting ends (the room is closed, as a host's "end for everyone"
//! does) -> its summary is in the messaging store. The agent joins directly with captions and
//! the store (SQLite in a scratch folder; extractive summary, no model API), a participant
//! speaks the six-sentence fixture once, and the room is deleted a few seconds after.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::row;
use crate::PythonParticipant;

pub async fn summary_after_end(meetings: usize) -> Result<()> {
    let (server, config, scratch) = super::load::recording_agent_setup("summary").await?;
    // The whole product as configured by default (recording every room too), with the store
    // in the scratch folder and the extractive summary.
    let mut config = config;
    config.store.enabled = true;
    config.store.url = format!("sqlite:{}", scratch.join("store.db").display());
    config.summary = Default::default();
    let services = meeting_agent::services::Services::build(&config).await?;
    let store = services.store.clone().context("the store did not start")?;
    let wav = crate::fixtures::dir()?.join("captions.wav");
    let mut waits = Vec::new();
    for n in 0..meetings.max(1) {
        let room = format!("bench-summary-{n}");
        let _stop = super::meeting::join_with(&server, &room, "agent-summary", services.session())?;
        let mut speaker = PythonParticipant::spawn(
            &server,
            &room,
            "sam",
            &["--wav", &wav.to_string_lossy(), "--once", "--video", "none"],
        )?;
        speaker
            .wait_for(Duration::from_secs(120), |e| e["event"] == "wav_finished")
            .await
            .context("the speaker never finished")?;
        // The last sentence's final caption, then the end of the meeting.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let ended = Instant::now();
        server
            .room_service("DeleteRoom", &serde_json::json!({ "room": room }))
            .await?;
        let deadline = ended + Duration::from_secs(60);
        let wait = loop {
            anyhow::ensure!(Instant::now() < deadline, "{room}: no summary within 60 s");
            let meetings = store.meetings(Some(&room)).await?;
            if let Some(m) = meetings.iter().find(|m| m.ended_at_ms.is_some()) {
                let thread = store.thread(&m.id).await?;
                if thread.iter().any(|message| message.kind == "summary") {
                    break ended.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "{room}: summary in the store {:.2} s after the end",
            wait.as_secs_f64()
        );
        waits.push(wait.as_secs_f64());
        speaker.stop().await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    waits.sort_by(f64::total_cmp);
    row(
        "summary_after_end_s",
        waits[waits.len() / 2],
        &format!(
            "s, median of {} meetings: room closed -> summary in the store (extractive)",
            waits.len()
        ),
        "<= 5",
        &format!("meeting-agent-dev bench summary-after-end --meetings {meetings}"),
    );
    Ok(())
}
