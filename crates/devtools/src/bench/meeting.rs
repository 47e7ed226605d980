//! Meeting-level figures, measured against a real livekit-server on loopback with LiveKit's
//! Python SDK as the publishing participants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::{broadcast, watch};

use crate::process_stats::{cpu_seconds, rss_bytes};
use crate::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::livekit::{Engine, token};
use meeting_agent::session::{MeetingSession, SessionReport};
use meeting_agent::worker::{Shutdown, Worker, WorkerEvent};

use super::{percentile, row};

fn start_engine() -> Result<()> {
    Engine::start(&meeting_agent::paths::engine_library())?;
    Ok(())
}

fn local_config(server: &LocalLiveKitServer) -> Config {
    let mut config = Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.agent.load_threshold = 1.0;
    config
}

async fn next_report(
    rx: &mut broadcast::Receiver<SessionReport>,
    timeout: Duration,
    pred: impl Fn(&SessionReport) -> bool,
) -> Result<SessionReport> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(r) if pred(&r) => return Ok(r),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(anyhow::anyhow!(e)),
            }
        }
    })
    .await
    .context("timed out waiting for the agent")?
}

/// Room created (RoomService.CreateRoom) -> agent joined (its connect completed), per room.
pub async fn dispatch(rooms: usize) -> Result<()> {
    start_engine()?;
    let server = LocalLiveKitServer::start().await?;
    let session = FeatureSet::default().session();
    let mut reports = session.subscribe();
    let worker = Worker::new(local_config(&server), Arc::new(session));
    let mut events = worker.subscribe();
    let (_shutdown_tx, shutdown_rx) = watch::channel(Shutdown::Running);
    tokio::spawn(worker.run(shutdown_rx));
    tokio::time::timeout(Duration::from_secs(15), async {
        while !matches!(events.recv().await, Ok(WorkerEvent::Registered { .. })) {}
    })
    .await
    .context("worker did not register")?;

    let mut latencies = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let name = format!("bench-dispatch-{i}");
        let t0 = Instant::now();
        server
            .room_service("CreateRoom", &serde_json::json!({ "name": name }))
            .await?;
        next_report(
            &mut reports,
            Duration::from_secs(20),
            |r| matches!(r, SessionReport::Joined { room, .. } if *room == name),
        )
        .await?;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        server
            .room_service("DeleteRoom", &serde_json::json!({ "room": name }))
            .await?;
    }
    latencies.sort_by(f64::total_cmp);
    eprintln!("dispatch latencies (ms, sorted): {latencies:.0?}");
    let cmd = format!("meeting-agent-dev bench dispatch --rooms {rooms}");
    row(
        "dispatch_p50_ms",
        percentile(&latencies, 0.5),
        "ms",
        "<= 300",
        &cmd,
    );
    row(
        "dispatch_p95_ms",
        percentile(&latencies, 0.95),
        "ms",
        "-",
        &cmd,
    );
    Ok(())
}

async fn publishers(
    server: &LocalLiveKitServer,
    room: &str,
    count: usize,
    args: &[&str],
) -> Result<Vec<PythonParticipant>> {
    let mut list = Vec::new();
    for i in 0..count {
        let mut p = PythonParticipant::spawn(server, room, &format!("{room}-pub{i}"), args)?;
        let video = !args.windows(2).any(|w| w == ["--video", "none"]);
        let want = if video { 2 } else { 1 };
        for _ in 0..want {
            p.wait_for(Duration::from_secs(30), |e| e["event"] == "published")
                .await
                .context("publisher did not publish")?;
        }
        list.push(p);
    }
    Ok(list)
}

async fn join(
    server: &LocalLiveKitServer,
    room: &str,
    identity: &str,
) -> Result<(
    MeetingSession,
    watch::Sender<bool>,
    broadcast::Receiver<SessionReport>,
)> {
    let session = FeatureSet::default().session();
    let reports = session.subscribe();
    let stop = join_with(server, room, identity, session.clone())?;
    Ok((session, stop, reports))
}

/// Runs `session` in `room` as `identity` until the returned sender says stop (or is dropped).
pub(crate) fn join_with(
    server: &LocalLiveKitServer,
    room: &str,
    identity: &str,
    session: MeetingSession,
) -> Result<watch::Sender<bool>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let jwt = token::room_token(
        &server.api_key,
        &server.api_secret,
        room,
        identity,
        identity,
    )?;
    let url = server.ws_url();
    tokio::spawn(async move {
        if let Err(e) = session.run_in_room(&url, &jwt, stop_rx).await {
            tracing::error!(error = %e, "bench session failed");
        }
    });
    Ok(stop_tx)
}

/// This project's engine as a listening participant.
pub(crate) async fn listen(
    server: &LocalLiveKitServer,
    room: &str,
) -> Result<(
    meeting_agent::livekit::Room,
    tokio::sync::mpsc::UnboundedReceiver<meeting_agent::livekit::RoomEvent>,
)> {
    let jwt = token::room_token(
        &server.api_key,
        &server.api_secret,
        room,
        "listener",
        "listener",
    )?;
    Ok(meeting_agent::livekit::Room::connect(
        &server.ws_url(),
        &jwt,
        meeting_agent::livekit::ConnectOptions::default(),
    )
    .await?)
}

