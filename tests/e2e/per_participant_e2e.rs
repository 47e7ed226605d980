//! Per-participant recordings end to end: a real livekit-server, three participants (LiveKit's
//! Python SDK) each sending a tone of its own, per-participant audio asked for through the
//! control API for two of them (one with a hostile identity), a real S3 server that checks
//! signatures (s3s-fs). Each of the two gets an M4A of its own beside the composite, holding its
//! tone and not the others'; the third gets none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use meeting_agent::config::Config;
use meeting_agent::features::recording::Recorder;
use meeting_agent::recording::meta::{RecordingKind, RecordingStatus};
use meeting_agent::recording::{RecordingMeta, StorageKind, inspect};
use meeting_agent_devtools::{LocalLiveKitServer, LocalS3, PythonParticipant};
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const ROOM: &str = "rec-pp";
const KEY: &str = "key-for-rec-pp-only-0123456789";

/// The level of `freq` Hz in `audio` (48 kHz): Goertzel's power, per sample.
fn power_at(audio: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in audio {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / audio.len().max(1) as f64
}

/// Every recording in storage once `count` of them are whole.
async fn stored(recorder: &Recorder, count: usize, within: Duration) -> Vec<RecordingMeta> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(list) = recorder.storage.list().await {
            let done = list
                .iter()
                .filter(|m| matches!(m.status, RecordingStatus::Complete))
                .count();
            if done >= count {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "{done} of {count} recordings stored in {within:?}: {list:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Downloads a recording through its presigned link and decodes its sound.
async fn fetch_audio(recorder: &Recorder, meta: &RecordingMeta) -> (String, Vec<i16>) {
    let link = recorder
        .storage
        .link(meta, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(link.contains("X-Amz-Signature="), "presigned: {link}");
    let response = reqwest::get(&link).await.unwrap();
    assert_eq!(response.status(), 200, "{link}");
    let path = std::env::temp_dir().join(format!("ma-pp-e2e-{}.m4a", meta.id));
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    tokio::task::spawn_blocking(move || {
        let d = inspect::decode_audio(&path);
        let _ = std::fs::remove_file(&path);
        d
    })
    .await
    .unwrap()
    .unwrap()
}

async fn start(config: &Config) -> (RunningWorker, Recorder, String) {
    let (worker, recorder) = start_recording_worker(config).await;
    let mut api_config = config.clone();
    api_config.api.keys = vec![meeting_agent::config::ApiKey {
        key: KEY.into(),
        rooms: vec![ROOM.into()],
        participant_attributes: false,
    }];
    let state = meeting_agent::api::ApiState::new(&api_config, None, Some(recorder.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { meeting_agent::api::serve_on(listener, state).await });
    (worker, recorder, url)
}

/// Who sends which tone; the hostile identity must not name a path in the bucket.
const PEOPLE: [(&str, f64); 3] = [("alice", 440.0), ("../../bob", 1000.0), ("carol", 1700.0)];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_selected_participant_gets_an_m4a_with_only_their_own_sound() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let s3 = LocalS3::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ma-pp-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = config_for(&server, "");
    config.recording.dir = dir.clone();
    config.recording.storage = StorageKind::S3;
    config.recording.s3 = s3.config("recordings");
    config.recording.max_participant_recordings = 2;
    config.validate().unwrap();
    let (worker, recorder, api) = start(&config).await;
    let http = reqwest::Client::new();
    let put = |body: serde_json::Value| {
        http.put(format!("{api}/v1/rooms/{ROOM}/recording"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };

    let mut people = Vec::new();
    for (identity, hz) in PEOPLE {
        let tone = format!("{hz}");
        let p = PythonParticipant::spawn(
            &server,
            ROOM,
            identity,
            &["--tone-hz", &tone, "--video", "none"],
        )
        .unwrap();
        people.push(p);
    }
    for p in people.iter_mut() {
        p.wait_for(T, |e| e["event"] == "published" && e["kind"] == "audio")
            .await
            .expect("publishes its microphone");
    }
    // Refused: video without audio, more identities than the room may record on their own.
    for body in [
        json!({"enabled": true, "per_participant": {"video": true}}),
        json!({"enabled": true, "per_participant": {"audio": true, "identities": ["a", "b", "c"]}}),
        json!({"enabled": true, "per_participant": {"audio": true, "identities": ["x".repeat(300)]}}),
    ] {
        let r = put(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = put(json!({"enabled": true, "per_participant": {"audio": true, "identities": ["alice", "../../bob"]}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["per_participant"]["identities"][1], "../../bob");
    let started = wait_announced(&mut people[0], "active").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(put(json!({"enabled": false})).await.unwrap().status(), 200);
    let stopped = wait_announced(&mut people[0], "off").await;
    let recorded = (stopped - started).as_secs_f64();
    for p in people {
        p.stop().await;
    }

    let all = stored(&recorder, 3, Duration::from_secs(60)).await;
    assert_eq!(all.len(), 3, "one composite and two of their own: {all:#?}");
    let composite = all
        .iter()
        .find(|m| m.kind == RecordingKind::Composite)
        .expect("the composite");
    let mut own: Vec<&RecordingMeta> = all
        .iter()
        .filter(|m| m.kind == RecordingKind::Participant)
        .collect();
    own.sort_by_key(|m| m.participant.clone());
    let whose: Vec<_> = own.iter().map(|m| m.participant.as_deref()).collect();
    assert_eq!(
        whose,
        vec![Some("../../bob"), Some("alice")],
        "carol was not asked for"
    );
    for m in &own {
        assert_eq!(m.parent.as_deref(), Some(composite.id.as_str()));
        assert_eq!(m.room, ROOM);
        let prefix = format!("{ROOM}/{}/", composite.id);
        assert!(
            m.key.starts_with(&prefix) && m.key.ends_with(".m4a"),
            "{}",
            m.key
        );
        assert!(
            !m.key[prefix.len()..].contains('/') && !m.key.contains(".."),
            "{}",
            m.key
        );
        // The object is where its key says, inside the bucket's folder.
        assert!(
            s3.dir.join("recordings").join(&m.key).is_file(),
            "{}",
            m.key
        );
    }
    assert!(own[0].key.contains("/______bob-"), "{}", own[0].key);
    // Nothing escaped the bucket's folder.
    assert!(!s3.dir.join("bob").exists() && !s3.dir.join("recordings/bob").exists());

    // Listed by the control API with their kind and participant.
    let listed: Vec<serde_json::Value> = http
        .get(format!("{api}/v1/recordings?room={ROOM}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<_> = listed.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "participant").count(),
        2,
        "{listed:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "composite").count(),
        1,
        "{listed:?}"
    );

    // Each file: AAC, about as long as the recording ran, its owner's tone and not the others'.
    for m in own {
        let (caps, audio) = fetch_audio(&recorder, m).await;
        assert!(caps.contains("mpegversion=(int)4"), "AAC: {caps}");
        let secs = audio.len() as f64 / 48_000.0;
        println!("{}: {secs:.2} s of {recorded:.2} s recorded", m.key);
        assert!(
            secs > recorded - 3.0 && secs < recorded + 1.5,
            "{secs:.2} s of {recorded:.2} s"
        );
        let who = m.participant.as_deref().unwrap();
        let middle = &audio[audio.len() / 4..audio.len() * 3 / 4];
        let own_hz = PEOPLE.iter().find(|(i, _)| *i == who).unwrap().1;
        let mine = power_at(middle, own_hz);
        for (other, hz) in PEOPLE.iter().filter(|(i, _)| *i != who) {
            let theirs = power_at(middle, *hz);
            let db = 10.0 * (mine / theirs.max(1e-9)).log10();
            println!("{who}'s file: its {own_hz} Hz is {db:.1} dB over {other}'s {hz} Hz");
            assert!(
                db > 30.0,
                "{who}'s file holds {other}'s sound: only {db:.1} dB apart"
            );
        }
        assert!(
            middle.iter().any(|s| s.unsigned_abs() > 1000),
            "{who}'s sound is in the file"
        );
    }
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `"video": true` a participant's own recording is an MP4 of their camera (filling a
/// 640x360 picture) and their sound; live HLS stays the composite's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_asked_with_video_gets_an_mp4_of_their_camera_and_sound() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ma-pp-e2e-video-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = config_for(&server, "");
    config.recording.dir = dir.clone();
    config.validate().unwrap();
    let (worker, recorder, api) = start(&config).await;
    let mut vera = PythonParticipant::spawn(
        &server,
        ROOM,
        "vera",
        &[
            "--tone-hz",
            "440",
            "--color",
            "220,40,40",
            "--video",
            "640x360",
        ],
    )
    .unwrap();
    vera.wait_for(T, |e| e["event"] == "published" && e["kind"] == "video")
        .await
        .expect("publishes its camera");
    let r = reqwest::Client::new()
        .put(format!("{api}/v1/rooms/{ROOM}/recording"))
        .bearer_auth(KEY)
        .json(&json!({"enabled": true, "per_participant": {"audio": true, "video": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_announced(&mut vera, "active").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let off = reqwest::Client::new()
        .put(format!("{api}/v1/rooms/{ROOM}/recording"))
        .bearer_auth(KEY)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    wait_announced(&mut vera, "off").await;
    vera.stop().await;

    let all = stored(&recorder, 2, Duration::from_secs(60)).await;
    let own = all
        .iter()
        .find(|m| m.kind == RecordingKind::Participant)
        .expect("vera's own recording");
    assert!(
        own.key.ends_with(".mp4") && own.layout == "camera",
        "{own:?}"
    );
    assert!(
        !dir.join(meeting_agent::recording::live_hls::live_prefix(&own.key))
            .exists(),
        "no live HLS of a participant's file"
    );
    let link = recorder
        .storage
        .link(own, Duration::from_secs(60))
        .await
        .unwrap();
    let path = std::path::PathBuf::from(link.strip_prefix("file://").unwrap());
    let decoded =
        tokio::task::spawn_blocking(move || inspect::decode(&path, &[Duration::from_secs(4)]))
            .await
            .unwrap()
            .unwrap();
    assert!(
        decoded.video_caps.contains("width=(int)640")
            && decoded.video_caps.contains("height=(int)360"),
        "{}",
        decoded.video_caps
    );
    assert!(
        decoded.frames.len() > 150,
        "{} frames",
        decoded.frames.len()
    );
    // Vera's red fills the picture: chroma as 220,40,40 gives it (BT.601: U ~101, V ~207).
    let (_, frame) = &decoded.kept[0];
    let (_, u, v) = frame.planes();
    let mean = |p: &[u8]| p.iter().map(|&x| f64::from(x)).sum::<f64>() / p.len() as f64;
    let (mu, mv) = (mean(u), mean(v));
    assert!(
        mv > 180.0 && mu < 115.0,
        "U {mu:.0}, V {mv:.0}: not vera's red"
    );
    let middle = &decoded.audio[decoded.audio.len() / 4..decoded.audio.len() * 3 / 4];
    assert!(
        power_at(middle, 440.0) > 1000.0 * power_at(middle, 1000.0).max(1e-9),
        "vera's tone is in the file"
    );
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The per-participant graph alone, file-fed: 5 s of a 440 Hz tone become an AAC M4A that
/// decodes back to 5 s of that tone, and whose bytes cut anywhere keep a playable prefix (what
/// the spool and crash recovery rely on, as for the composite).
#[test]
fn the_participant_audio_graph_writes_a_playable_m4a() {
    use meeting_agent::recording::pipeline::{CompositePipeline, PipelineSettings};
    use meeting_agent::recording::spool::complete_prefix_len;
    use std::sync::Mutex;
    let settings = PipelineSettings {
        width: 640,
        height: 360,
        fps: 30,
        video_bitrate_kbps: 1500,
        audio_bitrate_kbps: 96,
        live: false,
        preset: "veryfast".into(),
        graphs: meeting_agent::recording::graphs::Graphs::builtin(),
    };
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let written = bytes.clone();
    let pipeline = CompositePipeline::start_participant_audio(&settings, move |b: &[u8]| {
        written.lock().unwrap().extend_from_slice(b)
    })
    .unwrap();
    assert!(pipeline.add_video("cam").is_err(), "audio only");
    let mut mic = pipeline.add_audio("mic").unwrap();
    for n in 0..500i64 {
        let frame: Vec<i16> = (0..480)
            .map(|k| {
                let t = (n * 480 + k) as f64 / 48_000.0;
                ((t * 440.0 * 2.0 * std::f64::consts::PI).sin() * 8000.0) as i16
            })
            .collect();
        mic.push(&frame, n * 10_000).unwrap();
    }
    drop(mic);
    pipeline.finish(Duration::from_secs(60)).unwrap();
    let bytes = std::mem::take(&mut *bytes.lock().unwrap());
    assert_eq!(complete_prefix_len(&bytes), bytes.len() as u64, "whole");
    let cut = complete_prefix_len(&bytes[..bytes.len() * 2 / 3]);
    assert!(
        cut > 0 && cut < bytes.len() as u64,
        "a cut file keeps {cut} bytes"
    );
    let path = std::env::temp_dir().join(format!("ma-pp-graph-{}.m4a", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let (caps, audio) = inspect::decode_audio(&path).unwrap();
    std::fs::write(&path, &bytes[..cut as usize]).unwrap();
    let (_, partial) = inspect::decode_audio(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(caps.contains("mpegversion=(int)4"), "AAC: {caps}");
    let secs = audio.len() as f64 / 48_000.0;
    assert!((secs - 5.0).abs() < 0.2, "{secs:.3} s");
    let partial_secs = partial.len() as f64 / 48_000.0;
    assert!(
        partial_secs > 1.0 && partial_secs < secs,
        "{partial_secs:.3} s"
    );
    let middle = &audio[48_000..4 * 48_000];
    let db = 10.0 * (power_at(middle, 440.0) / power_at(middle, 1000.0).max(1e-9)).log10();
    assert!(db > 40.0, "the tone is 440 Hz: {db:.1} dB over 1 kHz");
}

/// Comings and goings with the room at its limit (2 here): a third microphone is not recorded
/// on its own while two are; when one owner leaves, that file ends there and the waiting
/// microphone takes the place, in a file that holds its own sound. Asked for through the
/// room's metadata directly (as RoomService or any server SDK would).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaver_s_file_ends_and_a_waiting_microphone_takes_the_place() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ma-pp-e2e-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = config_for(&server, "");
    config.recording.dir = dir.clone();
    config.recording.max_participant_recordings = 2;
    config.validate().unwrap();
    let (worker, recorder, _api) = start(&config).await;
    let room = "rec-pp-limit";
    let spawn = |identity: &'static str, hz: &'static str| {
        PythonParticipant::spawn(
            &server,
            room,
            identity,
            &["--tone-hz", hz, "--video", "none"],
        )
        .unwrap()
    };
    let mut alice = spawn("alice", "440");
    let mut bob = spawn("bob", "1000");
    for p in [&mut alice, &mut bob] {
        p.wait_for(T, |e| e["event"] == "published" && e["kind"] == "audio")
            .await
            .expect("publishes");
    }
    server
        .room_service(
            "UpdateRoomMetadata",
            &json!({"room": room, "metadata": json!({
                "recording.enabled": true,
                "recording.per_participant": {"audio": true},
            }).to_string()}),
        )
        .await
        .unwrap();
    wait_announced(&mut alice, "active").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut carol = spawn("carol", "1700");
    carol
        .wait_for(T, |e| e["event"] == "published" && e["kind"] == "audio")
        .await
        .expect("publishes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    bob.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    server
        .room_service(
            "UpdateRoomMetadata",
            &json!({"room": room, "metadata": json!({"recording.enabled": false}).to_string()}),
        )
        .await
        .unwrap();
    wait_announced(&mut alice, "off").await;
    alice.stop().await;
    carol.stop().await;

    let all = stored(&recorder, 4, Duration::from_secs(60)).await;
    let own = |who: &str| -> Vec<&RecordingMeta> {
        all.iter()
            .filter(|m| {
                m.kind == RecordingKind::Participant && m.participant.as_deref() == Some(who)
            })
            .collect()
    };
    let (a, b, c) = (own("alice"), own("bob"), own("carol"));
    assert_eq!((a.len(), b.len(), c.len()), (1, 1, 1), "{all:#?}");
    let secs = |m: &RecordingMeta| m.duration_ms.unwrap_or(0) as f64 / 1000.0;
    let (a, b, c) = (a[0], b[0], c[0]);
    println!(
        "alice {:.2} s, bob {:.2} s, carol {:.2} s (from {} ms after bob's end)",
        secs(a),
        secs(b),
        secs(c),
        c.started_unix_ms - b.ended_unix_ms.unwrap()
    );
    assert!(secs(a) > 8.0, "alice recorded throughout: {:.2} s", secs(a));
    assert!(secs(b) < secs(a) - 3.0, "bob's file ended when he left");
    assert!(
        secs(c) < secs(a) - 3.0 && secs(c) > 3.0,
        "carol from when bob left"
    );
    assert!(
        (c.started_unix_ms - b.ended_unix_ms.unwrap()).abs() < 2_000,
        "carol took bob's place when he left"
    );
    // Carol's file holds carol.
    let path = dir.join(&c.key);
    let (_, audio) = tokio::task::spawn_blocking(move || inspect::decode_audio(&path))
        .await
        .unwrap()
        .unwrap();
    let middle = &audio[audio.len() / 4..audio.len() * 3 / 4];
    let db = 10.0 * (power_at(middle, 1700.0) / power_at(middle, 440.0).max(1e-9)).log10();
    assert!(db > 30.0, "carol's tone over alice's: {db:.1} dB");
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let _ = std::fs::remove_dir_all(&dir);
}
