//! load_rooms_full: rooms of four speaking, camera-on participants (LiveKit's Python SDK) are
//! added one at a time to one worker with captions, noise suppression and recording on, until
//! the worker reports itself full to the server. The same run is the load test
//! (`tests/load.rs`): every speaker's finals are kept, every final asked for is transcribed,
//! and the agent's memory stays bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::row;
use crate::process_stats::rss_bytes;
use crate::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::captions::journal::Journal;
use meeting_agent::worker::{Shutdown, Worker, WorkerEvent};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Rooms of four started.
    pub rooms: usize,
    /// Jobs running when the worker first reported full (`None`: it never did).
    pub full_at_jobs: Option<usize>,
    /// Final captions kept in the transcripts, per speaker.
    pub finals_by_speaker: BTreeMap<String, usize>,
    pub finals_requested: u64,
    /// Finals transcribed once the speakers stopped (at most a minute later).
    pub finals_done: u64,
    /// Finals the recognizer's bounded queue refused (journaled without text).
    pub finals_refused: u64,
    pub finals_fitted: u64,
    pub interims_superseded: u64,
    /// Largest resident set of the process seen while the rooms ran.
    pub peak_rss_bytes: u64,
}

/// A room of four participants who speak (`speech`, looped) with their cameras on
/// (320x180, 15 fps): the unit of load of the load figures.
pub fn speaking_room(
    server: &LocalLiveKitServer,
    room: &str,
    speech: &std::path::Path,
) -> Result<Vec<PythonParticipant>> {
    speaking_room_with_backgrounds(server, room, speech, 0)
}

/// [`speaking_room`] where the first `blurred` participants ask for a blurred background
/// (`vb.mode=blur`), so the agent also runs virtual backgrounds.
pub fn speaking_room_with_backgrounds(
    server: &LocalLiveKitServer,
    room: &str,
    speech: &std::path::Path,
    blurred: usize,
) -> Result<Vec<PythonParticipant>> {
    let speech = speech.to_string_lossy();
    (0..4)
        .map(|p| {
            let mut args = vec!["--wav", &speech, "--video", "320x180", "--fps", "15"];
            if p < blurred {
                args.extend(["--attributes", "vb.mode=blur"]);
            }
            PythonParticipant::spawn(server, room, &format!("{room}-p{p}"), &args)
                .map_err(Into::into)
        })
        .collect()
}

