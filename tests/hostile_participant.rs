// Own binary (not e2e): compares this process's peak RSS under attack with its baseline.
//! A hostile participant in a real meeting. Two honest participants (LiveKit's Python SDK) speak
//! with their cameras on while the agent captions and records the room and serves its control
//! API; a third participant ("eve", this project's engine, with a token that lets it set its
//! own attributes) publishes a camera and points `vb.image` at every source an attacker would
//! try: devices, /proc, a FIFO, file URLs, the agent's own API, cloud metadata, a redirect to
//! loopback, another room's upload, strips and a decompression bomb, then toggles it 100 times
//! a second. The process must stay up, the agent in the room, memory within bounds, the honest
//! captions must keep coming and the recording must be whole.

#[path = "e2e/common.rs"]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::features::captions::Captioning;
use meeting_agent::features::recording::Recorder;
use meeting_agent::livekit::{ConnectOptions, Room, TrackSource};
use meeting_agent::media::VideoFrame;
use meeting_agent::recording::meta::RecordingStatus;
use meeting_agent::video::background_source::{SourcePolicy, upload_id};
use meeting_agent::video::processor::SegmenterPool;
use meeting_agent_devtools::participant::is_final_caption;
use meeting_agent_devtools::process_stats::rss_bytes;
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};
use serde_json::Value;
use sha2::{Digest, Sha256};

