//! Shared harness for the end-to-end tests: a real livekit-server per test, the agent's
//! worker in-process, and Python SDK participants. A module of the `e2e` binary, and included
//! by path (`#[path = "e2e/common.rs"]`) by the tests that are binaries of their own.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use meeting_agent::config::Config;
use meeting_agent::livekit::Engine;
use meeting_agent::paths::engine_library as default_library_path;
use meeting_agent::session::SessionReport;
use meeting_agent::worker::{JobHandler, Shutdown, Worker, WorkerError, WorkerEvent};
use meeting_agent_devtools::LocalLiveKitServer;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub fn init() {
    meeting_agent::telemetry::init_logging(
        meeting_agent::config::LogFormat::Text,
        &std::env::var("MEETING_AGENT_TEST_LOG")
            .unwrap_or_else(|_| "warn,meeting_agent=info".into()),
    );
    Engine::start(&default_library_path()).expect("LiveKit FFI library (run scripts/setup.sh)");
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function and no argument; it runs once, at exit.
        unsafe { on_exit(exit_past_the_engine, std::ptr::null_mut()) };
    });
}

unsafe extern "C" {
    /// glibc's `atexit` whose function is also given the exit status (not in the `libc` crate).
    fn on_exit(
        function: extern "C" fn(libc::c_int, *mut libc::c_void),
        arg: *mut libc::c_void,
    ) -> libc::c_int;
}

/// The test harness exits with the engine's threads still running, and the library's
/// exit-time destructors racing them now and then killed a binary (a SIGSEGV after its
/// results were printed). As the agent binary does: close the rooms, then end the process
/// without those destructors, with the harness's own status: 0, or 101 when a test failed
/// (the harness has printed its failures by then). The status is the one the harness exits
/// with, whether or not the failing test ran before the first `init()` (in the `e2e` binary
/// many tests never call it).
extern "C" fn exit_past_the_engine(status: libc::c_int, _arg: *mut libc::c_void) {
    use std::io::Write;
    Engine::shutdown(Duration::from_secs(5));
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: ends the process at once; nothing runs after it.
    unsafe { libc::_exit(status) }
}

/// Joins `room` on `server` as `identity` through this project's engine (a second participant).
pub async fn join_room(
    server: &LocalLiveKitServer,
    room: &str,
    identity: &str,
) -> (
    meeting_agent::livekit::Room,
    tokio::sync::mpsc::UnboundedReceiver<meeting_agent::livekit::RoomEvent>,
) {
    let jwt = meeting_agent::livekit::token::room_token(
        &server.api_key,
        &server.api_secret,
        room,
        identity,
        identity,
    )
    .unwrap();
    meeting_agent::livekit::Room::connect(
        &server.ws_url(),
        &jwt,
        meeting_agent::livekit::ConnectOptions::default(),
    )
    .await
    .unwrap()
}

pub fn config_for(server: &LocalLiveKitServer, agent_name: &str) -> Config {
    let mut config = Config::default();
    config.livekit.url = server.ws_url();
    config.livekit.api_key = server.api_key.clone();
    config.livekit.api_secret = server.api_secret.clone();
    config.agent.name = agent_name.to_string();
    // Tests run on a busy 2-core machine: never refuse a job because of CPU load.
    config.agent.load_threshold = 1.0;
    config.agent.status_interval_secs = 1.0;
    config.validate().expect("valid test config");
    config
}

pub struct RunningWorker {
    pub events: broadcast::Receiver<WorkerEvent>,
    pub reports: broadcast::Receiver<SessionReport>,
    pub shutdown: watch::Sender<Shutdown>,
    pub task: JoinHandle<Result<(), WorkerError>>,
}

pub async fn start_worker(config: Config) -> RunningWorker {
    let session = meeting_agent::features::FeatureSet::default().session();
    start_worker_with(config, Arc::new(session.clone()), session.subscribe()).await
}

pub async fn start_worker_with(
    config: Config,
    handler: Arc<dyn JobHandler>,
    reports: broadcast::Receiver<SessionReport>,
) -> RunningWorker {
    let worker = Worker::new(config, handler);
    let mut events = worker.subscribe();
    let (shutdown, shutdown_rx) = watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(shutdown_rx));
    wait_for(&mut events, Duration::from_secs(15), |e| {
        matches!(e, WorkerEvent::Registered { .. })
    })
    .await
    .expect("worker registers with the server");
    RunningWorker {
        events,
        reports,
        shutdown,
        task,
    }
}