/// The engine, a livekit-server on loopback, and the configuration of an agent that records
/// every room it joins into a fresh scratch folder (`ma-bench-<tag>-<pid>`, returned).
pub(crate) async fn recording_agent_setup(
    tag: &str,
) -> Result<(
    LocalLiveKitServer,
    meeting_agent::config::Config,
    std::path::PathBuf,
)> {
    meeting_agent::livekit::Engine::start(&meeting_agent::paths::engine_library())?;
    let server = LocalLiveKitServer::start().await?;
    let data = std::env::temp_dir().join(format!("ma-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = meeting_agent::config::Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.data_dir = data.clone();
    config.recording.auto = true;
    config.recording.dir = data.join("recordings");
    config.validate()?;
    Ok((server, config, data))
}

/// Adds rooms (each given `settle_secs`) until the worker reports full or `max_rooms` run.
pub async fn rooms_until_full(max_rooms: usize, settle_secs: u64) -> Result<LoadOutcome> {
    let (server, mut config, data) = recording_agent_setup("load").await?;
    config.agent.status_interval_secs = 1.0;
    config.validate()?;
    let services = meeting_agent::services::Services::build(&config).await?;
    let stats = services
        .captioning
        .as_ref()
        .context("captions")?
        .recognizer
        .stats
        .clone();
    let session = services.session();
    let mut reports = session.subscribe();
    let worker = Worker::new(config.clone(), Arc::new(session));
    let mut events = worker.subscribe();
    let (shutdown, rx) = tokio::sync::watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(rx));
    let speech = crate::fixtures::dir()?.join("wer-set.wav");
    let mut participants = Vec::new();
    let mut outcome = LoadOutcome::default();
    'rooms: for room in 0..max_rooms {
        participants.extend(speaking_room(&server, &format!("load-{room}"), &speech)?);
        outcome.rooms = room + 1;
        let finals_before = stats.finals.load(Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(settle_secs);
        let mut loads = Vec::new();
        while Instant::now() < until {
            tokio::select! {
                e = events.recv() => {
                    if let Ok(WorkerEvent::StatusReported { load, full, jobs }) = e {
                        loads.push(load);
                        outcome.peak_rss_bytes = outcome.peak_rss_bytes.max(rss_bytes());
                        if full && outcome.full_at_jobs.is_none() && jobs > 0 {
                            outcome.full_at_jobs = Some(jobs);
                            eprintln!("room {}: the worker reports full at {jobs} jobs (load {load:.2})", outcome.rooms);
                            // The full worker keeps serving what it has: one more settle period.
                            tokio::time::sleep(Duration::from_secs(settle_secs)).await;
                            break 'rooms;
                        }
                    }
                }
                _ = reports.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let finals = stats.finals.load(Ordering::Relaxed) - finals_before;
        let mean = loads.iter().sum::<f32>() / loads.len().max(1) as f32;
        eprintln!(
            "{} room(s) of 4: machine load {mean:.2}, {finals} caption finals in {settle_secs} s, agent RSS {:.0} MiB",
            outcome.rooms,
            rss_bytes() as f64 / (1024.0 * 1024.0)
        );
    }
    outcome.peak_rss_bytes = outcome.peak_rss_bytes.max(rss_bytes());
    for p in participants {
        p.stop().await;
    }
    // Every final asked for is transcribed, however far behind the recognizer fell. The
    // agent closes each speaker's last utterance when it sees them leave: a moment later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drain_until = Instant::now() + Duration::from_secs(60);
    while stats.finals_transcribed.load(Ordering::Relaxed)
        + stats.finals_refused.load(Ordering::Relaxed)
        < stats.finals_requested.load(Ordering::Relaxed)
        && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcome.finals_requested = stats.finals_requested.load(Ordering::Relaxed);
    outcome.finals_done = stats.finals_transcribed.load(Ordering::Relaxed);
    outcome.finals_refused = stats.finals_refused.load(Ordering::Relaxed);
    outcome.finals_fitted = stats.finals_fitted.load(Ordering::Relaxed);
    outcome.interims_superseded = stats.interims_superseded.load(Ordering::Relaxed);
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    // The last finals are published and journaled by their own tasks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for entry in std::fs::read_dir(data.join("transcripts"))? {
        for caption in Journal::read(&entry?.path())? {
            *outcome
                .finals_by_speaker
                .entry(caption.participant)
                .or_default() += 1;
        }
    }
    let _ = std::fs::remove_dir_all(data);
    Ok(outcome)
}

/// The bench: prints the figure.
pub async fn rooms_full(max_rooms: usize, settle_secs: u64) -> Result<()> {
    let outcome = rooms_until_full(max_rooms, settle_secs).await?;
    eprintln!(
        "finals {} of {} requested, fitted (degraded) {}, interims superseded {}, peak RSS {:.0} MiB; finals per speaker {:?}",
        outcome.finals_done,
        outcome.finals_requested,
        outcome.finals_fitted,
        outcome.interims_superseded,
        outcome.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        outcome.finals_by_speaker
    );
    // The rooms running when the worker declared itself full (it takes no more).
    let held = outcome.full_at_jobs.unwrap_or(outcome.rooms);
    row(
        "load_rooms_full",
        held as f64,
        "rooms of 4 (running at WS_FULL)",
        "-",
        &format!("meeting-agent-dev bench load --max-rooms {max_rooms} --settle {settle_secs}"),
    );
    Ok(())
}