/// Waits until the agent receives video from `n` distinct tracks.
async fn wait_video_tracks(
    reports: &mut broadcast::Receiver<SessionReport>,
    n: usize,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        if let SessionReport::VideoStats { sid, .. } =
            next_report(reports, Duration::from_secs(30), |r| {
                matches!(r, SessionReport::VideoStats { .. })
            })
            .await?
        {
            seen.insert(sid);
        }
    }
    Ok(())
}

/// Extra resident memory per joined room, each room with `publishers` participants (audio + video).
pub async fn room_memory(rooms: usize, per_room: usize) -> Result<()> {
    start_engine()?;
    let server = LocalLiveKitServer::start().await?;
    let mut keep = Vec::new();
    let mut deltas = Vec::new();
    for r in 0..rooms {
        let room = format!("bench-mem-{r}");
        keep.push(
            publishers(
                &server,
                &room,
                per_room,
                &["--video", "640x360", "--fps", "15"],
            )
            .await?,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_bytes();
        let (_s, stop, mut reports) = join(&server, &room, "agent-bench").await?;
        wait_video_tracks(&mut reports, per_room).await?;
        tokio::time::sleep(Duration::from_secs(10)).await; // decoders and jitter buffers at steady state
        let after = rss_bytes();
        deltas.push((after as f64 - before as f64) / (1024.0 * 1024.0));
        keep.push(Vec::new());
        std::mem::forget(stop); // the room stays joined while the next one is measured
    }
    eprintln!("per-room RSS deltas (MiB): {deltas:.1?}");
    let mean = deltas.iter().sum::<f64>() / deltas.len() as f64;
    row(
        "room_rss_mb",
        mean,
        "MiB",
        "<= 40",
        &format!("meeting-agent-dev bench room-memory --rooms {rooms} --publishers {per_room}"),
    );
    Ok(())
}

/// CPU of this process (one core = 100%) to receive one 640x360@30 video and one audio stream.
pub async fn recv_cpu(seconds: u64) -> Result<()> {
    start_engine()?;
    let server = LocalLiveKitServer::start().await?;
    let _publisher = publishers(
        &server,
        "bench-recv",
        1,
        &["--video", "640x360", "--fps", "30"],
    )
    .await?;
    let (_s, _stop, mut reports) = join(&server, "bench-recv", "agent-bench").await?;
    wait_video_tracks(&mut reports, 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let engine = Engine::get()?;
    let frames0 = engine
        .stats
        .video_frames
        .load(std::sync::atomic::Ordering::Relaxed);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let frames = engine
        .stats
        .video_frames
        .load(std::sync::atomic::Ordering::Relaxed)
        - frames0;
    let pct = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let fps = frames as f64 / t0.elapsed().as_secs_f64();
    eprintln!("received {fps:.1} video frames/s; process CPU {pct:.1}% of one core");
    if fps < 20.0 {
        bail!("only {fps:.1} fps arrived: the machine is too loaded for this measurement");
    }
    row(
        "recv_cpu_pct_360p30",
        pct,
        "% of one core",
        "-",
        &format!("meeting-agent-dev bench recv-cpu --seconds {seconds}"),
    );
    Ok(())
}

/// Long run: `streams` remote streams (half audio, half video) for `minutes`; resident memory
/// and live FFI handles sampled every 30 s must stay flat.
pub async fn soak(minutes: u64, streams: usize) -> Result<()> {
    start_engine()?;
    let engine = Engine::get()?;
    let server = LocalLiveKitServer::start().await?;
    let _publishers = publishers(
        &server,
        "bench-soak",
        streams.div_ceil(2),
        &["--video", "640x360", "--fps", "30"],
    )
    .await?;
    let (_s, _stop, mut reports) = join(&server, "bench-soak", "agent-bench").await?;
    wait_video_tracks(&mut reports, streams.div_ceil(2)).await?;
    // Drain reports so the broadcast channel never lags the measurement.
    tokio::spawn(async move { while reports.recv().await.is_ok() {} });
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(minutes * 60) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let rss = rss_bytes() as f64 / (1024.0 * 1024.0);
        let frames = engine
            .stats
            .video_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "t={:>4}s rss={rss:.1} MiB live_handles={} video_frames={frames}",
            start.elapsed().as_secs(),
            engine.live_handles()
        );
        samples.push(rss);
    }
    // Growth from the first to the last third of the run, per minute.
    let third = (samples.len() / 3).max(1);
    let first = samples[..third].iter().sum::<f64>() / third as f64;
    let last = samples[samples.len() - third..].iter().sum::<f64>() / third as f64;
    let span_min = (samples.len() - third) as f64 * 0.5;
    row(
        "soak_rss_growth_mb_per_min",
        (last - first) / span_min.max(0.5),
        "MiB/min",
        "~0",
        &format!("meeting-agent-dev bench soak --minutes {minutes} --streams {streams}"),
    );
    Ok(())
}
