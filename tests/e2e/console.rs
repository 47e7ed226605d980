//! The web console (issue 19) in a real browser: a real meeting on a real livekit-server (a
//! Python participant speaks the captions fixture, the agent transcribes it with whisper, writes
//! the meeting into the store and records it to a real S3 server, s3s-fs), then Debian's
//! Chromium driven by puppeteer-core (`tests/browser/console.mjs`) opens the console served by
//! the control API: the video plays, choosing a transcript line seeks there, search finds a
//! spoken phrase, another room's meeting is not reachable, and a participant token opens its
//! room only. A screenshot of the meeting page is kept under `$CARGO_TARGET_DIR/test-artefacts/`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use livekit_api::access_token::{AccessToken, VideoGrants};
use meeting_agent::config::{ApiKey, StorageKind};
use meeting_agent::features::FeatureSet;
use meeting_agent::features::captions::Captioning;
use meeting_agent::features::meeting_log::MeetingLogOptions;
use meeting_agent::features::recording::Recorder;
use meeting_agent::recording::meta::RecordingStatus;
use meeting_agent::store::{Meeting, Segment, Store};
use meeting_agent_devtools::{LocalLiveKitServer, LocalS3, PythonParticipant};
use serde_json::Value;

const ROOM: &str = "console-room";
const OTHER_ROOM: &str = "console-elsewhere";
const ROOM_KEY: &str = "console-room-key-0123456789abcdef";
const T: Duration = Duration::from_secs(30);

