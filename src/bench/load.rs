//! load_rooms_full: rooms of four speaking, camera-on participants (LiveKit's Python SDK) are
//! added one at a time to one worker with captions, noise suppression and recording on, until
//! the worker reports itself full to the server; caption finals are checked per room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::row;
use crate::devtools::{LocalLiveKitServer, PythonParticipant};
use crate::session::recording::Recorder;
use crate::session::{Captioning, MeetingSession};
use crate::worker::{Shutdown, Worker, WorkerEvent};

pub async fn rooms_full(max_rooms: usize, settle_secs: u64) -> Result<()> {
    crate::livekit::Engine::start(&crate::livekit::library::default_library_path())?;
    let server = LocalLiveKitServer::start().await?;
    let data = std::env::temp_dir().join(format!("ma-bench-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = crate::config::Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.data_dir = data.clone();
    config.recording.auto = true;
    config.agent.status_interval_secs = 1.0;
    config.validate()?;
    let captioning = Captioning::from_config(&config)?.context("captions")?;
    let stats = captioning.recognizer.stats.clone();
    let session = MeetingSession::new(config.audio, Some(captioning))
        .with_recorder(Recorder::from_config(&config)?);
    let mut reports = session.subscribe();
    let worker = Worker::new(config.clone(), Arc::new(session));
    let mut events = worker.subscribe();
    let (shutdown, rx) = tokio::sync::watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(rx));
    let speech = crate::devtools::fixtures::dir()?.join("wer-set.wav");
    let mut participants = Vec::new();
    let mut full_at = None;
    let mut rooms = 0;
    'rooms: for room in 0..max_rooms {
        for p in 0..4 {
            participants.push(PythonParticipant::spawn(
                &server,
                &format!("load-{room}"),
                &format!("p{room}-{p}"),
                &[
                    "--wav",
                    &speech.to_string_lossy(),
                    "--video",
                    "320x180",
                    "--fps",
                    "15",
                ],
            )?);
        }
        rooms = room + 1;
        let finals_before = stats.finals.load(std::sync::atomic::Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(settle_secs);
        let mut loads = Vec::new();
        while Instant::now() < until {
            tokio::select! {
                e = events.recv() => {
                    if let Ok(WorkerEvent::StatusReported { load, full, jobs }) = e {
                        loads.push(load);
                        if full && full_at.is_none() && jobs > 0 {
                            full_at = Some(jobs);
                            eprintln!("room {rooms}: the worker reports full at {jobs} jobs (load {load:.2})");
                            break 'rooms;
                        }
                    }
                }
                _ = reports.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let finals = stats.finals.load(std::sync::atomic::Ordering::Relaxed) - finals_before;
        let mean = loads.iter().sum::<f32>() / loads.len().max(1) as f32;
        eprintln!(
            "{rooms} room(s) of 4: machine load {mean:.2}, {finals} caption finals in {settle_secs} s, agent RSS {:.0} MiB",
            crate::devtools::process_stats::rss_bytes() as f64 / (1024.0 * 1024.0)
        );
    }
    // The rooms running when the worker declared itself full (it takes no more).
    let held = full_at.unwrap_or(rooms);
    eprintln!(
        "finals fitted (degraded) {}, interims superseded {}",
        stats
            .finals_fitted
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .interims_superseded
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    for p in participants {
        p.stop().await;
    }
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    row(
        "load_rooms_full",
        held as f64,
        "rooms of 4 (running at WS_FULL)",
        "-",
        &format!("meeting-agent bench load --max-rooms {max_rooms} --settle {settle_secs}"),
    );
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}
