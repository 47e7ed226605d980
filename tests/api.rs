//! The control API over HTTP: refused without a key and outside the key's rooms, transcripts and
//! search for the rooms a key may use, participant tokens that work on a real livekit-server and
//! carry only the granted rights, a rate limit on tokens, and LiveKit webhooks that must verify.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, TokenVerifier};
use meeting_agent::api::{ApiState, router};
use meeting_agent::config::{ApiKey, Config};
use meeting_agent::devtools::LocalLiveKitServer;
use meeting_agent::livekit::{ConnectOptions, Engine, Room, library::default_library_path};
use meeting_agent::store::{Meeting, Segment, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const WEEKLY_KEY: &str = "weekly-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdefgh";

struct Api {
    url: String,
    client: reqwest::Client,
    store: Store,
    weekly: Meeting,
    board: Meeting,
}

async fn seeded_store(dir: &std::path::Path) -> (Store, Meeting, Meeting) {
    let store = Store::connect(&format!("sqlite:{}", dir.join("api.db").display()))
        .await
        .unwrap();
    let mut meetings = Vec::new();
    for (room, text) in [
        ("weekly", "Send the budget by Friday."),
        ("board", "The budget is confidential."),
    ] {
        let meeting = Meeting::new(room, 1_795_564_800_000);
        let root = meeting.root_message("meeting-agent", format!("Meeting in {room}"));
        store.open_meeting(&meeting, &root).await.unwrap();
        let segment = Segment {
            key: "SG_1".into(),
            speaker: "sam".into(),
            text: text.into(),
            start_ms: 2_000,
            end_ms: 4_000,
        };
        store.add_segments(&meeting, &[segment]).await.unwrap();
        meetings.push(meeting);
    }
    let board = meetings.pop().unwrap();
    (store, meetings.pop().unwrap(), board)
}

async fn start(server: Option<&LocalLiveKitServer>, rate: u32) -> Api {
    let dir = std::env::temp_dir().join(format!("api-test-{}-{rate}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let (store, weekly, board) = seeded_store(&dir).await;
    let mut config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.livekit.url = server.map_or(String::new(), |s| s.ws_url());
    config.livekit.api_key = server.map_or("devkey".into(), |s| s.api_key.clone());
    config.livekit.api_secret = server.map_or("a-secret-of-at-least-32-characters!!".into(), |s| {
        s.api_secret.clone()
    });
    config.api.keys = vec![
        ApiKey {
            key: WEEKLY_KEY.into(),
            rooms: vec!["weekly".into()],
        },
        ApiKey {
            key: ADMIN_KEY.into(),
            rooms: vec!["*".into()],
        },
    ];
    config.api.token_rate_per_minute = rate;
    config.api.token_max_ttl_secs = 900;
    let state = ApiState::new(&config, Some(store.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Api {
        url,
        client: reqwest::Client::new(),
        store,
        weekly,
        board,
    }
}

impl Api {
    async fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn calls_need_a_key_and_stay_in_its_rooms() {
    let api = start(None, 30).await;
    assert_eq!(api.get("/healthz", None).await.0, 200);
    assert_eq!(api.get("/readyz", None).await.0, 200);
    for path in [
        "/v1/meetings",
        "/v1/search?q=budget&room=weekly",
        "/metrics",
    ] {
        assert_eq!(api.get(path, None).await.0, 401, "{path} without a key");
        assert_eq!(
            api.get(path, Some("not-a-key")).await.0,
            401,
            "{path} with a wrong key"
        );
    }
    // The weekly key sees weekly only.
    let (status, body) = api.get("/v1/meetings", Some(WEEKLY_KEY)).await;
    assert_eq!(status, 200);
    let meetings: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(meetings.len(), 1);
    assert_eq!(meetings[0]["room"], "weekly");
    assert_eq!(
        api.get("/v1/meetings?room=board", Some(WEEKLY_KEY)).await.0,
        403
    );
    assert_eq!(
        api.get("/v1/search?q=budget&room=board", Some(WEEKLY_KEY))
            .await
            .0,
        403
    );
    assert_eq!(
        api.get("/v1/search?q=budget", Some(WEEKLY_KEY)).await.0,
        403,
        "a room-scoped key must name its room"
    );
    let (status, body) = api
        .get("/v1/search?q=budget&room=weekly", Some(WEEKLY_KEY))
        .await;
    assert_eq!(status, 200);
    let hits: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0]["speaker"].as_str(), hits[0]["offset_ms"].as_i64()),
        (Some("sam"), Some(2_000))
    );
    let (_, body) = api.get("/v1/search?q=budget", Some(ADMIN_KEY)).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 2);
    assert_eq!(
        api.get(
            "/v1/search?q=budget&room=weekly&since=soon",
            Some(ADMIN_KEY)
        )
        .await
        .0,
        400
    );
    // Transcripts, by the meeting's room.
    let weekly = format!("/v1/meetings/{}/transcript?format=srt", api.weekly.id);
    let (status, body) = api.get(&weekly, Some(WEEKLY_KEY)).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("1\n00:00:02,000 --> 00:00:04,000\nsam: Send the budget by Friday."),
        "{body}"
    );
    assert_eq!(
        api.get(
            &format!("/v1/meetings/{}/transcript", api.board.id),
            Some(WEEKLY_KEY)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.get("/v1/meetings/nope/transcript", Some(ADMIN_KEY))
            .await
            .0,
        404
    );
    let (status, body) = api.get(&format!("{weekly}x"), Some(WEEKLY_KEY)).await;
    assert_eq!(status, 400, "an unknown format: {body}");
    assert!(body.contains("vtt, srt, json or txt"), "{body}");
    let (status, metrics) = api.get("/metrics", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE meeting_agent_vb_frames_total counter"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_join_the_real_server_with_only_their_grants() {
    let server = LocalLiveKitServer::start().await.unwrap();
    Engine::start(&default_library_path()).unwrap();
    let api = start(Some(&server), 3).await;
    let (status, _) = api
        .post(
            "/v1/tokens",
            None,
            json!({"room": "weekly", "identity": "web-ann"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .post(
            "/v1/tokens",
            Some(WEEKLY_KEY),
            json!({"room": "board", "identity": "web-ann"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = api
        .post("/v1/tokens", Some(WEEKLY_KEY), json!({"room": "weekly", "identity": "web-ann", "can_publish": false, "ttl_secs": 86_400}))
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["expires_in"], 900, "capped at the configured maximum");
    let claims = TokenVerifier::with_api_key(&server.api_key, &server.api_secret)
        .verify(token)
        .unwrap();
    assert_eq!(claims.sub, "web-ann");
    assert_eq!(claims.video.room, "weekly");
    assert!(claims.video.room_join);
    assert_eq!(claims.video.can_publish, Some(false));
    assert!(
        !claims.video.room_admin
            && !claims.video.room_create
            && !claims.video.room_list
            && !claims.video.agent
    );
    assert!(
        claims.exp as u64
            <= std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 901
    );
    // It works on the server, for its room.
    let (room, _events) = Room::connect(&server.ws_url(), token, ConnectOptions::default())
        .await
        .expect("the token joins");
    assert_eq!(room.name, "weekly");
    room.disconnect().await.unwrap();
    // Rate limited: 3 a minute here.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            api.post(
                "/v1/tokens",
                Some(WEEKLY_KEY),
                json!({"room": "weekly", "identity": "x"}),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, vec![200, 200, 429]);
}

fn signed(body: &str, key: &str, secret: &str) -> String {
    use base64::Engine as _;
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key(key, secret)
        .with_sha256(&digest)
        .to_jwt()
        .unwrap()
}

#[tokio::test]
async fn webhooks_must_verify_and_room_finished_closes_the_meeting() {
    let api = start(None, 30).await;
    let body = json!({"event": "room_finished", "room": {"name": "weekly", "sid": "RM_x"}, "id": "EV_1", "createdAt": "1795564900"}).to_string();
    let send = |auth: Option<String>, body: String| {
        let mut req = api
            .client
            .post(format!("{}/v1/livekit/webhook", api.url))
            .header("Content-Type", "application/webhook+json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    let secret = "a-secret-of-at-least-32-characters!!";
    assert_eq!(
        send(None, body.clone()).await.unwrap().status().as_u16(),
        401,
        "unsigned"
    );
    let forged = signed(&body, "devkey", "some-other-secret-of-32-characters!!");
    assert_eq!(
        send(Some(forged), body.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        401,
        "wrong secret"
    );
    let tampered = body.replace("weekly", "board");
    assert_eq!(
        send(Some(signed(&body, "devkey", secret)), tampered)
            .await
            .unwrap()
            .status()
            .as_u16(),
        401,
        "body changed"
    );
    assert!(
        api.store.meetings(Some("weekly")).await.unwrap()[0]
            .ended_at_ms
            .is_none()
    );
    assert_eq!(
        send(Some(signed(&body, "devkey", secret)), body.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(
        api.store.meetings(Some("weekly")).await.unwrap()[0]
            .ended_at_ms
            .is_some(),
        "room_finished ends the meeting"
    );
    assert!(
        api.store.meetings(Some("board")).await.unwrap()[0]
            .ended_at_ms
            .is_none(),
        "other rooms untouched"
    );
}

/// Room and participant settings land where the agent reads them (room metadata, participant
/// attributes); background images are checked and stored; other rooms' keys are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_reach_the_room_and_its_participants() {
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = start(Some(&server), 30).await;
    let mut bob = meeting_agent::devtools::PythonParticipant::spawn(
        &server,
        "weekly",
        "bob",
        &["--video", "none"],
    )
    .unwrap();
    bob.wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
        .await
        .unwrap();
    let put = |path: &str, key: &str, body: Value| {
        api.client
            .put(format!("{}{path}", api.url))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let room_settings = "/v1/rooms/weekly/settings";
    let r = put(
        room_settings,
        WEEKLY_KEY,
        json!({"captions.enabled": false, "ns.enabled": true, "captions.language": "es"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let rooms = server
        .room_service("ListRooms", &json!({"names": ["weekly"]}))
        .await
        .unwrap();
    let metadata: Value =
        serde_json::from_str(rooms["rooms"][0]["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(
        metadata,
        json!({"captions.enabled": false, "ns.enabled": true, "captions.language": "es"})
    );
    assert_eq!(
        put(
            "/v1/rooms/board/settings",
            WEEKLY_KEY,
            json!({"captions.enabled": true})
        )
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(
        put(room_settings, WEEKLY_KEY, json!({"rm -rf": true}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        put(
            room_settings,
            WEEKLY_KEY,
            json!({"captions.enabled": "maybe"})
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        put(
            room_settings,
            WEEKLY_KEY,
            json!({"captions.language": "klingon"})
        )
        .await
        .unwrap()
        .status(),
        400,
        "a language whisper does not know is refused"
    );

    let r = put(
        "/v1/rooms/weekly/participants/bob/settings",
        WEEKLY_KEY,
        json!({"vb.mode": "blur", "vb.blur": 7, "ns.clean_track": true, "captions.language": "de"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let p = server
        .room_service(
            "GetParticipant",
            &json!({"room": "weekly", "identity": "bob"}),
        )
        .await
        .unwrap();
    assert_eq!(p["attributes"]["vb.mode"], "blur");
    assert_eq!(p["attributes"]["vb.blur"], "7");
    assert_eq!(p["attributes"]["ns.clean_track"], "true");
    assert_eq!(p["attributes"]["captions.language"], "de");
    assert_eq!(
        put(
            "/v1/rooms/weekly/participants/bob/settings",
            WEEKLY_KEY,
            json!({"vb.mode": "sparkles"})
        )
        .await
        .unwrap()
        .status(),
        400
    );

    // Background upload: a real PNG is stored and usable as vb.image; junk and oversize refused.
    let png = std::fs::read(
        meeting_agent::devtools::fixtures::dir()
            .unwrap()
            .join("astronaut.png"),
    )
    .unwrap();
    let upload = |key: &str, body: Vec<u8>| {
        api.client
            .post(format!("{}/v1/rooms/weekly/backgrounds", api.url))
            .bearer_auth(key)
            .body(body)
            .send()
    };
    let r = upload(WEEKLY_KEY, png.clone()).await.unwrap();
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.unwrap();
    let path = stored["image"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), png);
    assert!(meeting_agent::video::background::load(path).await.is_ok());
    assert_eq!(
        upload(WEEKLY_KEY, b"not an image".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        upload(
            WEEKLY_KEY,
            vec![0u8; meeting_agent::video::background::MAX_BYTES + 1]
        )
        .await
        .unwrap()
        .status(),
        413
    );
    let other = api
        .client
        .post(format!("{}/v1/rooms/board/backgrounds", api.url))
        .bearer_auth(WEEKLY_KEY)
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    bob.stop().await;
}