fn token(server: &LocalLiveKitServer, room: &str, identity: &str) -> String {
    AccessToken::with_api_key(&server.api_key, &server.api_secret)
        .with_identity(identity)
        .with_ttl(Duration::from_secs(600))
        .with_grants(VideoGrants {
            room: room.into(),
            room_join: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap()
}

fn artefacts_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artefacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_plays_a_recorded_meeting_in_chromium() {
    init();
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/puppeteer-core").is_dir(),
        "run scripts/browser_setup.sh (puppeteer-core and Chromium)"
    );
    assert!(
        meeting_agent::api::console::player_installed(),
        "run scripts/console_setup.sh and rebuild (hls.js)"
    );
    let server = LocalLiveKitServer::start().await.unwrap();
    let s3 = LocalS3::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ma-console-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite:{}", dir.join("console.db").display()))
        .await
        .unwrap();

    let mut config = config_for(&server, "");
    config.data_dir = dir.clone();
    config.captions.interim_ms = 700;
    config.recording.dir = dir.join("spool");
    config.recording.width = 640;
    config.recording.height = 360;
    config.recording.auto = true;
    config.recording.storage = StorageKind::S3;
    config.recording.s3 = s3.config("recordings");
    config.recording.retention_days = 30;
    config.validate().unwrap();
    let recorder = Recorder::from_config(&config)
        .unwrap()
        .with_store(store.clone());
    recorder.storage.check().await.unwrap();
    let captioning =
        Captioning::from_config(&config).expect("whisper model (run models/fetch_models.sh)");
    let features = FeatureSet::new(config.audio)
        .with_captioning(captioning)
        .with_store(
            store.clone(),
            MeetingLogOptions {
                bot_user: "meeting-agent".into(),
                flush_timeout: Duration::from_secs(30),
                llm: None,
                events: None,
                email: Default::default(),
            },
        )
        .with_recorder(recorder.clone())
        .with_call_quality(meeting_agent::config::CallQualityConfig {
            interval_secs: 1,
            ..Default::default()
        });
    let session = features.session();
    let mut worker = start_worker_with(
        config.clone(),
        Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;

    // sam speaks the six sentences of the captions fixture once, with a camera.
    let wav = meeting_agent_devtools::fixtures::dir()
        .unwrap()
        .join("captions.wav");
    let mut sam = PythonParticipant::spawn(
        &server,
        ROOM,
        "sam",
        &[
            "--wav",
            wav.to_str().unwrap(),
            "--once",
            "--video",
            "320x180",
            "--fps",
            "10",
            "--wait-for-agent",
            "30",
        ],
    )
    .unwrap();
    sam.wait_for(Duration::from_secs(90), |e| e["event"] == "wav_finished")
        .await
        .expect("sam speaks the fixture");
    tokio::time::sleep(Duration::from_secs(3)).await;
    sam.stop().await;
    server
        .room_service("DeleteRoom", &serde_json::json!({"room": ROOM}))
        .await
        .unwrap();
    wait_for(
        &mut worker.reports,
        T,
        |r| matches!(r, meeting_agent::session::SessionReport::Left { room, .. } if room == ROOM),
    )
    .await
    .expect("the agent leaves the deleted room");

    // The meeting, its transcript and its recording are stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let (meeting, segments, recording) = loop {
        let meeting = store
            .meetings(Some(ROOM))
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.ended_at_ms.is_some());
        let recording = store
            .recordings(Some(ROOM))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.status == RecordingStatus::Complete);
        if let (Some(meeting), Some(recording)) = (meeting, recording) {
            let segments = store.segments(&meeting.id).await.unwrap();
            if segments.len() >= 3 {
                break (meeting, segments, recording);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ended meeting with a transcript and a complete recording"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let transcript: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
    println!("transcript: {transcript:?}; recording {}", recording.id);
    let said = |w: &str| transcript.iter().any(|t| t.to_lowercase().contains(w));
    assert!(said("budget"), "{transcript:?}");

    // Another room's meeting, in the same store.
    let other = Meeting::new(OTHER_ROOM, meeting.started_at_ms - 3_600_000);
    store
        .open_meeting(
            &other,
            &other.root_message("meeting-agent", "Meeting".into()),
        )
        .await
        .unwrap();
    store
        .add_segments(
            &other,
            &[Segment {
                key: "o1".into(),
                speaker: "eve".into(),
                text: "The budget of the other room is secret.".into(),
                start_ms: 0,
                end_ms: 2_000,
            }],
        )
        .await
        .unwrap();

    // The control API (which serves the console) on loopback.
    let mut api_config = config.clone();
    api_config.api.keys = vec![ApiKey {
        key: ROOM_KEY.into(),
        rooms: vec![ROOM.into()],
        participant_attributes: false,
    }];
    let state =
        meeting_agent::api::ApiState::new(&api_config, Some(store.clone()), Some(recorder.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { meeting_agent::api::serve_on(listener, state).await });

    // The media route answers ranges (what the player asks for) and refuses several at once.
    let http = reqwest::Client::new();
    let media = format!("{url}/v1/recordings/{}/media", recording.id);
    let part = http
        .get(&media)
        .bearer_auth(ROOM_KEY)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    let content_range = part.headers()["content-range"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_range.starts_with("bytes 0-99/"), "{content_range}");
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let several = http
        .get(&media)
        .bearer_auth(ROOM_KEY)
        .header("Range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(several.status(), 416);
    let theirs = token(&server, OTHER_ROOM, "eve");
    let refused = http.get(&media).bearer_auth(&theirs).send().await.unwrap();
    assert_eq!(refused.status(), 404, "another room's token");
    let mine = token(&server, ROOM, "sam");
    let delete = http
        .delete(format!("{url}/v1/recordings/{}", recording.id))
        .bearer_auth(&mine)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403, "a participant token may not delete");

    // Chromium.
    let artefacts = artefacts_dir();
    std::fs::create_dir_all(&artefacts).unwrap();
    let screenshot = artefacts.join("console-meeting-page.png");
    let out = dir.join("console-result.json");
    let phrase = "budget";
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .args(["--url", &url, "--key", ROOM_KEY, "--meeting", &meeting.id])
        .args(["--other-meeting", &other.id, "--phrase", phrase])
        .args(["--token", &mine, "--other-token", &theirs])
        .arg("--delete-recording")
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("the browser run ends within 150 s")
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap_or_default())
        .unwrap_or_else(|_| panic!("no result from console.mjs: {output:?}"));
    println!("console result: {result:#}");
    println!("console screenshot: {}", screenshot.display());
    assert!(output.status.success(), "console.mjs failed: {result}");
    assert!(screenshot.is_file());

    // What the browser showed.
    assert_eq!(result["meeting"]["ready"], "meeting", "{result}");
    assert_eq!(
        result["meeting"]["address_has_token"], false,
        "the key leaves the address bar"
    );
    assert_eq!(result["meeting"]["player"], "ready", "{result}");
    // The byte-range playlist plays in hls.js as well.
    let byte_range = &result["byte_range"];
    assert!(
        byte_range["src"]
            .as_str()
            .is_some_and(|s| s.ends_with("/playlist.m3u8?via=api"))
            && byte_range["current_time"].as_f64().unwrap_or(0.0) >= 1.5,
        "{result}"
    );
    // The segmented live-HLS playlist (VOD once the meeting ended), served through the API.
    assert!(
        result["meeting"]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("/live.m3u8?via=api")),
        "{result}"
    );
    assert_eq!(result["meeting"]["lines"], segments.len(), "{result}");
    let (t0, t1) = (
        result["playback"]["t0"].as_f64().unwrap(),
        result["playback"]["t1"].as_f64().unwrap(),
    );
    assert!(t1 > t0 + 0.5, "the video plays: currentTime {t0} then {t1}");
    for how in ["click", "enter"] {
        let seek = &result["seek"][how];
        let (at, want) = (seek["at"].as_f64().unwrap(), seek["want"].as_f64().unwrap());
        assert!(
            at >= want - 0.5 && at <= want + 3.0,
            "{how} on a line seeks there: currentTime {at}, line at {want}"
        );
        assert_eq!(seek["current"], true, "{how}: the line is marked current");
    }
    let hits = result["search"]["hits"].as_array().unwrap();
    assert!(
        hits.iter().any(
            |h| h["text"].as_str().unwrap().to_lowercase().contains(phrase)
                && h["href"].as_str().unwrap().contains(&meeting.id)
        ),
        "search finds the phrase in this meeting: {hits:?}"
    );
    assert!(
        hits.iter()
            .all(|h| !h["href"].as_str().unwrap().contains(&other.id)),
        "search does not show the other room: {hits:?}"
    );
    assert_eq!(result["other"]["status"], "404", "{result}");
    assert!(
        result["other"]["text"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{result}"
    );
    assert_eq!(result["participant"]["own"]["ready"], "meeting", "{result}");
    assert!(
        result["participant"]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("/live.m3u8?via=api"))
            && result["participant"]["played_s"].as_f64().unwrap_or(0.0) > 0.2,
        "a participant's player plays the live-HLS segments: {result}"
    );
    assert_eq!(result["participant"]["other_meeting"]["status"], "404");
    assert_eq!(result["participant"]["other_token"]["status"], "404");
    assert_eq!(
        result["participant"]["delete_buttons"], 0,
        "a participant is offered no delete"
    );
    assert!(
        result["participant"]["who"]
            .as_str()
            .unwrap()
            .contains("read-only")
    );
    // Recordings management: the operator deletes the recording after a confirmation.
    assert_eq!(result["recordings"]["before"], 1, "{result}");
    assert!(
        result["recordings"]["retention"]
            .as_str()
            .unwrap()
            .contains("30 days"),
        "{result}"
    );
    assert!(
        result["delete_dialog"]
            .as_str()
            .unwrap()
            .contains(&recording.id),
        "{result}"
    );
    assert_eq!(result["recordings"]["after"], 0, "{result}");
    assert!(
        store.recording(&recording.id).await.unwrap().is_none(),
        "deleted from the store"
    );
    let _ = worker.shutdown.send(meeting_agent::worker::Shutdown::Drain);
    let _ = std::fs::remove_dir_all(&dir);
}