/// The next broadcast item matching `pred` within `timeout`.
pub async fn wait_for<T: Clone>(
    rx: &mut broadcast::Receiver<T>,
    timeout: Duration,
    pred: impl Fn(&T) -> bool,
) -> Option<T> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(item) if pred(&item) => return Some(item),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

pub fn audio_in_room(report: &SessionReport, room_name: &str) -> Option<f64> {
    match report {
        SessionReport::AudioStats {
            room, frequency_hz, ..
        } if room == room_name => Some(*frequency_hz),
        _ => None,
    }
}

/// Speech in white noise at 5 dB SNR (the fixtures), written as a 16-bit 48 kHz WAV at `path`
/// for a participant to publish; the mix is returned to compare against.
pub fn noisy_speech_wav(path: &std::path::Path) -> Vec<f32> {
    use meeting_agent::audio::quality::mix_at_snr;
    let load = |n: &str| meeting_agent_devtools::fixtures::load_f32(n).unwrap();
    let mix = mix_at_snr(&load("speech.wav"), &load("noise-white.wav"), 5.0);
    meeting_agent::audio::wav::write_i16(
        path,
        &mix.iter()
            .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
            .collect::<Vec<_>>(),
        48_000,
        1,
    )
    .unwrap();
    mix
}

/// A worker that records (the configuration's recording settings), its storage checked.
pub async fn start_recording_worker(
    config: &Config,
) -> (RunningWorker, meeting_agent::features::recording::Recorder) {
    let recorder = meeting_agent::features::recording::Recorder::from_config(config).unwrap();
    recorder.storage.check().await.unwrap();
    let session = meeting_agent::features::FeatureSet::default()
        .with_recorder(recorder.clone())
        .session();
    let worker = start_worker_with(
        config.clone(),
        Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    (worker, recorder)
}

/// Waits (30 s at most) until `p` sees the agent announce `recording=<value>`; when it did.
pub async fn wait_announced(
    p: &mut meeting_agent_devtools::PythonParticipant,
    value: &str,
) -> std::time::Instant {
    p.wait_for(Duration::from_secs(30), |e| {
        (e["event"] == "participant_attributes_changed" && e["changed"]["recording"] == value)
            || (e["event"] == "participant_connected" && e["attributes"]["recording"] == value)
    })
    .await
    .unwrap_or_else(|| panic!("the agent never announced recording={value}"));
    std::time::Instant::now()
}

/// `seconds` of a 48 kHz mono stream's samples (each frame within 30 s).
pub async fn record_audio(
    stream: &mut meeting_agent::livekit::AudioStream,
    seconds: f64,
) -> Vec<f32> {
    let mut samples = Vec::new();
    while (samples.len() as f64) < seconds * 48_000.0 {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.recv())
            .await
            .unwrap()
            .unwrap();
        samples.extend(frame.samples.iter().map(|&s| s as f32));
    }
    samples
}

/// A listener's streams of `identity`'s microphone and of its clean track `clean_sid` (which
/// must be `<identity>-clean`, published by the agent), once both are subscribed.
pub async fn raw_and_clean_streams(
    room: &meeting_agent::livekit::Room,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<meeting_agent::livekit::RoomEvent>,
    identity: &str,
    clean_sid: &str,
) -> (
    meeting_agent::livekit::AudioStream,
    meeting_agent::livekit::AudioStream,
) {
    use meeting_agent::livekit::{RoomEvent, TrackKind};
    let (mut raw, mut clean) = (None, None);
    while raw.is_none() || clean.is_none() {
        if let RoomEvent::TrackSubscribed(t) =
            tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .unwrap()
                .unwrap()
        {
            if t.kind != TrackKind::KindAudio {
                continue;
            }
            if t.participant == identity {
                raw = Some(room.audio_stream(&t.sid, 48_000, 1, 10).unwrap());
            } else if t.sid == clean_sid {
                assert_eq!(t.name, format!("{identity}-clean"));
                assert!(
                    t.participant.starts_with("agent-"),
                    "published by the agent: {}",
                    t.participant
                );
                clean = Some(room.audio_stream(&t.sid, 48_000, 1, 10).unwrap());
            }
        }
    }
    (raw.unwrap(), clean.unwrap())
}

/// Mean level of `samples` (i16 scale) in dBFS.
pub fn level_dbfs(samples: &[f32]) -> f64 {
    10.0 * (samples
        .iter()
        .map(|&s| (s as f64 / 32768.0).powi(2))
        .sum::<f64>()
        / samples.len() as f64)
        .log10()
}
