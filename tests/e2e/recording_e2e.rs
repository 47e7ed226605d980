//! Composite recording end to end: a real livekit-server, real participants (LiveKit's Python
//! SDK) publishing cameras, screen shares and microphones, the agent recording the room, a real
//! S3 server that checks signatures (s3s-fs), and the recording fetched back through its
//! presigned link and decoded by GStreamer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::features::recording::Recorder;
use meeting_agent::media::VideoFrame;
use meeting_agent::recording::inspect::{self, DecodedRecording};
use meeting_agent::recording::meta::RecordingStatus;
use meeting_agent::recording::{RecordingMeta, StorageKind};
use meeting_agent_devtools::{LocalLiveKitServer, LocalS3, PythonParticipant};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ma-rec-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn recording_config(
    server: &LocalLiveKitServer,
    s3: Option<&LocalS3>,
    dir: &std::path::Path,
) -> Config {
    let mut config = config_for(server, "");
    let r = &mut config.recording;
    r.dir = dir.to_path_buf();
    r.width = 1280;
    r.height = 720;
    if let Some(s3) = s3 {
        r.storage = StorageKind::S3;
        r.s3 = s3.config("recordings");
    }
    config.validate().unwrap();
    config
}

async fn set_recording(server: &LocalLiveKitServer, room: &str, on: bool) {
    server
        .room_service(
            "UpdateRoomMetadata",
            &json!({"room": room, "metadata": json!({"recording.enabled": on}).to_string()}),
        )
        .await
        .unwrap();
}

/// Ends a test's worker and removes its folder.
fn drain(worker: RunningWorker, dir: &std::path::Path) {
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let _ = std::fs::remove_dir_all(dir);
}

