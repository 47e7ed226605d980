//! Voice messages through the media job queue (SQLite, in-process workers, the configured
//! whisper model): voice_msg_ready_p50_s, one Ogg/Opus voice message (the spoken-sentences
//! fixture, 9.6 s) queued at a time until its transcript and waveform are on the message;
//! voice_msg_throughput_x_realtime, a full queue worked off by `workers` workers, audio seconds
//! per wall second.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use meeting_agent::config::Config;
use meeting_agent::media_messages::worker::MediaWorker;
use meeting_agent::store::{JobStatus, Store};

use super::{percentile, row};

fn now_ms() -> i64 {
    meeting_agent::captions::journal::unix_ms() as i64
}

/// The voice message: the fixture's three sentences as a browser's MediaRecorder sends them.
fn voice_message(media: &std::path::Path) -> Result<std::path::PathBuf> {
    let wav = crate::fixtures::dir()?.join("speech.wav");
    let out = media.join("voice.ogg");
    let status = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", wav.display()))
        .args([
            "!",
            "wavparse",
            "!",
            "audioconvert",
            "!",
            "audioresample",
            "!",
            "opusenc",
        ])
        .args(["!", "oggmux", "!", "filesink"])
        .arg(format!("location={}", out.display()))
        .status()
        .context("gst-launch-1.0")?;
    anyhow::ensure!(status.success(), "cannot encode the voice message");
    Ok(out)
}

async fn done(store: &Store, message: &str) -> Result<serde_json::Value> {
    loop {
        let job = store.media_job(message).await?.context("the job")?;
        match job.status {
            JobStatus::Done => {
                return Ok(serde_json::from_str(job.result.as_deref().unwrap_or("{}"))?);
            }
            JobStatus::Failed => anyhow::bail!("{message} failed: {:?}", job.error),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

pub async fn voice_messages(count: usize, workers: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("bench-media-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let media = dir.join("media");
    std::fs::create_dir_all(&media)?;
    voice_message(&media)?;
    let store = Store::connect(&format!("sqlite:{}", dir.join("store.db").display())).await?;
    let mut config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.media_messages.poll_ms = 20;
    let captioning = meeting_agent::features::captions::Captioning::from_config(&config)?
        .context("captions are enabled by default")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let start_workers = |n: usize| {
        (0..n)
            .map(|_| {
                let worker = MediaWorker::new(
                    store.clone(),
                    captioning.clone(),
                    config.media_messages.clone(),
                    media.clone(),
                    None,
                    "meeting-agent".into(),
                );
                let stopped = stopped.clone();
                tokio::spawn(async move { worker.run(stopped).await })
            })
            .collect::<Vec<_>>()
    };

    // Ready: one message at a time, one worker waiting for it.
    let one = start_workers(1);
    let mut ready = Vec::new();
    let mut audio_s = 0.0;
    for i in 0..count {
        let message = format!("ready-{i}");
        let queued = Instant::now();
        store
            .enqueue_media(&message, "file:voice.ogg", now_ms())
            .await?;
        let result = done(&store, &message).await?;
        ready.push(queued.elapsed().as_secs_f64());
        anyhow::ensure!(
            result["transcript"]
                .as_str()
                .is_some_and(|t| t.contains("budget")),
            "{result}"
        );
        audio_s = result["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    }
    stop.send(true)?;
    for task in one {
        task.await?;
    }
    ready.sort_by(f64::total_cmp);

    // Throughput: the queue full, `workers` workers.
    let _ = stop.send(false);
    for i in 0..count {
        store
            .enqueue_media(&format!("bulk-{i}"), "file:voice.ogg", now_ms())
            .await?;
    }
    let started = Instant::now();
    let many = start_workers(workers);
    for i in 0..count {
        done(&store, &format!("bulk-{i}")).await?;
    }
    let wall = started.elapsed().as_secs_f64();
    stop.send(true)?;
    for task in many {
        task.await?;
    }
    let throughput = count as f64 * audio_s / wall;
    eprintln!(
        "{count} voice messages of {audio_s:.1} s: ready p50 {:.2} s (min {:.2}, max {:.2}); {workers} worker(s) worked off {count} in {wall:.1} s",
        percentile(&ready, 0.5),
        ready[0],
        ready[ready.len() - 1]
    );
    let command =
        format!("meeting-agent-dev bench voice-messages --count {count} --workers {workers}");
    row(
        "voice_msg_ready_p50_s",
        percentile(&ready, 0.5),
        "s",
        "<= 2.5",
        &command,
    );
    row(
        "voice_msg_throughput_x_realtime",
        throughput,
        "x",
        ">= 4",
        &command,
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
