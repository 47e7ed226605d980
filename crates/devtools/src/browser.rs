//! A user's browser as a participant: Debian's Chromium running `livekit-client` (npm) in a
//! page (tests/browser, installed by scripts/browser_setup.sh), publishing a WAV as its
//! microphone through Chromium's fake capture device and recording, on the host clock, when
//! its own speech ended and when captions arrived through both of livekit-client's caption
//! APIs. Then what the browser saw, as figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::LocalLiveKitServer;
use crate::bench::alignment::{FinalSeen, final_latencies, speech_regions};

fn browser_dir() -> PathBuf {
    crate::repository().join("tests").join("browser")
}

/// Runs the browser in `room` as `identity` for `seconds` after its microphone is published,
/// speaking `wav` (looped unless `once`); returns the page's record (tests/browser/README.md).
pub async fn run(
    server: &LocalLiveKitServer,
    room: &str,
    identity: &str,
    wav: &Path,
    seconds: u32,
    once: bool,
) -> Result<Value> {
    let dir = browser_dir();
    anyhow::ensure!(
        dir.join("node_modules").is_dir(),
        "tests/browser/node_modules is missing: run scripts/browser_setup.sh"
    );
    let out = std::env::temp_dir().join(format!(
        "ma-browser-{}-{room}-{identity}.json",
        std::process::id()
    ));
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("driver.mjs"))
        .args(["--url", &server.ws_url()])
        .args([
            "--api-key",
            &server.api_key,
            "--api-secret",
            &server.api_secret,
        ])
        .args(["--room", room, "--identity", identity])
        .arg("--wav")
        .arg(wav)
        .args(["--seconds", &seconds.to_string()])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true);
    if once {
        command.arg("--no-loop");
    }
    let run = command.output();
    let output = tokio::time::timeout(Duration::from_secs(seconds as u64 + 120), run)
        .await
        .context("the browser driver did not finish")?
        .context("cannot start node (run scripts/browser_setup.sh)")?;
    let record = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    anyhow::ensure!(
        output.status.success(),
        "browser driver failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&record.context("the browser wrote no record")?)
        .context("the browser's record is not JSON")
}

/// One final caption as the browser received it.
#[derive(Debug, Clone)]
pub struct BrowserFinal {
    pub segment_id: String,
    pub text: String,
    /// When the `lk.transcription` stream was read to its end (epoch ms).
    pub done_epoch_ms: f64,
    /// The same segment's end time in the legacy transcription (`RoomEvent.TranscriptionReceived`),
    /// when that arrived too.
    pub end_time_ms: Option<i64>,
}

/// The non-empty final captions of the transcribed track `track_sid`, in arrival order.
pub fn finals(record: &Value, track_sid: &str) -> Vec<BrowserFinal> {
    let mut end_times = std::collections::HashMap::new();
    for event in record["transcriptions"].as_array().into_iter().flatten() {
        for segment in event["segments"].as_array().into_iter().flatten() {
            if segment["final"] == true
                && let (Some(id), Some(end)) =
                    (segment["id"].as_str(), segment["end_time"].as_i64())
            {
                end_times.insert(id.to_string(), end);
            }
        }
    }
    let mut finals: Vec<BrowserFinal> = record["text_streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["final"] == true
                && s["transcribed_track_id"] == track_sid
                && s["text"].as_str().is_some_and(|t| !t.trim().is_empty())
        })
        .filter_map(|s| {
            let segment_id = s["segment_id"].as_str()?.to_string();
            Some(BrowserFinal {
                end_time_ms: end_times.get(&segment_id).copied(),
                text: s["text"].as_str()?.to_string(),
                done_epoch_ms: s["done_epoch_ms"].as_f64()?,
                segment_id,
            })
        })
        .collect();
    finals.sort_by(|a, b| a.done_epoch_ms.total_cmp(&b.done_epoch_ms));
    finals
}

/// The browser's own microphone levels as `(µs since the epoch, dBFS)` per 10 ms frame.
pub fn microphone_levels(record: &Value) -> Vec<(i64, f64)> {
    let envelope = &record["envelope"];
    let t0 = envelope["t0_epoch_ms"].as_f64().unwrap_or(0.0);
    let frame = envelope["frame_ms"].as_f64().unwrap_or(10.0);
    envelope["db"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, db)| Some((((t0 + i as f64 * frame) * 1000.0) as i64, db.as_f64()?)))
        .collect()
}

/// Each final's latency in seconds, end of speech (the browser's own microphone) -> the
/// caption read in the page, for the finals that line up with an end of speech.
pub fn final_latencies_seen(record: &Value, finals: &[BrowserFinal]) -> Vec<f64> {
    let levels = microphone_levels(record);
    let ends: Vec<i64> = speech_regions(&levels, -45.0, 150)
        .iter()
        .map(|r| r.1)
        .collect();
    let seen: Vec<FinalSeen> = finals
        .iter()
        .filter_map(|f| {
            Some(FinalSeen {
                arrival_us: (f.done_epoch_ms * 1000.0) as i64,
                end_ms: f.end_time_ms?,
            })
        })
        .collect();
    final_latencies(&seen, &ends)
        .into_iter()
        .flatten()
        .map(|l| l.1)
        .collect()
}