/// The first stored recording, once storage has it whole.
async fn stored(recorder: &Recorder, within: Duration) -> RecordingMeta {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(list) = recorder.storage.list().await
            && let Some(meta) = list.into_iter().find(|m| {
                matches!(
                    m.status,
                    RecordingStatus::Complete | RecordingStatus::Partial
                )
            })
        {
            return meta;
        }
        assert!(
            Instant::now() < deadline,
            "no recording stored in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Downloads the recording through its playback link and decodes it.
async fn fetch_and_decode(
    recorder: &Recorder,
    meta: &RecordingMeta,
    keep_at: &[Duration],
) -> DecodedRecording {
    let link = recorder
        .storage
        .link(meta, Duration::from_secs(600))
        .await
        .unwrap();
    let path = std::env::temp_dir().join(format!("ma-rec-e2e-{}.mp4", meta.id));
    if let Some(local) = link.strip_prefix("file://") {
        std::fs::copy(local, &path).unwrap();
    } else {
        assert!(link.contains("X-Amz-Signature="), "presigned: {link}");
        let response = reqwest::get(&link).await.unwrap();
        assert_eq!(response.status(), 200, "{link}");
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    }
    let keep = keep_at.to_vec();
    tokio::task::spawn_blocking(move || {
        let d = inspect::decode(&path, &keep);
        let _ = std::fs::remove_file(&path);
        d
    })
    .await
    .unwrap()
    .unwrap()
}

/// BT.601 limited range, as libyuv converts the publishers' RGBA.
fn yuv(r: f32, g: f32, b: f32) -> [f32; 3] {
    [
        (66.0 * r + 129.0 * g + 25.0 * b) / 256.0 + 16.0,
        (-38.0 * r - 74.0 * g + 112.0 * b) / 256.0 + 128.0,
        (112.0 * r - 94.0 * g - 18.0 * b) / 256.0 + 128.0,
    ]
}

/// The share of the frame (in 16x16 blocks) showing `rgb`.
fn color_share(frame: &VideoFrame, rgb: [f32; 3]) -> f32 {
    let want = yuv(rgb[0], rgb[1], rgb[2]);
    let (y, u, v) = frame.planes();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let cw = w.div_ceil(2);
    let (mut hits, mut blocks) = (0, 0);
    for by in (0..h - 16).step_by(16) {
        for bx in (0..w - 16).step_by(16) {
            blocks += 1;
            let (mut sy, mut su, mut sv) = (0f32, 0f32, 0f32);
            for row in 0..16 {
                for col in 0..16 {
                    sy += y[(by + row) * w + bx + col] as f32;
                }
            }
            for row in 0..8 {
                for col in 0..8 {
                    su += u[(by / 2 + row) * cw + bx / 2 + col] as f32;
                    sv += v[(by / 2 + row) * cw + bx / 2 + col] as f32;
                }
            }
            let got = [sy / 256.0, su / 64.0, sv / 64.0];
            if got.iter().zip(want).all(|(g, w)| (g - w).abs() < 20.0) {
                hits += 1;
            }
        }
    }
    hits as f32 / blocks as f32
}

const COLORS: [(&str, [f32; 3]); 3] = [
    ("220,40,40", [220.0, 40.0, 40.0]),
    ("40,200,60", [40.0, 200.0, 60.0]),
    ("40,60,220", [40.0, 60.0, 220.0]),
];

fn meeting_secs() -> u64 {
    std::env::var("MEETING_AGENT_REC_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

const ROOM_KEY: &str = "key-for-rec-three-only-0123456789";
const OTHER_KEY: &str = "key-for-another-room-0123456789";

/// The control API on loopback: its URL.
async fn start_api(config: &Config, recorder: &Recorder) -> String {
    let mut config = config.clone();
    config.api.keys = vec![
        meeting_agent::config::ApiKey {
            key: ROOM_KEY.into(),
            rooms: vec!["rec-three".into()],
            participant_attributes: false,
        },
        meeting_agent::config::ApiKey {
            key: OTHER_KEY.into(),
            rooms: vec!["elsewhere".into()],
            participant_attributes: false,
        },
    ];
    let state = meeting_agent::api::ApiState::new(&config, None, Some(recorder.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { meeting_agent::api::serve_on(listener, state).await });
    url
}

/// Three participants for a minute; recording started and stopped through the control API
/// (which sets the room's switch); the recording streams to S3, is listed by the API and
/// plays back from its presigned link; deleting it removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_participants_recorded_to_s3_play_back_from_the_link() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let s3 = LocalS3::start().await.unwrap();
    let dir = temp_dir("s3");
    let config = recording_config(&server, Some(&s3), &dir);
    let (worker, recorder) = start_recording_worker(&config).await;
    let api = start_api(&config, &recorder).await;
    let http = reqwest::Client::new();
    let switch = |key: &'static str, on: bool| {
        http.put(format!("{api}/v1/rooms/rec-three/recording"))
            .bearer_auth(key)
            .json(&json!({"enabled": on}))
            .send()
    };
    let room = "rec-three";
    let mut people = Vec::new();
    for (i, (color, _)) in COLORS.iter().enumerate() {
        let tone = format!("{}", 300 + 200 * i);
        let p = PythonParticipant::spawn(
            &server,
            room,
            &format!("p{i}"),
            &["--color", color, "--tone-hz", &tone, "--video", "640x360"],
        )
        .unwrap();
        people.push(p);
    }
    for p in people.iter_mut() {
        p.wait_for(T, |e| e["event"] == "published" && e["kind"] == "video")
            .await
            .expect("publishes");
    }
    assert_eq!(switch(OTHER_KEY, true).await.unwrap().status(), 403);
    assert_eq!(switch(ROOM_KEY, true).await.unwrap().status(), 200);
    let started = wait_announced(&mut people[0], "active").await;
    // Live HLS while the meeting runs: segments in the bucket and a live playlist (no end).
    let live_after = Duration::from_secs(15);
    tokio::time::sleep(live_after).await;
    let live = live_playlist_in_bucket(&config).await;
    assert!(
        !live.contains("#EXT-X-ENDLIST") && !live.contains("PLAYLIST-TYPE"),
        "live while the meeting runs: {live}"
    );
    let live_segments = live.matches(".m4s").count();
    assert!(
        (4..=8).contains(&live_segments),
        "{live_segments} two-second segments after {live_after:?}: {live}"
    );
    assert!(live.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{live}");
    tokio::time::sleep(Duration::from_secs(meeting_secs()).saturating_sub(live_after)).await;
    assert_eq!(switch(ROOM_KEY, false).await.unwrap().status(), 200);
    let stopped = wait_announced(&mut people[0], "off").await;
    let meta = stored(&recorder, Duration::from_secs(60)).await;
    let link_after_end = stopped.elapsed().as_secs_f64();
    eprintln!("rec_link_after_end_s (1-minute meeting) = {link_after_end:.2}");
    for p in people {
        p.stop().await;
    }

    assert_eq!(meta.status, RecordingStatus::Complete);
    assert_eq!(meta.room, room);
    let mut who = meta.participants.clone();
    who.sort();
    assert_eq!(who, vec!["p0", "p1", "p2"]);
    let meeting = meta.duration_ms.unwrap() as f64 / 1000.0;
    let wall = (stopped - started).as_secs_f64();
    assert!(
        (meeting - wall).abs() < 2.0,
        "meeting {meeting} s, wall {wall} s"
    );

    let decoded =
        fetch_and_decode(&recorder, &meta, &[Duration::from_secs_f64(meeting / 2.0)]).await;
    let profile = DecodedRecording::caps_field(&decoded.video_caps, "profile").unwrap();
    assert!(
        profile == "high" || profile == "main",
        "{}",
        decoded.video_caps
    );
    assert_eq!(
        DecodedRecording::caps_field(&decoded.video_caps, "chroma-format").as_deref(),
        Some("4:2:0")
    );
    assert!(decoded.video_caps.contains("width=(int)1280"));
    assert!(
        decoded.audio_caps.contains("mpegversion=(int)4"),
        "AAC: {}",
        decoded.audio_caps
    );
    let duration = decoded.duration().as_secs_f64();
    assert!(
        (duration - meeting).abs() <= 0.5,
        "file {duration:.2} s vs meeting {meeting:.2} s"
    );

    // The API lists it and hands out a presigned link that plays; other rooms' keys see nothing.
    let get_json = |key: &'static str, path: String| {
        let req = http.get(format!("{api}{path}")).bearer_auth(key);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let listed = get_json(ROOM_KEY, "/v1/recordings".into()).await;
    assert_eq!(listed[0]["id"], meta.id.as_str());
    let hidden = get_json(OTHER_KEY, "/v1/recordings".into()).await;
    assert_eq!(hidden, json!([]));
    let link_path = format!("{api}/v1/recordings/{}/link", meta.id);
    assert_eq!(http.get(&link_path).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&link_path)
            .bearer_auth(OTHER_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "another room's recording is answered like a missing one"
    );
    let link = get_json(ROOM_KEY, format!("/v1/recordings/{}/link", meta.id)).await;
    let url = link["url"].as_str().unwrap();
    let head = http
        .get(url)
        .header("Range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 206);
    assert_eq!(&head.bytes().await.unwrap()[4..8], b"ftyp");

    // HLS: the playlist's byte ranges cover the recording and its segments add up to it; a
    // segment fetched through its presigned URL plays on its own after the init section.
    let playlist_path = format!("/v1/recordings/{}/playlist.m3u8", meta.id);
    assert_eq!(
        http.get(format!("{api}{playlist_path}"))
            .bearer_auth(OTHER_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "another room's key does not get the playlist (nor learns it exists)"
    );
    let response = http
        .get(format!("{api}{playlist_path}"))
        .bearer_auth(ROOM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let playlist = response.text().await.unwrap();
    assert!(playlist.starts_with("#EXTM3U") && playlist.trim_end().ends_with("#EXT-X-ENDLIST"));
    let media = playlist
        .lines()
        .find(|l| l.starts_with("http"))
        .expect("segments name a URL");
    assert!(media.contains("X-Amz-Signature="), "presigned: {media}");
    let ranges = meeting_agent::recording::hls::parse_ranges(&playlist);
    assert!(
        ranges.len() > 30,
        "{} segments for {meeting} s",
        ranges.len()
    );
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].0 + pair[0].1, pair[1].0, "contiguous: {pair:?}");
    }
    let hls_seconds: f64 = ranges.iter().map(|r| r.2).sum();
    assert!(
        (hls_seconds - meeting).abs() <= 0.5,
        "HLS {hls_seconds} s vs {meeting} s"
    );
    let fetch = |offset: u64, len: u64| {
        http.get(media)
            .header("Range", format!("bytes={offset}-{}", offset + len - 1))
            .send()
    };
    let (init, middle) = (ranges[0], ranges[ranges.len() / 2]);
    let mut bytes = fetch(init.0, init.1)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes.extend(
        fetch(middle.0, middle.1)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    let segment_file = dir.join("segment.mp4");
    std::fs::write(&segment_file, &bytes).unwrap();
    let segment = tokio::task::spawn_blocking(move || inspect::decode(&segment_file, &[]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        segment.frames.len() >= 20,
        "one segment alone decodes to {} frames",
        segment.frames.len()
    );
    // And a player plays it: GStreamer's HLS demuxer over the presigned byte ranges.
    plays_every_frame(dir.join("recording.m3u8"), &playlist, &decoded).await;
    check_live_hls(&http, &api, &meta, &decoded, &dir).await;
    let (_, frame) = &decoded.kept[0];
    for (color, rgb) in COLORS {
        let share = color_share(frame, rgb);
        assert!(share > 0.1, "{color} covers {share} of the frame");
    }
    assert!(
        decoded
            .audio
            .iter()
            .filter(|s| s.unsigned_abs() > 2000)
            .count()
            > decoded.audio.len() / 4,
        "the tones are in the mix"
    );
    // The poster and the timeline thumbnails, stored beside it, served to the room's key only.
    let vtt_url = format!("{api}/v1/recordings/{}/thumbnails.vtt", meta.id);
    let deadline = Instant::now() + Duration::from_secs(20);
    let vtt = loop {
        let res = http
            .get(&vtt_url)
            .bearer_auth(ROOM_KEY)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            assert_eq!(res.headers()["content-type"], "text/vtt");
            break res.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no thumbnails: {}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cues: Vec<&str> = vtt.lines().filter(|l| l.contains("#xywh=")).collect();
    let expected = (meeting / 10.0).ceil() as usize;
    assert!(
        cues.len().abs_diff(expected) <= 1,
        "{} thumbnails for {meeting} s: {vtt}",
        cues.len()
    );
    assert!(vtt.starts_with("WEBVTT\n\n00:00:00"), "{vtt}");
    let sprite_url = cues[0].split('#').next().unwrap();
    assert!(sprite_url.contains("X-Amz-Signature="), "{sprite_url}");
    let sprite = image::load_from_memory(
        &http
            .get(sprite_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sprite.width(), 160 * cues.len().min(10) as u32);
    assert_eq!(sprite.height() % 90, 0);
    let poster: serde_json::Value = http
        .get(format!("{api}/v1/recordings/{}/poster", meta.id))
        .bearer_auth(ROOM_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poster = image::load_from_memory(
        &http
            .get(poster["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap()
    .to_rgb8();
    assert_eq!((poster.width(), poster.height()), (160, 90));
    // Three coloured cameras in a grid, not a black frame.
    let bright = poster
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c > 120))
        .count();
    assert!(
        bright * 4 > (160 * 90),
        "the poster shows the cameras: {bright} bright pixels"
    );
    for path in ["poster", "thumbnails.vtt"] {
        let res = http
            .get(format!("{api}/v1/recordings/{}/{path}", meta.id))
            .bearer_auth(OTHER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path} of another room's recording");
    }
    drain(worker, &dir);
}

/// A host's spotlight reaches the recording: in a grid of three cameras, the spotlit one fills
/// the canvas above a strip of the others while it is set, and the grid comes back when it is
/// cleared (set through the control API, which writes the room's metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_spotlight_shows_its_participant_large_in_the_recording() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = temp_dir("spotlight");
    let config = recording_config(&server, None, &dir);
    assert_eq!(config.recording.layout, meeting_agent::config::Layout::Grid);
    let (worker, recorder) = start_recording_worker(&config).await;
    let api = start_api(&config, &recorder).await;
    let http = reqwest::Client::new();
    let spotlight = |identity: serde_json::Value| {
        http.put(format!("{api}/v1/rooms/rec-three/spotlight"))
            .bearer_auth(ROOM_KEY)
            .json(&json!({ "identity": identity }))
            .send()
    };
    let room = "rec-three";
    let mut people = Vec::new();
    for (i, (color, _)) in COLORS.iter().enumerate() {
        // No microphones: no active speaker to mix up with the spotlight.
        let args = ["--color", color, "--tone-hz", "0", "--video", "640x360"];
        people.push(PythonParticipant::spawn(&server, room, &format!("p{i}"), &args).unwrap());
    }
    for p in people.iter_mut() {
        p.wait_for(T, |e| e["event"] == "published" && e["kind"] == "video")
            .await
            .expect("publishes");
    }
    set_recording(&server, room, true).await;
    let started = wait_announced(&mut people[0], "active").await;
    // Every camera in the grid first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(spotlight(json!("p2")).await.unwrap().status(), 200);
    let spotlit_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(spotlight(json!(null)).await.unwrap().status(), 200);
    let cleared_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    set_recording(&server, room, false).await;
    wait_announced(&mut people[0], "off").await;
    let meta = stored(&recorder, Duration::from_secs(60)).await;
    for p in people {
        p.stop().await;
    }
    let settle = Duration::from_millis(2500);
    let at = [
        Duration::from_secs(3),
        spotlit_at + settle,
        cleared_at + settle,
    ];
    let decoded = fetch_and_decode(&recorder, &meta, &at).await;
    let shares: Vec<Vec<f32>> = decoded
        .kept
        .iter()
        .map(|(_, frame)| {
            COLORS
                .iter()
                .map(|(_, rgb)| color_share(frame, *rgb))
                .collect()
        })
        .collect();
    println!("color shares (p0, p1, p2) before, during, after the spotlight: {shares:?}");
    assert_eq!(shares.len(), 3);
    let grid = |s: &[f32]| s.iter().all(|&c| (0.12..0.4).contains(&c));
    assert!(grid(&shares[0]), "a grid before: {shares:?}");
    assert!(
        shares[1][2] > 0.45 && shares[1][0] < 0.12 && shares[1][1] < 0.12,
        "p2 large while spotlit: {shares:?}"
    );
    assert!(grid(&shares[2]), "the grid again after: {shares:?}");
    drain(worker, &dir);
}

/// The live playlist of the one recording in the bucket, as stored.
async fn live_playlist_in_bucket(config: &meeting_agent::config::Config) -> String {
    let s3 = meeting_agent::recording::s3::S3Store::new(&config.recording.s3).unwrap();
    let key = s3
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .find(|k| k.ends_with("/live/index.m3u8"))
        .expect("a live playlist in the bucket while the meeting runs");
    String::from_utf8(s3.get_object(&key).await.unwrap()).unwrap()
}

/// After the meeting the live playlist is the VOD one: its segments start at key frames,
/// add up to the recording, play in GStreamer's HLS demuxer frame for frame, and are served
/// through the API (`?via=api`) to the room's key only.
async fn check_live_hls(
    http: &reqwest::Client,
    api: &str,
    meta: &RecordingMeta,
    decoded: &DecodedRecording,
    dir: &std::path::Path,
) {
    let path = format!("{api}/v1/recordings/{}/live.m3u8", meta.id);
    let get = |url: String, key: &'static str| http.get(url).bearer_auth(key).send();
    assert_eq!(get(path.clone(), OTHER_KEY).await.unwrap().status(), 404);
    let vod = get(path.clone(), ROOM_KEY)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.trim_end().ends_with("#EXT-X-ENDLIST"),
        "{vod}"
    );
    let mut durations = Vec::new();
    for line in vod.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            durations.push(d.trim_end_matches(',').parse::<f64>().unwrap());
        }
    }
    let total: f64 = durations.iter().sum();
    let meeting = meta.duration_ms.unwrap() as f64 / 1000.0;
    assert!(
        (total - meeting).abs() <= 0.5,
        "live HLS {total} s vs {meeting} s"
    );
    let inner = &durations[..durations.len() - 1];
    assert!(
        inner.iter().all(|d| (1.5..=2.6).contains(d)),
        "segments of about 2 s: {durations:?}"
    );
    let links: Vec<&str> = vod.lines().filter(|l| l.starts_with("http")).collect();
    assert!(
        links.iter().all(|l| l.contains("X-Amz-Signature=")),
        "presigned"
    );
    plays_every_frame(dir.join("live.m3u8"), &vod, decoded).await;
    // Through the API, for a browser on its origin: the same bytes, the room's key only.
    let via_api = get(format!("{path}?via=api"), ROOM_KEY)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        via_api.contains("#EXT-X-MAP:URI=\"live/init.mp4\""),
        "{via_api}"
    );
    let object = format!("{api}/v1/recordings/{}/live/seg-00001.m4s", meta.id);
    let served = get(object.clone(), ROOM_KEY).await.unwrap();
    assert_eq!(served.status(), 200);
    let presigned = http
        .get(links[1])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.bytes().await.unwrap(), presigned);
    assert_eq!(get(object, OTHER_KEY).await.unwrap().status(), 404);
    for hostile in ["..%2F..%2Fetc%2Fpasswd", "recording.mp4", "seg-1.m4s"] {
        let url = format!("{api}/v1/recordings/{}/live/{hostile}", meta.id);
        assert_eq!(get(url, ROOM_KEY).await.unwrap().status(), 404, "{hostile}");
    }
}

/// `playlist`, written to `file`, plays in GStreamer's HLS demuxer with every frame the
/// recording has (within 1 %).
async fn plays_every_frame(file: PathBuf, playlist: &str, decoded: &DecodedRecording) {
    std::fs::write(&file, playlist).unwrap();
    let name = file.display().to_string();
    let frames = tokio::task::spawn_blocking(move || frames_played_through(&file))
        .await
        .unwrap();
    let in_file = decoded.frames.len();
    assert!(
        frames.abs_diff(in_file) <= in_file / 100 + 2,
        "{name}: HLS playback rendered {frames} frames, the file has {in_file}"
    );
}

/// Video frames a `playbin3` renders from an HLS playlist, as fast as it can.
fn frames_played_through(playlist: &std::path::Path) -> usize {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    meeting_agent::recording::pipeline::init().unwrap();
    let frames = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let video = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("signal-handoffs", true)
        .build()
        .unwrap();
    let counter = frames.clone();
    video.connect("handoff", false, move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    });
    let audio = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    let player = gst::ElementFactory::make("playbin3")
        .property("uri", format!("file://{}", playlist.display()))
        .property("video-sink", &video)
        .property("audio-sink", &audio)
        .build()
        .unwrap();
    player.set_state(gst::State::Playing).unwrap();
    let bus = player.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("HLS playback ends within two minutes");
    if let gst::MessageView::Error(e) = message.view() {
        panic!("HLS playback failed: {} ({:?})", e.error(), e.debug());
    }
    player.set_state(gst::State::Null).unwrap();
    frames.load(std::sync::atomic::Ordering::Relaxed)
}

/// The longest a screen share's first picture may take to reach the recording after the
/// agent subscribed to it: a subscription, a keyframe and a decode. (Measured on 2 busy
/// cores in this suite: see BENCHMARKS.md, rec_share_first_picture_ms.)
const SHARE_FIRST_PICTURE_MS: u64 = 3_000;

/// A participant flashes white and beeps at the same instants: the recording keeps them
/// together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flashes_and_beeps_stay_in_sync() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = temp_dir("sync");
    let mut config = recording_config(&server, None, &dir);
    config.recording.auto = true;
    // With the messaging store: the recording is listed there and posted into the thread.
    let store =
        meeting_agent::store::Store::connect(&format!("sqlite:{}", dir.join("store.db").display()))
            .await
            .unwrap();
    let recorder = Recorder::from_config(&config)
        .unwrap()
        .with_store(store.clone());
    let session = FeatureSet::default()
        .with_store(
            store.clone(),
            meeting_agent::features::meeting_log::MeetingLogOptions {
                bot_user: "meeting-agent".into(),
                flush_timeout: Duration::from_secs(10),
                llm: None,
                events: None,
                email: Default::default(),
            },
        )
        .with_recorder(recorder.clone())
        .session();
    let worker = start_worker_with(
        config.clone(),
        Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    let room = "rec-sync";
    let mut p = PythonParticipant::spawn(
        &server,
        room,
        "flasher",
        &meeting_agent_devtools::participant::FLASH_BEEP_ARGS,
    )
    .unwrap();
    wait_announced(&mut p, "active").await;
    // The publisher says when it could not keep its microphone fed (a gap the engine fills
    // with silence shifts every later beep): then the sender, not the recording, moved.
    let underruns = std::sync::atomic::AtomicUsize::new(0);
    p.wait_for(Duration::from_secs(20), |e| {
        if e["event"] == "audio_underrun" {
            underruns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        false
    })
    .await;
    set_recording(&server, room, false).await;
    wait_announced(&mut p, "off").await;
    p.stop().await;
    let meta = stored(&recorder, Duration::from_secs(30)).await;
    let decoded = fetch_and_decode(&recorder, &meta, &[]).await;
    // Sync is judged after the receiver settles (`inspect::LIVE_SYNC_SETTLES_US`).
    let sync = inspect::live_sync(&decoded).expect("flash/beep pairs after settling");
    assert!(
        sync.settling.len() + sync.settled.len() >= 12,
        "too few flash/beep pairs: {sync:?}"
    );
    let offsets: Vec<f64> = sync.settled.iter().map(|&(_, o)| o).collect();
    let (median, settling) = (sync.median, &sync.settling);
    let drift = sync.drift_ms_per_min.unwrap_or(0.0);
    let underruns = underruns.into_inner();
    eprintln!(
        "rec_av_offset_ms median {median:.1}, drift {drift:.1} ms/min, sender underruns {underruns}, settled {offsets:?}, settling {settling:?}"
    );
    assert!(median.abs() <= 40.0, "A/V offset {median} ms: {offsets:?}");
    // Through the meeting, not only on average (each flash is seen to within one output
    // frame: the figure includes that).
    assert!(
        offsets.iter().all(|o| o.abs() <= 40.0),
        "A/V offsets beyond 40 ms after the receiver settled: {offsets:?}"
    );
    // The store has the recording's row, and the meeting's thread its link.
    let deadline = Instant::now() + Duration::from_secs(10);
    let meeting = loop {
        let listed = store.recordings(Some(room)).await.unwrap();
        let meetings = store.meetings(Some(room)).await.unwrap();
        if listed.iter().any(|r| r.id == meta.id) && !meetings.is_empty() {
            break meetings[0].clone();
        }
        assert!(Instant::now() < deadline, "recording not in the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let thread = store.thread(&meeting.id).await.unwrap();
    let post = thread
        .iter()
        .find(|m| m.kind == "recording")
        .expect("the recording is posted into the meeting's thread");
    assert!(
        post.text.contains(&meta.id) && post.text.contains("file://"),
        "{}",
        post.text
    );
    assert_eq!(post.reply_to.as_deref(), Some(meeting.thread_id.as_str()));
    drain(worker, &dir);
}

/// An audio-only meeting: two participants publish microphones and nobody ever a camera.
/// The recording is stored whole and plays: as long as it ran, with their voices and a black
/// picture (it used to be left at 0 bytes while the end never came).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meeting_with_microphones_only_is_recorded_playable() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = temp_dir("audio-only");
    let mut config = recording_config(&server, None, &dir);
    config.recording.auto = true;
    let (worker, recorder) = start_recording_worker(&config).await;
    let room = "rec-audio-only";
    let speech = meeting_agent_devtools::fixtures::dir()
        .unwrap()
        .join("speech.wav");
    let mut ann = PythonParticipant::spawn(
        &server,
        room,
        "ann",
        &["--wav", speech.to_str().unwrap(), "--video", "none"],
    )
    .unwrap();
    let bob = PythonParticipant::spawn(&server, room, "bob", &["--video", "none"]).unwrap();
    let started = wait_announced(&mut ann, "active").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    set_recording(&server, room, false).await;
    let stopped = wait_announced(&mut ann, "off").await;
    let recorded = (stopped - started).as_secs_f64();
    ann.stop().await;
    bob.stop().await;
    let meta = stored(&recorder, Duration::from_secs(30)).await;
    assert_eq!(meta.status, RecordingStatus::Complete, "{meta:?}");
    assert!(meta.size_bytes.unwrap_or(0) > 0, "{meta:?}");
    for who in ["ann", "bob"] {
        assert!(meta.participants.iter().any(|p| p == who), "{meta:?}");
    }
    let decoded = fetch_and_decode(&recorder, &meta, &[Duration::from_secs(2)]).await;
    let duration = decoded.duration().as_secs_f64();
    assert!(
        duration > 6.0 && duration < recorded + 1.5,
        "plays {duration:.2} s of about {recorded:.2} s recorded"
    );
    let audio_s = decoded.audio.len() as f64 / 48_000.0;
    assert!(
        audio_s > duration - 1.0,
        "audio {audio_s:.2} s of {duration:.2} s"
    );
    assert!(
        decoded.audio.iter().any(|s| s.unsigned_abs() > 2000),
        "the voices are in the recording"
    );
    assert!(
        decoded.frames.len() as f64 > duration * 20.0,
        "{} video frames in {duration:.2} s",
        decoded.frames.len()
    );
    assert!(
        decoded.frames.iter().all(|&(_, luma)| luma < 24.0),
        "nobody sent a picture: black"
    );
    drain(worker, &dir);
}

/// A screen share's sound (a shared video, music) reaches the recording untouched: the agent
/// runs no noise suppression on it and publishes no clean track of it, even when asked. Sent:
/// speech in white noise at 5 dB SNR; as a microphone, RNNoise takes the noise between the
/// words down by 15 dB and more (the clean-track test); as a share's sound it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_screen_shares_sound_is_recorded_untouched() {
    use meeting_agent::audio::quality::noise_floor_dbfs;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = temp_dir("share-audio");
    let mut config = recording_config(&server, None, &dir);
    config.recording.auto = true;
    let (mut worker, recorder) = start_recording_worker(&config).await;
    let room = "rec-share-audio";
    let wav = dir.join("noisy-speech.wav");
    let mix = noisy_speech_wav(&wav);
    let mut sam = PythonParticipant::spawn(
        &server,
        room,
        "sam",
        &[
            "--wav",
            wav.to_str().unwrap(),
            "--audio-source",
            "screenshare_audio",
            "--video",
            "none",
            "--attributes",
            "ns.clean_track=true",
        ],
    )
    .unwrap();
    wait_announced(&mut sam, "active").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    set_recording(&server, room, false).await;
    wait_announced(&mut sam, "off").await;
    sam.stop().await;
    let meta = stored(&recorder, Duration::from_secs(30)).await;
    let decoded = fetch_and_decode(&recorder, &meta, &[]).await;
    // The middle of the recording: past the share's start, before its end.
    let audio: Vec<f32> = decoded.audio[decoded.audio.len() / 4..decoded.audio.len() * 3 / 4]
        .iter()
        .map(|&s| f32::from(s))
        .collect();
    let (recorded, sent) = (noise_floor_dbfs(&audio), noise_floor_dbfs(&mix));
    println!("screen share's noise floor: {recorded:.1} dBFS recorded, {sent:.1} dBFS sent");
    assert!(
        recorded > sent - 6.0,
        "the share's sound was denoised: floor {recorded:.1} dBFS recorded, {sent:.1} dBFS sent"
    );
    let clean_tracks = std::iter::from_fn(|| worker.reports.try_recv().ok())
        .filter(|r| {
            matches!(
                r,
                meeting_agent::session::SessionReport::CleanTrackPublished { .. }
            )
        })
        .count();
    assert_eq!(clean_tracks, 0, "no clean track of a screen share's sound");
    drain(worker, &dir);
}

/// S3 goes away mid-recording and comes back only after the meeting; meanwhile a
/// participant joins late, another leaves early and a screen share starts and stops. The
/// whole recording arrives once S3 is back and plays through; the screen share took the
/// large area while it was on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_outage_and_comings_and_goings_lose_nothing() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut s3 = LocalS3::start().await.unwrap();
    let dir = temp_dir("outage");
    let mut config = recording_config(&server, Some(&s3), &dir);
    config.recording.auto = true;
    let (worker, recorder) = start_recording_worker(&config).await;
    let room = "rec-outage";
    let mut a = PythonParticipant::spawn(&server, room, "a", &["--color", COLORS[0].0]).unwrap();
    let started = wait_announced(&mut a, "active").await;
    let early =
        PythonParticipant::spawn(&server, room, "early", &["--color", COLORS[1].0]).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s3.stop().await;
    let late = PythonParticipant::spawn(&server, room, "late", &["--color", COLORS[2].0]).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut screen = PythonParticipant::spawn(
        &server,
        room,
        "presenter",
        &[
            "--video-source",
            "screenshare",
            "--color",
            "230,220,40",
            "--tone-hz",
            "0",
        ],
    )
    .unwrap();
    // The share counts from its publication: a participant starting up on a busy machine
    // takes seconds to get there.
    screen
        .wait_for(T, |e| e["event"] == "published" && e["kind"] == "video")
        .await
        .expect("the presenter shares a screen");
    let share_on = started.elapsed();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let share_off = started.elapsed();
    screen.stop().await;
    early.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    set_recording(&server, room, false).await;
    let stopped = wait_announced(&mut a, "off").await;
    a.stop().await;
    late.stop().await;
    // The recording waits in the spool until S3 is back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spool = std::fs::read_dir(dir.join("spool")).unwrap().count();
    assert_eq!(spool, 1, "the recording is spooled while S3 is down");
    let (spools, backlog) = meeting_agent::recording::storage::backlog(&dir);
    assert_eq!(spools, 1);
    assert!(backlog > 100_000, "upload backlog {backlog} bytes");
    assert!(
        meeting_agent::api::metrics::render(Some(&dir)).contains(&format!(
            "meeting_agent_recording_upload_backlog_bytes {backlog}"
        ))
    );
    s3.resume().await.unwrap();
    let meta = stored(&recorder, Duration::from_secs(60)).await;

    assert_eq!(meta.status, RecordingStatus::Complete);
    let meeting = meta.duration_ms.unwrap() as f64 / 1000.0;
    assert!(((stopped - started).as_secs_f64() - meeting).abs() < 2.0);
    // The share's first picture reached the recording a bounded time after its
    // subscription, and the metadata says when: the frame looked at is one second later
    // (the picture's own delay is the jitter buffer's, well under that).
    let span = meta
        .screen_shares
        .iter()
        .find(|s| s.identity == "presenter")
        .unwrap_or_else(|| panic!("the share is in the metadata: {meta:?}"));
    let first = span
        .first_frame_ms
        .unwrap_or_else(|| panic!("no picture of the share reached the recording: {span:?}"));
    eprintln!(
        "rec_share_first_picture_ms {} (published ~{} ms, subscribed {} ms into the recording)",
        first - span.subscribed_ms,
        share_on.as_millis(),
        span.subscribed_ms
    );
    assert!(
        first - span.subscribed_ms <= SHARE_FIRST_PICTURE_MS,
        "the share's first picture came {} ms after its subscription",
        first - span.subscribed_ms
    );
    let mid_share = Duration::from_millis(first) + Duration::from_secs(1);
    assert!(
        mid_share < share_off,
        "the share's first picture came {first} ms into the recording, the share ended at {share_off:?}: {span:?}"
    );
    let after = share_off + Duration::from_secs(3);
    let decoded = fetch_and_decode(&recorder, &meta, &[mid_share, after]).await;
    let duration = decoded.duration().as_secs_f64();
    assert!(
        (duration - meeting).abs() <= 0.5,
        "file {duration} s vs {meeting} s"
    );
    // Plays through: no hole in the video.
    let gaps = decoded
        .frames
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap();
    assert!(gaps < 200_000, "largest gap between frames {gaps} µs");
    let screen_share = color_share(&decoded.kept[0].1, [230.0, 220.0, 40.0]);
    assert!(screen_share > 0.4, "the screen share covers {screen_share}");
    let after_frame = &decoded.kept[1].1;
    assert!(color_share(after_frame, [230.0, 220.0, 40.0]) < 0.01);
    assert!(
        color_share(after_frame, COLORS[2].1) > 0.1,
        "the late joiner is shown"
    );
    assert!(
        color_share(after_frame, COLORS[1].1) < 0.01,
        "the early leaver is gone"
    );
    let mut who = meta.participants.clone();
    who.sort();
    assert_eq!(who, vec!["a", "early", "late", "presenter"]);
    drain(worker, &dir);
}

/// The agent (the real binary) is killed mid-recording; started again, it uploads what was
/// spooled, cut at the last whole fragment, and that plays up to the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_agent_uploads_its_spool_when_restarted() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let s3 = LocalS3::start().await.unwrap();
    let dir = temp_dir("crash");
    let c = s3.config("recordings");
    let config_path = dir.join("agent.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"data_dir = "{data}"
[livekit]
url = "{url}"
api_key = "{key}"
api_secret = "{secret}"
[agent]
name = "recorder"
load_threshold = 1.0
[captions]
enabled = false
[video]
virtual_backgrounds = false
[store]
enabled = false
[recording]
auto = true
storage = "s3"
dir = "{rec}"
[recording.s3]
endpoint = "{endpoint}"
bucket = "recordings"
access_key = "{ak}"
secret_key = "{sk}"
"#,
            data = dir.join("data").display(),
            url = server.ws_url(),
            key = server.api_key,
            secret = server.api_secret,
            rec = dir.join("rec").display(),
            endpoint = c.endpoint,
            ak = c.access_key,
            sk = c.secret_key,
        ),
    )
    .unwrap();
    let agent = |piped_log: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meeting-agent"));
        cmd.arg("--config")
            .arg(&config_path)
            .arg("worker")
            .env("MEETING_AGENT_LOG", "warn,meeting_agent=info")
            .env("MEETING_AGENT_LOG_FORMAT", "text")
            .kill_on_drop(true);
        if piped_log {
            cmd.stderr(std::process::Stdio::piped());
        }
        cmd.spawn().unwrap()
    };
    let mut first = agent(true);
    // Dispatch only once the worker is registered: its log says so.
    let log = first.stderr.take().unwrap();
    let (registered_tx, registered) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(log).lines();
        let mut registered_tx = Some(registered_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("worker registered")
                && let Some(tx) = registered_tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(T, registered)
        .await
        .expect("the agent registers")
        .unwrap();
    let room = "rec-crash";
    let mut p = PythonParticipant::spawn(&server, room, "p", &[]).unwrap();
    p.wait_for(T, |e| e["event"] == "connected").await.unwrap();
    meeting_agent_devtools::dispatch_cli(
        &server,
        &["create", "--room", room, "--agent-name", "recorder"],
    )
    .await
    .unwrap();
    let started = wait_announced(&mut p, "active").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.start_kill().unwrap();
    let killed = started.elapsed().as_secs_f64();
    first.wait().await.unwrap();
    p.stop().await;

    let mut second = agent(false);
    let recorder = Recorder::from_config(&{
        let mut c2 = Config::default();
        c2.recording.storage = StorageKind::S3;
        c2.recording.s3 = c.clone();
        c2.recording.dir = dir.join("unused");
        c2
    })
    .unwrap();
    let meta = stored(&recorder, Duration::from_secs(30)).await;
    let _ = second.start_kill();
    assert_eq!(meta.status, RecordingStatus::Partial);
    let decoded = fetch_and_decode(&recorder, &meta, &[]).await;
    let duration = decoded.duration().as_secs_f64();
    // Fragments close every second: at most about that is lost.
    assert!(
        duration > killed - 2.5 && duration <= killed + 0.5,
        "plays {duration:.2} s of {killed:.2} s recorded before the crash"
    );
    let _ = std::fs::remove_dir_all(dir);
}
