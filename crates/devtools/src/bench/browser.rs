//! caption_browser_final_p50_s / p95_s: what a user's browser sees. Chromium runs
//! livekit-client in a page and speaks a recording of human speech (looped: minutes of
//! continuous speech with short pauses) as its microphone; the agent captions it; the page
//! times each final caption against the end of speech on its own microphone, both on this
//! machine's clock.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{percentile, row};
use crate::LocalLiveKitServer;
use crate::browser::{final_latencies_seen, finals};
use meeting_agent::livekit::Engine;

pub async fn caption_browser(seconds: u32, fixture: &str) -> Result<()> {
    Engine::start(&meeting_agent::paths::engine_library())?;
    let dir = crate::fixtures::with_real_speech()?;
    let wav = dir.join(format!("{fixture}.wav"));
    let server = LocalLiveKitServer::start().await?;
    let (session, recognizer) = super::captions::captioning_session(2)?;
    let _stop = super::meeting::join_with(&server, "bench-browser", "agent-browser", session)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = meeting_agent::captions::threads::read_cpu_times();
    let record =
        crate::browser::run(&server, "bench-browser", "chromium", &wav, seconds, false).await?;
    let busy = match (
        cpu_before,
        meeting_agent::captions::threads::read_cpu_times(),
    ) {
        (Some(a), Some(b)) => b.busy_since(&a),
        _ => f64::NAN,
    };
    let track = record["mic"]["track_sid"]
        .as_str()
        .context("the browser published no microphone")?;
    let finals = finals(&record, track);
    anyhow::ensure!(!finals.is_empty(), "no final captions reached the browser");
    let legacy = finals.iter().filter(|f| f.end_time_ms.is_some()).count();
    let mut latencies = final_latencies_seen(&record, &finals);
    anyhow::ensure!(
        !latencies.is_empty(),
        "no final lined up with an end of speech"
    );
    latencies.sort_by(f64::total_cmp);
    let stats = &recognizer.stats;
    eprintln!(
        "{} finals in the browser ({legacy} also as legacy transcriptions), {} lined up; latency {latencies:.2?} s; machine busy {:.0}%; whisper {:.1} CPU s, {} finals fitted for a backlog",
        finals.len(),
        latencies.len(),
        busy * 100.0,
        stats.cpu_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
        stats
            .finals_fitted
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    for f in &finals {
        eprintln!("  {}: {}", f.segment_id, f.text);
    }
    let cmd =
        format!("meeting-agent-dev bench caption-browser --seconds {seconds} --fixture {fixture}");
    let unit = format!(
        "s ({} finals, {seconds} s of {fixture} looped, livekit-client in Chromium, machine {:.0} % busy)",
        latencies.len(),
        busy * 100.0
    );
    row(
        "caption_browser_final_p50_s",
        percentile(&latencies, 0.5),
        &unit,
        "<= 1.2",
        &cmd,
    );
    row(
        "caption_browser_final_p95_s",
        percentile(&latencies, 0.95),
        &unit,
        "<= 2.0",
        &cmd,
    );
    Ok(())
}
