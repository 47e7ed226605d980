//! Call quality end to end: a real meeting on a real livekit-server where alice's camera
//! stutters for five seconds (the publisher sends 300 ms bursts after 700 ms gaps); the agent's
//! samples show the freezes and the frame-rate drop inside that window and not before, the
//! meeting's summary names them, and the control API serves samples, engagement and usage
//! within the key's rooms. The store's queries on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use meeting_agent::api::{ApiState, router};
use meeting_agent::config::{ApiKey, CallQualityConfig, Config};
use meeting_agent::features::FeatureSet;
use meeting_agent::features::meeting_log::MeetingLogOptions;
use meeting_agent::session::SessionReport;
use meeting_agent::store::{Engagement, Meeting, QualitySample, Store};
use meeting_agent_devtools::{LocalLiveKitServer, LocalPostgres, PythonParticipant};
use serde_json::{Value, json};

const ROOM: &str = "quality-room";
const T: Duration = Duration::from_secs(30);
const ROOM_KEY: &str = "quality-room-key-0123456789abcdef";
const OTHER_KEY: &str = "other-room-key-0123456789abcdefgh";
const ADMIN_KEY: &str = "quality-admin-key-0123456789abcdef";

fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Unix ms of a publisher event's `t` (seconds).
fn at_ms(event: &Value) -> i64 {
    (event["t"].as_f64().unwrap() * 1000.0) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuttering_camera_shows_in_the_samples_at_its_time() {
    crate::common::init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let dir = test_dir("call-quality-e2e");
    let store = Store::connect(&format!("sqlite:{}", dir.join("q.db").display()))
        .await
        .unwrap();
    let options = MeetingLogOptions {
        bot_user: "meeting-agent".into(),
        flush_timeout: Duration::from_secs(10),
        llm: None,
        events: None,
        email: Default::default(),
    };
    let config = CallQualityConfig {
        interval_secs: 1,
        ..Default::default()
    };
    let session = FeatureSet::default()
        .with_store(store.clone(), options)
        .with_call_quality(config.clone())
        .session();
    let mut agent = crate::common::start_worker_with(
        crate::common::config_for(&server, ""),
        Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    let mut alice = PythonParticipant::spawn(
        &server,
        ROOM,
        "alice",
        &[
            "--tone-hz",
            "440",
            "--video",
            "320x180",
            "--fps",
            "20",
            "--wait-for-agent",
            "20",
            "--stutter",
            "8,5",
        ],
    )
    .unwrap();
    let started = alice
        .wait_for(T, |e| e["event"] == "stutter_started")
        .await
        .expect("alice's camera starts stuttering");
    let ended = alice
        .wait_for(T, |e| e["event"] == "stutter_ended")
        .await
        .expect("alice's camera runs smoothly again");
    let (stutter_from, stutter_to) = (at_ms(&started), at_ms(&ended));
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.stop().await;
    server
        .room_service("DeleteRoom", &json!({"room": ROOM}))
        .await
        .unwrap();
    crate::common::wait_for(
        &mut agent.reports,
        T,
        |r| matches!(r, SessionReport::Left { room, .. } if room == ROOM),
    )
    .await
    .expect("the agent leaves the deleted room");
    let meeting = {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let ended = store
                .meetings(Some(ROOM))
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.ended_at_ms.is_some());
            if let Some(m) = ended {
                break m;
            }
            assert!(tokio::time::Instant::now() < deadline, "meeting not ended");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let samples = store.quality_samples(&meeting.id).await.unwrap();
    let video: Vec<&QualitySample> = samples
        .iter()
        .filter(|s| s.participant == "alice" && s.kind == "video")
        .collect();
    let audio = samples
        .iter()
        .filter(|s| s.participant == "alice" && s.kind == "audio")
        .count();
    let table: String = video
        .iter()
        .map(|s| {
            format!(
                "\n{:+6} ms fps {:5.1} freezes {} ({} ms) {}x{} {:.0} kbit/s",
                s.at_ms - stutter_from,
                s.fps(),
                s.freezes,
                s.freeze_ms,
                s.width,
                s.height,
                s.bitrate_bps() / 1000.0
            )
        })
        .collect();
    eprintln!("alice's video samples, ms after the stutter began:{table}");
    assert!(video.len() >= 12 && audio >= 12, "{table}");
    assert!(
        video
            .iter()
            .all(|s| s.width == 320 && s.height == 180 || s.frames == 0),
        "{table}"
    );
    // Before the stutter (past the first seconds of a new stream): smooth, no freeze.
    let before: Vec<_> = video
        .iter()
        .filter(|s| s.at_ms < stutter_from && s.at_ms - s.interval_ms > stutter_from - 6_000)
        .collect();
    assert!(before.len() >= 3, "{table}");
    assert!(
        before.iter().all(|s| s.freezes == 0 && s.fps() > 14.0),
        "{table}"
    );
    // During it (intervals ending inside it, or at most one interval and a second after):
    // freezes, and the frame rate well below 20 fps.
    let during: Vec<_> = video
        .iter()
        .filter(|s| s.at_ms - s.interval_ms >= stutter_from && s.at_ms <= stutter_to + 1_000)
        .collect();
    assert!(during.len() >= 3, "{table}");
    let freezes: i64 = during.iter().map(|s| s.freezes).sum();
    assert!(freezes >= 3, "{freezes} freezes in the stutter: {table}");
    assert!(during.iter().all(|s| s.fps() < 12.0), "{table}");
    // No freeze counted outside it (one interval's slack for the last gap's frame).
    let outside: i64 = video
        .iter()
        .filter(|s| s.at_ms < stutter_from || s.at_ms - s.interval_ms > stutter_to + 1_000)
        .map(|s| s.freezes)
        .sum();
    assert_eq!(outside, 0, "{table}");

    let thread = store.thread(&meeting.id).await.unwrap();
    let summary: String = thread
        .iter()
        .filter(|m| m.kind == "summary")
        .map(|m| m.text.as_str())
        .collect();
    assert!(
        summary.contains("\nCall quality\n- alice's video froze "),
        "{summary}\n{table}"
    );
    let engagement = store.engagement(&meeting.id).await.unwrap();
    let alice_e = engagement
        .iter()
        .find(|e| e.participant == "alice")
        .expect("alice's engagement");
    assert_eq!((alice_e.joins, alice_e.leaves), (1, 1), "{alice_e:?}");
    assert!(alice_e.camera_ms > 10_000, "{alice_e:?}");
    assert!(alice_e.bytes_received > 0, "{alice_e:?}");

    // The same figures through the API, in the key's rooms only.
    let api = serve_api(&store, &dir).await;
    let (status, report) = api
        .get(&format!("/v1/meetings/{}/quality", meeting.id), ROOM_KEY)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["samples"].as_array().unwrap().len(), samples.len());
    assert!(
        report["moments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["participant"] == "alice" && m["freezes"].as_i64().unwrap() >= 3)
    );
    let (status, answer) = api
        .get(&format!("/v1/meetings/{}/engagement", meeting.id), ROOM_KEY)
        .await;
    assert_eq!(
        (status, answer.as_array().map(Vec::len)),
        (200, Some(engagement.len()))
    );
    let usage = format!(
        "/v1/analytics/usage?room={ROOM}&from={}&to={}",
        meeting.started_at_ms - 1_000,
        meeting.started_at_ms + 3_600_000
    );
    let (status, usage_answer) = api.get(&usage, ROOM_KEY).await;
    assert_eq!(status, 200, "{usage_answer}");
    assert_eq!(usage_answer["meetings"], 1);
    assert!(usage_answer["bytes_received"].as_i64().unwrap() > 0);
    for path in [
        format!("/v1/meetings/{}/quality", meeting.id),
        format!("/v1/meetings/{}/engagement", meeting.id),
    ] {
        assert_eq!(api.get(&path, OTHER_KEY).await.0, 404, "{path}");
    }
    assert_eq!(api.get(&usage, OTHER_KEY).await.0, 403);
    let _ = agent
        .shutdown
        .send(meeting_agent::worker::Shutdown::Terminate);
    std::fs::remove_dir_all(&dir).ok();
}

struct Api {
    url: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

async fn serve_api(store: &Store, dir: &std::path::Path) -> Api {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.livekit.api_key = "devkey".into();
    config.livekit.api_secret = "a-secret-of-at-least-32-characters!!".into();
    config.api.keys = [
        (ROOM_KEY, ROOM),
        (OTHER_KEY, "other-room"),
        (ADMIN_KEY, "*"),
    ]
    .into_iter()
    .map(|(key, room)| ApiKey {
        key: key.into(),
        rooms: vec![room.into()],
        participant_attributes: false,
    })
    .collect();
    let state = ApiState::new(&config, Some(store.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Api {
        url,
        client: reqwest::Client::new(),
    }
}

fn sample(participant: &str, seq: i64, at_ms: i64, freezes: i64) -> QualitySample {
    QualitySample {
        participant: participant.into(),
        track_sid: format!("TR_{participant}"),
        kind: "video".into(),
        source: "camera".into(),
        seq,
        at_ms,
        interval_ms: 5_000,
        bytes: 250_000,
        packets: 300,
        packets_lost: 0,
        jitter_us: 1_500,
        frames: 150,
        width: 640,
        height: 360,
        freezes,
        freeze_ms: freezes * 400,
        quality: "good".into(),
    }
}

/// What the store keeps and answers, the same on both databases; then the API's scoping over
/// it (usage of other rooms, bad ranges).
async fn exercise(store: &Store) {
    let start = 1_795_424_400_000; // Monday 2026-11-23 09:00 UTC
    let weekly = Meeting::new("weekly", start);
    let board = Meeting::new("board", start + 3_600_000);
    for m in [&weekly, &board] {
        let root = m.root_message("meeting-agent", format!("Meeting in {}", m.room));
        store.open_meeting(m, &root).await.unwrap();
    }
    store
        .end_meeting(&weekly.id, start + 30 * 60_000)
        .await
        .unwrap();
    store
        .end_meeting(&board.id, start + 3_600_000 + 10 * 60_000)
        .await
        .unwrap();
    let samples: Vec<_> = (0..4)
        .map(|i| sample("ann", i, start + (i + 1) * 5_000, i64::from(i == 2) * 3))
        .collect();
    store
        .add_quality_samples(&weekly.id, "weekly", &samples)
        .await
        .unwrap();
    store
        .add_quality_samples(&weekly.id, "weekly", &samples)
        .await
        .unwrap();
    store
        .add_quality_samples(
            &board.id,
            "board",
            &[sample("bob", 0, start + 3_605_000, 0)],
        )
        .await
        .unwrap();
    assert_eq!(
        store.quality_samples(&weekly.id).await.unwrap(),
        samples,
        "stored once, read back as written"
    );
    let mut ann = Engagement {
        participant: "ann".into(),
        speaking_ms: 60_000,
        camera_ms: 1_200_000,
        screen_ms: 0,
        joins: 2,
        leaves: 1,
        first_seen_ms: start,
        last_seen_ms: start + 1_800_000,
        bytes_received: 1_000_000,
    };
    store
        .save_engagement(&weekly.id, "weekly", &[ann.clone()])
        .await
        .unwrap();
    ann.leaves = 2;
    store
        .save_engagement(&weekly.id, "weekly", &[ann.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.engagement(&weekly.id).await.unwrap(),
        vec![ann.clone()],
        "replaced"
    );
    store
        .save_engagement(
            &board.id,
            "board",
            &[Engagement {
                participant: "bob".into(),
                speaking_ms: 1_000,
                ..Default::default()
            }],
        )
        .await
        .unwrap();

    let all = store.usage(start, start + 86_400_000, None).await.unwrap();
    assert_eq!((all.meetings, all.open_meetings), (2, 0));
    assert_eq!(all.total_minutes, 40.0);
    assert_eq!(all.median_duration_secs, 1200.0);
    assert_eq!((all.peak_hour, all.peak_weekday), (Some(9), Some(0)));
    assert_eq!(all.bytes_received, 5 * 250_000);
    assert_eq!(all.participants[0].participant, "ann");
    assert_eq!(all.participants[0].leaves, 2);
    let weekly_only = store
        .usage(start, start + 86_400_000, Some("weekly"))
        .await
        .unwrap();
    assert_eq!(
        (weekly_only.meetings, weekly_only.participants.len()),
        (1, 1)
    );
    assert_eq!(weekly_only.bytes_received, 4 * 250_000);
    let none = store
        .usage(start + 86_400_000, start + 2 * 86_400_000, None)
        .await
        .unwrap();
    assert_eq!(none.meetings, 0);
}

#[tokio::test]
async fn quality_and_usage_are_stored_and_served_in_the_keys_rooms_on_sqlite() {
    let dir = test_dir("call-quality-store");
    let store = Store::connect(&format!("sqlite:{}", dir.join("q.db").display()))
        .await
        .unwrap();
    exercise(&store).await;
    let api = serve_api(&store, &dir).await;
    let meetings = store.meetings(Some("board")).await.unwrap();
    let board = format!("/v1/meetings/{}/quality", meetings[0].id);
    let (status, report) = api.get(&board, ADMIN_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(report["summary"], "", "nothing notable in board");
    assert_eq!(
        api.get(&board, ROOM_KEY).await.0,
        404,
        "another room's meeting"
    );
    let weekly = store.meetings(Some("weekly")).await.unwrap();
    let (_, report) = api
        .get(&format!("/v1/meetings/{}/quality", weekly[0].id), ADMIN_KEY)
        .await;
    assert!(
        report["summary"]
            .as_str()
            .unwrap()
            .contains("ann's video froze 3 times (1.2 s in all) between 09:00 and 09:00 UTC")
            || report["summary"]
                .as_str()
                .unwrap()
                .contains("ann's video froze 3 times (1.2 s in all) at 09:00 UTC"),
        "{report}"
    );
    let range = "from=1795424400000&to=1795510800000";
    assert_eq!(
        api.get(&format!("/v1/analytics/usage?{range}"), ROOM_KEY)
            .await
            .0,
        403,
        "must name its room"
    );
    assert_eq!(
        api.get(
            &format!("/v1/analytics/usage?{range}&room=weekly"),
            ROOM_KEY
        )
        .await
        .0,
        403
    );
    let (status, usage) = api
        .get(&format!("/v1/analytics/usage?{range}"), ADMIN_KEY)
        .await;
    assert_eq!(
        (status, usage["meetings"].as_i64()),
        (200, Some(2)),
        "{usage}"
    );
    assert_eq!(
        api.get("/v1/analytics/usage?from=10&to=5", ADMIN_KEY)
            .await
            .0,
        400
    );
    assert_eq!(
        api.get("/v1/analytics/usage?from=0&to=99999999999999", ADMIN_KEY)
            .await
            .0,
        400,
        "over a year"
    );
    assert_eq!(
        api.get(&format!("/v1/analytics/usage?{range}"), "nope")
            .await
            .0,
        401
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn quality_and_usage_on_postgresql() {
    let pg = LocalPostgres::start().unwrap();
    exercise(&Store::connect(&pg.url()).await.unwrap()).await;
}