const ROOM: &str = "hostile-room";
const KEY: &str = "key-for-the-hostile-room-0123456789";
const OTHER_KEY: &str = "key-for-the-board-room-0123456789";
/// Honest meeting before the attack: the baseline for memory.
const BASELINE: Duration = Duration::from_secs(20);
/// How long each hostile value is left in place.
const DWELL: Duration = Duration::from_millis(700);
const TOGGLE_FOR: Duration = Duration::from_secs(5);

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([20, 90, 200]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Puts `bytes` into `room`'s upload folder as an earlier upload would have (bypassing the
/// upload checks, to test the camera's own), returning its id.
fn plant_upload(policy: &SourcePolicy, room: &str, bytes: &[u8]) -> String {
    let dir = policy.upload_dir(room);
    std::fs::create_dir_all(&dir).unwrap();
    let digest = hex(bytes);
    std::fs::write(dir.join(format!("{digest}.png")), bytes).unwrap();
    upload_id(&digest, "png")
}

/// A server on loopback that answers every request with a redirect to `target`.
async fn redirector(target: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// Peak resident memory while `phase` names the current phase (0 baseline, 1 hostile).
struct RssWatch {
    peaks: [AtomicU64; 2],
    phase: AtomicU64,
    stop: AtomicBool,
}

impl RssWatch {
    fn start() -> Arc<Self> {
        let watch = Arc::new(Self {
            peaks: [AtomicU64::new(0), AtomicU64::new(0)],
            phase: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let w = watch.clone();
        std::thread::spawn(move || {
            while !w.stop.load(Ordering::SeqCst) {
                let phase = w.phase.load(Ordering::SeqCst) as usize;
                w.peaks[phase].fetch_max(rss_bytes(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        watch
    }

    fn mb(&self, phase: usize) -> f64 {
        self.peaks[phase].load(Ordering::SeqCst) as f64 / (1024.0 * 1024.0)
    }
}

/// Sets eve's attributes, retrying a request the server left unanswered: the SDK gives up on
/// an attribute update after 5 s, which happened once in CI with the 2 cores saturated. The
/// attacker's own client retrying is part of the attack; the agent is judged by what follows.
async fn set_attributes_retrying(
    eve: &meeting_agent::livekit::Room,
    attributes: &HashMap<String, String>,
) {
    let mut last = None;
    for _ in 0..3 {
        match eve.set_attributes(attributes).await {
            Ok(()) => return,
            Err(e) => {
                println!("eve's attribute update failed, retrying: {e}");
                last = Some(e);
            }
        }
    }
    panic!("eve's attribute update failed three times: {last:?}");
}

/// Collects final captions (speaker, time) seen by `p` until `stop`.
fn collect_finals(
    mut p: PythonParticipant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(PythonParticipant, Vec<(String, Instant)>)> {
    tokio::spawn(async move {
        let mut finals = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Some(ev) = p
                .wait_for(Duration::from_millis(500), is_final_caption)
                .await
            {
                let who = ev["identity"].as_str().unwrap_or_default().to_string();
                finals.push((who, Instant::now()));
            }
        }
        (p, finals)
    })
}

/// The hostile camera: a moving gradient at 320x240, 15 fps, until `stop`.
fn feed_camera(
    track: meeting_agent::livekit::LocalVideoTrack,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (w, h) = (320u32, 240u32);
        let mut n = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let rgb: Vec<u8> = (0..w * h)
                .flat_map(|i| {
                    let x = (i % w + n * 4) % 256;
                    [x as u8, (i / w) as u8, 128]
                })
                .collect();
            let frame = VideoFrame::from_rgb(w, h, &rgb).unwrap();
            let _ = track.capture(&frame);
            n += 1;
            std::thread::sleep(Duration::from_millis(66));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_participant_cannot_take_down_stall_or_see_beyond_its_meeting() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ma-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The control API's port first: the agent's own endpoints are among the targets.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = api_listener.local_addr().unwrap().port();
    let api_url = format!("http://127.0.0.1:{api_port}");
    let redirect_port = redirector(format!("{api_url}/metrics")).await;

    let mut config: Config = config_for(&server, "");
    config.data_dir = dir.join("data");
    config.recording.dir = dir.join("recordings");
    config.recording.auto = true;
    config.recording.width = 640;
    config.recording.height = 360;
    config.recording.fps = 15;
    // An operator who allow-listed names that (also) lead inside: still refused.
    config.video.background_url_hosts = vec![
        format!("localhost:{api_port}"),
        format!("localhost:{redirect_port}"),
    ];
    config.api.keys = vec![
        meeting_agent::config::ApiKey {
            key: KEY.into(),
            rooms: vec![ROOM.into()],
            ..Default::default()
        },
        meeting_agent::config::ApiKey {
            key: OTHER_KEY.into(),
            rooms: vec!["board".into()],
            ..Default::default()
        },
    ];
    config.validate().unwrap();

    let recorder = Recorder::from_config(&config).unwrap();
    recorder.storage.check().await.unwrap();
    let env = meeting_agent::onnx::environment(&config.video.onnxruntime).unwrap();
    let pool = SegmenterPool::new(env, config.video.models_dir.clone()).unwrap();
    let policy = SourcePolicy::from_config(&config);
    let session = FeatureSet::new(config.audio)
        .with_captioning(
            Captioning::from_config(&config).expect("whisper model (run models/fetch_models.sh)"),
        )
        .with_recorder(recorder.clone())
        .with_virtual_backgrounds(pool, SourcePolicy::from_config(&config))
        .session();
    let worker = start_worker_with(
        config.clone(),
        Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    let state = meeting_agent::api::ApiState::new(&config, None, Some(recorder.clone()));
    tokio::spawn(async move { meeting_agent::api::serve_on(api_listener, state).await });
    let client = reqwest::Client::new();

    // Honest participants: both speak with a camera on; sam also reads the captions.
    let wav = meeting_agent_devtools::fixtures::dir()
        .unwrap()
        .join("captions.wav");
    let honest = |who: &str, color: &str| {
        PythonParticipant::spawn(
            &server,
            ROOM,
            who,
            &[
                "--wav",
                wav.to_str().unwrap(),
                "--video",
                "320x240",
                "--fps",
                "15",
                "--color",
                color,
            ],
        )
        .unwrap()
    };
    let mut sam = honest("sam", "200,60,40");
    sam.wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .expect("sam joins");
    let kim = honest("kim", "40,200,60");
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = collect_finals(sam, stop_reading.clone());

    // Eve: a token that lets her set her own attributes, as the platform's tokens may.
    let token =
        livekit_api::access_token::AccessToken::with_api_key(&server.api_key, &server.api_secret)
            .with_identity("eve")
            .with_name("eve")
            .with_grants(livekit_api::access_token::VideoGrants {
                room_join: true,
                room: ROOM.into(),
                can_publish: Some(true),
                can_subscribe: Some(false),
                can_update_own_metadata: Some(true),
                ..Default::default()
            })
            .to_jwt()
            .unwrap();
    let (eve, _eve_events) = Room::connect(&server.ws_url(), &token, ConnectOptions::default())
        .await
        .unwrap();
    let eve = Arc::new(eve);
    let camera = eve
        .publish_video("camera", TrackSource::SourceCamera, 320, 240)
        .await
        .unwrap();
    let stop_camera = Arc::new(AtomicBool::new(false));
    let camera_thread = feed_camera(camera, stop_camera.clone());
    let set = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // During the baseline eve only blurs: the segmentation models are loaded either way.
    set_attributes_retrying(&eve, &set(&[("vb.mode", "blur")])).await;

    let rss = RssWatch::start();
    tokio::time::sleep(BASELINE).await;
    // From here on everything is the attack, the uploads included (API callers are untrusted
    // too): the baseline is the honest meeting alone.
    rss.phase.store(1, Ordering::SeqCst);

    // Uploads: another room's image, and what the upload API refuses.
    let upload = |key: &'static str, room: &'static str, body: Vec<u8>| {
        client
            .post(format!("{api_url}/v1/rooms/{room}/backgrounds"))
            .bearer_auth(key)
            .body(body)
            .send()
    };
    let board: Value = upload(OTHER_KEY, "board", png(64, 36))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let boards_image = board["image"].as_str().unwrap().to_string();
    for strip in [png(4096, 1), png(1, 4096)] {
        assert_eq!(upload(KEY, ROOM, strip).await.unwrap().status(), 400);
    }
    let mut claims_huge = png(64, 64);
    claims_huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    assert_eq!(
        upload(KEY, ROOM, claims_huge.clone())
            .await
            .unwrap()
            .status(),
        400
    );
    // A 4096x4096 picture of one colour: 250 kB that decode to 48 MB; accepted, decoded two
    // at a time at most and kept small.
    let bomb = png(4096, 4096);
    let bomb_id: Value = upload(KEY, ROOM, bomb).await.unwrap().json().await.unwrap();
    let bomb_id = bomb_id["image"].as_str().unwrap().to_string();

    let fifo = dir.join("fifo.png");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in our own temporary folder.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let strip_wide = plant_upload(&policy, ROOM, &png(4096, 1));
    let strip_tall = plant_upload(&policy, ROOM, &png(1, 4096));
    let planted_bomb = plant_upload(&policy, ROOM, &claims_huge);
    let hostile: Vec<String> = vec![
        "/dev/zero".into(),
        "/dev/urandom".into(),
        "/proc/self/environ".into(),
        fifo.to_string_lossy().into(),
        "file:///etc/passwd".into(),
        format!("{api_url}/metrics"),
        format!("https://localhost:{api_port}/metrics"),
        "http://169.254.169.254/latest/meta-data/".into(),
        format!("https://localhost:{redirect_port}/bg.png"),
        format!("http://127.0.0.1:{redirect_port}/bg.png"),
        boards_image,
        strip_wide,
        strip_tall,
        planted_bomb,
        bomb_id.clone(),
        "upload:../../../../etc/passwd".into(),
        format!("https://x.example/{}", "a".repeat(5000)),
    ];

    let attack_started = Instant::now();
    let mut survived = 0;
    for value in &hostile {
        set_attributes_retrying(&eve, &set(&[("vb.mode", "image"), ("vb.image", value)])).await;
        tokio::time::sleep(DWELL).await;
        let agent_here = eve
            .participants()
            .iter()
            .any(|p| p.identity.starts_with("agent-"));
        if agent_here && !worker.task.is_finished() {
            survived += 1;
        } else {
            println!("the agent stopped serving after {value:?}");
        }
    }
    // 100 changes a second between the bomb, a device, blur and off, sent without waiting
    // for each to be acknowledged (the server answers an attribute update in ~100 ms).
    let cycle = [
        ("image", bomb_id.clone()),
        ("image", "/dev/zero".to_string()),
        ("blur", String::new()),
        ("off", String::new()),
    ];
    let toggles_until = Instant::now() + TOGGLE_FOR;
    let mut toggles = 0usize;
    let mut sends = Vec::new();
    while Instant::now() < toggles_until {
        let (mode, image) = cycle[toggles % cycle.len()].clone();
        let eve = eve.clone();
        sends.push(tokio::spawn(async move {
            let attributes: HashMap<String, String> = [
                ("vb.mode".to_string(), mode.to_string()),
                ("vb.image".to_string(), image),
            ]
            .into();
            eve.set_attributes(&attributes).await.is_ok()
        }));
        toggles += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut acknowledged = 0;
    for send in sends {
        if send.await.unwrap_or(false) {
            acknowledged += 1;
        }
    }
    let agent_here = eve
        .participants()
        .iter()
        .any(|p| p.identity.starts_with("agent-"));
    if agent_here {
        survived += 1;
    }
    let attack_ended = Instant::now();
    let inputs = hostile.len() + 1;
    rss.phase.store(0, Ordering::SeqCst);

    // The honest speakers are still captioned after the attack.
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop_reading.store(true, Ordering::SeqCst);
    let (sam, finals) = reader.await.unwrap();
    rss.stop.store(true, Ordering::SeqCst);
    let count = |who: &str, from: Instant, to: Instant| {
        finals
            .iter()
            .filter(|(w, t)| w == who && *t >= from && *t <= to)
            .count()
    };
    let far = attack_ended + Duration::from_secs(3600);
    let (baseline_mb, hostile_mb) = (rss.mb(0), rss.mb(1));
    println!(
        "hostile_inputs_survived {survived}/{inputs} ({toggles} toggles in {TOGGLE_FOR:?}, \
         {acknowledged} acknowledged); \
         peak RSS honest meeting {baseline_mb:.0} MiB, under attack {hostile_mb:.0} MiB \
         (ratio {:.2}); finals during the attack: sam {}, kim {}; after: sam {}, kim {}",
        hostile_mb / baseline_mb,
        count("sam", attack_started, attack_ended),
        count("kim", attack_started, attack_ended),
        count("sam", attack_ended, far),
        count("kim", attack_ended, far),
    );
    assert_eq!(survived, inputs, "the agent kept serving after every input");
    assert!(
        hostile_mb <= baseline_mb * 1.2,
        "memory under attack {hostile_mb:.0} MiB vs {baseline_mb:.0} MiB"
    );
    for who in ["sam", "kim"] {
        assert!(
            count(who, attack_started, far) >= 2,
            "{who} is captioned during and after the attack: {finals:?}"
        );
        assert!(
            count(who, attack_ended, far) >= 1,
            "{who} is still captioned after the attack"
        );
    }
    assert!(
        toggles >= 250 && acknowledged >= toggles / 2,
        "the attribute changes went out and were taken: {acknowledged} of {toggles}"
    );

    // Everyone leaves; the recording covers the whole meeting.
    stop_camera.store(true, Ordering::SeqCst);
    let _ = camera_thread.join();
    eve.disconnect().await.unwrap();
    sam.stop().await;
    kim.stop().await;
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let meeting_secs = attack_ended.duration_since(attack_started).as_secs_f64() + 20.0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let meta = loop {
        if let Ok(list) = recorder.storage.list().await
            && let Some(m) = list
                .into_iter()
                .find(|m| m.room == ROOM && m.status == RecordingStatus::Complete)
        {
            break m;
        }
        assert!(Instant::now() < deadline, "the recording is stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recorded = meta.duration_ms.unwrap() as f64 / 1000.0;
    println!("recording: {recorded:.1} s, {:?} bytes", meta.size_bytes);
    assert!(
        recorded >= meeting_secs,
        "the recording covers the meeting: {recorded:.1} s of at least {meeting_secs:.1} s"
    );
    let path: PathBuf = recorder
        .storage
        .link(&meta, Duration::from_secs(60))
        .await
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .into();
    let decoded =
        tokio::task::spawn_blocking(move || meeting_agent::recording::inspect::decode(&path, &[]))
            .await
            .unwrap()
            .unwrap();
    assert!(
        (decoded.duration().as_secs_f64() - recorded).abs() < 1.0,
        "the file plays for its recorded length"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
