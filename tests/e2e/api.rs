//! The control API over HTTP: refused without a key and outside the key's rooms, transcripts and
//! search for the rooms a key may use, participant tokens that work on a real livekit-server and
//! carry only the granted rights, a rate limit on tokens, and LiveKit webhooks that must verify.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, TokenVerifier};
use meeting_agent::api::{ApiState, router};
use meeting_agent::config::{ApiKey, Config};
use meeting_agent::livekit::{ConnectOptions, Engine, Room};
use meeting_agent::store::{Meeting, Segment, Store};
use meeting_agent::video::background_source::SourcePolicy;
use meeting_agent_devtools::LocalLiveKitServer;
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
    config: Config,
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
    start_with(server, rate, |_| {}).await
}

/// A test's own folder (tests run at once in one process).
fn test_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("api-test-{}-{n}", std::process::id()))
}

async fn start_with(
    server: Option<&LocalLiveKitServer>,
    rate: u32,
    tweak: impl FnOnce(&mut Config),
) -> Api {
    let dir = test_dir();
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
            participant_attributes: false,
        },
        ApiKey {
            key: ADMIN_KEY.into(),
            rooms: vec!["*".into()],
            participant_attributes: true,
        },
    ];
    config.api.token_rate_per_minute = rate;
    config.api.token_max_ttl_secs = 900;
    tweak(&mut config);
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
        config,
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
        .await,
        api.get("/v1/meetings/nope/transcript", Some(WEEKLY_KEY))
            .await,
        "another room's meeting is answered like one that does not exist"
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
    assert_eq!(
        api.get("/metrics", Some(WEEKLY_KEY)).await.0,
        403,
        "metrics are process-wide: keys of every room only"
    );
    // Dates that overflowed before are refused, not wrapped.
    assert_eq!(
        api.get(
            "/v1/search?q=budget&since=9223372036854775807-12-31",
            Some(ADMIN_KEY)
        )
        .await
        .0,
        400
    );
    let (status, metrics) = api.get("/metrics", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE meeting_agent_vb_frames_total counter"),
        "{metrics}"
    );
}

/// The media job queue through the API: keys for every room only, hostile ids and sources
/// refused before anything is queued, enqueue idempotent, status and re-run of what exists.
#[tokio::test]
async fn media_jobs_need_an_operator_key_and_a_source_inside_the_media_folder() {
    let api = start(None, 30).await;
    let job = json!({"message_id": "msg-1", "source": "file:2026/msg-1.webm"});
    assert_eq!(api.post("/v1/media-jobs", None, job.clone()).await.0, 401);
    assert_eq!(
        api.post("/v1/media-jobs", Some(WEEKLY_KEY), job.clone())
            .await
            .0,
        403,
        "a room's key does not reach the platform's messages"
    );
    assert_eq!(api.get("/v1/media-jobs", Some(WEEKLY_KEY)).await.0, 403);
    let long_id = "m".repeat(201);
    for (id, source) in [
        ("msg-2", "file:../../etc/passwd"),
        ("msg-2", "file:/etc/passwd"),
        ("msg-2", "file:"),
        ("msg-2", "http://169.254.169.254/latest"),
        ("msg-2", "s3:"),
        ("", "file:a.ogg"),
        (long_id.as_str(), "file:a.ogg"),
        ("msg\n2", "file:a.ogg"),
    ] {
        let (status, body) = api
            .post(
                "/v1/media-jobs",
                Some(ADMIN_KEY),
                json!({"message_id": id, "source": source}),
            )
            .await;
        assert_eq!(status, 400, "{id:?} {source:?}: {body}");
    }
    assert!(
        api.store.media_jobs(None).await.unwrap().is_empty(),
        "nothing queued"
    );
    let (status, body) = api
        .post("/v1/media-jobs", Some(ADMIN_KEY), job.clone())
        .await;
    assert_eq!(
        (status, body["queued"].as_bool()),
        (202, Some(true)),
        "{body}"
    );
    let (status, body) = api.post("/v1/media-jobs", Some(ADMIN_KEY), job).await;
    assert_eq!(
        (status, body["queued"].as_bool()),
        (202, Some(false)),
        "{body}"
    );
    let (status, body) = api.get("/v1/media-jobs/msg-1", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (listed["status"].as_str(), listed["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    assert_eq!(api.get("/v1/media-jobs/nope", Some(ADMIN_KEY)).await.0, 404);
    assert_eq!(
        api.get("/v1/media-jobs?status=weird", Some(ADMIN_KEY))
            .await
            .0,
        400
    );
    let (_, body) = api
        .get("/v1/media-jobs?status=queued", Some(ADMIN_KEY))
        .await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 1);
    assert_eq!(
        api.post("/v1/media-jobs/nope/rerun", Some(ADMIN_KEY), json!(null))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post("/v1/media-jobs/msg-1/rerun", Some(ADMIN_KEY), json!(null))
            .await
            .0,
        202
    );
}

/// Compliance exports and retention through the API stay in the key's rooms: another room's
/// meeting is answered like one that does not exist, conversations and retention need a key for
/// every room, and every export is in the audit log.
#[tokio::test]
async fn compliance_exports_stay_in_the_keys_rooms() {
    let api = start(None, 30).await;
    let weekly = format!("/v1/meetings/{}/archive", api.weekly.id);
    let board = format!("/v1/meetings/{}/archive", api.board.id);
    assert_eq!(api.get(&weekly, None).await.0, 401);
    let (status, body) = api.get(&weekly, Some(WEEKLY_KEY)).await;
    assert_eq!(status, 200);
    assert!(body.contains("transcript.vtt") && body.contains("Send the budget by Friday."));
    assert!(!body.contains("confidential"), "only its own meeting");
    assert_eq!(
        api.get(&board, Some(WEEKLY_KEY)).await,
        api.get("/v1/meetings/nope/archive", Some(WEEKLY_KEY)).await,
        "another room's meeting is answered like one that does not exist"
    );
    assert_eq!(api.get(&board, Some(ADMIN_KEY)).await.0, 200);
    let conversation = format!("/v1/conversations/{}/archive", api.weekly.id);
    assert_eq!(api.get(&conversation, Some(WEEKLY_KEY)).await.0, 403);
    assert_eq!(api.get(&conversation, Some(ADMIN_KEY)).await.0, 200);
    assert_eq!(
        api.get("/v1/conversations/nope/archive", Some(ADMIN_KEY))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post("/v1/retention/run", Some(WEEKLY_KEY), json!({}))
            .await
            .0,
        403
    );
    let (status, report) = api
        .post("/v1/retention/run", Some(ADMIN_KEY), json!({}))
        .await;
    assert_eq!(
        (status, report["dry_run"].as_bool()),
        (200, Some(true)),
        "{report}"
    );
    let exports: Vec<_> = api
        .store
        .audit("weekly", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "export-archive")
        .collect();
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert!(exports[0].actor.starts_with("key:"), "{exports:?}");
    assert_eq!(exports[0].target.as_deref(), Some(api.weekly.id.as_str()));
}

/// The OpenAPI description is served without a key, and real answers have the fields it
/// requires.
#[tokio::test]
async fn the_openapi_description_is_served_without_a_key() {
    let api = start(None, 30).await;
    let res = api
        .client
        .get(format!("{}/v1/openapi.json", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/tokens"]["post"].is_object());
    assert!(doc["paths"]["/v1/rooms/{room}/breakouts"]["delete"].is_object());
    let required = |name: &str| -> Vec<String> {
        doc["components"]["schemas"][name]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = api.get("/v1/meetings", Some(WEEKLY_KEY)).await;
    assert_eq!(status, 200);
    let meetings: Vec<Value> = serde_json::from_str(&body).unwrap();
    for field in required("Meeting") {
        assert!(meetings[0].get(&field).is_some(), "meeting without {field}");
    }
    let (status, body) = api.get("/v1/meetings", None).await;
    assert_eq!(status, 401);
    let refusal: Value = serde_json::from_str(&body).unwrap();
    for field in required("ErrorBody") {
        assert!(refusal[&field].is_string(), "refusal without {field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_join_the_real_server_with_only_their_grants() {
    let server = LocalLiveKitServer::start().await.unwrap();
    Engine::start(&meeting_agent::paths::engine_library()).unwrap();
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
    // Identities: never the agent's (agent-<job>), well-formed, bounded; names bounded; no
    // rights the request may not ask for. None of these count against the rate.
    for (request, expected) in [
        (json!({"room": "weekly", "identity": "agent-AJ_kick"}), 400),
        (json!({"room": "weekly", "identity": "Agent-AJ_kick"}), 400),
        (json!({"room": "weekly", "identity": "ann smith"}), 400),
        (json!({"room": "weekly", "identity": "ann\u{1}"}), 400),
        (json!({"room": "weekly", "identity": "a".repeat(129)}), 400),
        (
            json!({"room": "weekly", "identity": "ann", "name": "n".repeat(129)}),
            400,
        ),
        (
            json!({"room": "weekly", "identity": "ann", "room_admin": true}),
            422,
        ),
        (
            json!({"room": "weekly", "identity": "ann", "can_update_own_metadata": true}),
            403,
        ),
    ] {
        let (status, body) = api
            .post("/v1/tokens", Some(WEEKLY_KEY), request.clone())
            .await;
        assert_eq!(status, expected, "{request} -> {body}");
    }
    // A key allowed to may let participants set their own attributes (vb.*, captions.*).
    let (status, body) = api
        .post(
            "/v1/tokens",
            Some(ADMIN_KEY),
            json!({"room": "weekly", "identity": "web-bea", "can_update_own_metadata": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = TokenVerifier::with_api_key(&server.api_key, &server.api_secret)
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.video.can_update_own_metadata, Some(true));
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
    assert_eq!(
        claims.video.can_update_own_metadata,
        Some(false),
        "not asked for: explicitly not granted"
    );
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
    // The room's sid is known at join: meetings are kept by it (room_finished closes that
    // instance's meetings only).
    assert!(room.sid.starts_with("RM_"), "{:?}", room.sid);
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Webhooks must verify; each event is handled once, durably (a second API on the same store
/// refuses the replay too); stale events are ignored; `room_finished` closes the meetings of
/// that room instance (its sid) and older meetings without a sid, never a later meeting of the
/// same name.
#[tokio::test]
async fn webhooks_must_verify_once_and_room_finished_closes_that_instance() {
    let api = start(None, 30).await;
    let now = now_ms();
    let created = now / 1000;
    let event = |id: &str, sid: &str, created: i64| {
        json!({"event": "room_finished", "room": {"name": "weekly", "sid": sid}, "id": id, "createdAt": created.to_string()}).to_string()
    };
    let body = event("EV_1", "RM_x", created);
    let send = |url: String, auth: Option<String>, body: String| {
        let mut req = api
            .client
            .post(format!("{url}/v1/livekit/webhook"))
            .header("Content-Type", "application/webhook+json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let secret = "a-secret-of-at-least-32-characters!!";
    assert_eq!(
        send(api.url.clone(), None, body.clone()).await.0,
        401,
        "unsigned"
    );
    let forged = signed(&body, "devkey", "some-other-secret-of-32-characters!!");
    assert_eq!(
        send(api.url.clone(), Some(forged), body.clone()).await.0,
        401,
        "wrong secret"
    );
    let tampered = body.replace("weekly", "board");
    assert_eq!(
        send(
            api.url.clone(),
            Some(signed(&body, "devkey", secret)),
            tampered
        )
        .await
        .0,
        401,
        "body changed"
    );
    // Meetings of the room's name: this instance (RM_x), an older one without a sid (the
    // seeded one), a later instance (RM_y) and a later one without a sid.
    let open = |room: &str, started: i64, sid: &str| {
        let meeting = Meeting::new(room, started).with_room_sid(sid);
        let root = meeting.root_message("meeting-agent", "Meeting".into());
        let store = api.store.clone();
        async move {
            store.open_meeting(&meeting, &root).await.unwrap();
            meeting
        }
    };
    let this = open("weekly", now - 60_000, "RM_x").await;
    let later = open("weekly", now + 60_000, "RM_y").await;
    let later_unknown = open("weekly", now + 120_000, "").await;
    let ended = |id: String| {
        let store = api.store.clone();
        async move {
            store
                .meeting(&id)
                .await
                .unwrap()
                .unwrap()
                .ended_at_ms
                .is_some()
        }
    };
    assert!(!ended(this.id.clone()).await);
    let (status, answer) = send(
        api.url.clone(),
        Some(signed(&body, "devkey", secret)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, &answer["handled"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert!(
        ended(this.id.clone()).await,
        "room_finished ends its meeting"
    );
    assert!(
        ended(api.weekly.id.clone()).await,
        "and older ones without a sid"
    );
    assert!(!ended(later.id.clone()).await, "a later instance survives");
    assert!(
        !ended(later_unknown.id.clone()).await,
        "a later meeting survives"
    );
    assert!(!ended(api.board.id.clone()).await, "other rooms untouched");

    // A replay does nothing, even on another API process sharing the store.
    let again = open("weekly", now - 30_000, "RM_x").await;
    let (status, answer) = send(
        api.url.clone(),
        Some(signed(&body, "devkey", secret)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (200, &json!("duplicate")),
        "{answer}"
    );
    let mut config = api.config.clone();
    config.data_dir = test_dir();
    let second = ApiState::new(&config, Some(api.store.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(second)).await });
    let (status, answer) = send(
        second_url,
        Some(signed(&body, "devkey", secret)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (200, &json!("duplicate")),
        "{answer}"
    );
    assert!(!ended(again.id.clone()).await, "replays are not handled");

    // An event older than the ids are kept is ignored.
    let stale = event("EV_2", "RM_x", created - 2 * 86_400);
    let (status, answer) = send(
        api.url.clone(),
        Some(signed(&stale, "devkey", secret)),
        stale,
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (200, &json!("stale")),
        "{answer}"
    );
    assert!(!ended(again.id.clone()).await);
}

/// Room and participant settings land where the agent reads them (room metadata, participant
/// attributes); background images are checked and stored; other rooms' keys are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_reach_the_room_and_its_participants() {
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = start(Some(&server), 30).await;
    let mut bob = meeting_agent_devtools::PythonParticipant::spawn(
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
        meeting_agent_devtools::fixtures::dir()
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
    // An id, not a path on the server.
    let id = stored["image"].as_str().unwrap().to_string();
    let digest: String = Sha256::digest(&png)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, format!("upload:{digest}.png"));
    let policy = SourcePolicy::from_config(&api.config);
    let file = policy.upload_dir("weekly").join(format!("{digest}.png"));
    assert_eq!(std::fs::read(&file).unwrap(), png);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&policy.upload_dir("weekly")), 0o700);
    let source = policy.check("weekly", &id).unwrap();
    assert!(
        meeting_agent::video::background::load(&source)
            .await
            .is_ok()
    );
    // The id is what vb.image takes, in this room; paths, devices, other schemes and
    // internal addresses are refused with the reason.
    let r = put(
        "/v1/rooms/weekly/participants/bob/settings",
        WEEKLY_KEY,
        json!({"vb.mode": "image", "vb.image": id}),
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
    assert_eq!(p["attributes"]["vb.image"], id.as_str());
    for bad in [
        "/dev/zero",
        "/proc/self/environ",
        "file:///etc/passwd",
        "http://169.254.169.254/",
        "https://169.254.169.254/latest/meta-data/",
        file.to_str().unwrap(),
        "upload:../../etc/passwd",
        &format!("upload:{}.png", "0".repeat(64)),
    ] {
        let r = put(
            "/v1/rooms/weekly/participants/bob/settings",
            WEEKLY_KEY,
            json!({"vb.image": bad}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let reason: Value = r.json().await.unwrap();
        assert!(
            reason["error"].as_str().unwrap().contains("vb.image"),
            "{reason}"
        );
    }
    // Another room's upload is not this room's.
    let r = put(
        "/v1/rooms/board/participants/bob/settings",
        ADMIN_KEY,
        json!({"vb.image": id}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // A participant who is not there is 404, not a gateway error.
    let r = put(
        "/v1/rooms/weekly/participants/nobody/settings",
        WEEKLY_KEY,
        json!({"vb.mode": "blur"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
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

/// Sends `head` (request line and headers) and `body` on a fresh connection and leaves the
/// connection open, the rest of the body unsent.
async fn half_sent(url: &str, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("{head}Host: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The status line the server answers on `stream`, if it answers within `within`.
async fn status_line(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().map(str::to_string)
}

/// The key is checked before any of the body is read: an unauthenticated 9 MiB upload, and a
/// body that never ends, are answered 401 while the client is still sending.
#[tokio::test]
async fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let api = start(None, 30).await;
    let nine_mib = 9 * 1024 * 1024;
    for auth in ["", "Authorization: Bearer not-a-key\r\n"] {
        let mut stream = half_sent(
            &api.url,
            &format!(
                "POST /v1/rooms/weekly/backgrounds HTTP/1.1\r\n{auth}Content-Type: image/png\r\nContent-Length: {nine_mib}\r\n"
            ),
            &[0u8; 64 * 1024],
        )
        .await;
        let status = status_line(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "answered with {} of {nine_mib} bytes sent ({auth:?})",
            64 * 1024
        );
    }
    // A chunked body that never ends, on a JSON route; and on a meeting control, which takes a
    // participant token too: one that does not verify is refused as early.
    for head in [
        "POST /v1/tokens HTTP/1.1\r\n",
        "PUT /v1/rooms/weekly/participants/x/role HTTP/1.1\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.forged\r\n",
    ] {
        let mut stream = half_sent(
            &api.url,
            &format!("{head}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
            b"1000\r\n",
        )
        .await;
        assert_eq!(
            status_line(&mut stream, Duration::from_secs(5))
                .await
                .as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{head}"
        );
    }
    // With a key, JSON bodies are small.
    let big = json!({"room": "weekly", "identity": "x".repeat(100 * 1024)});
    let (status, _) = api.post("/v1/tokens", Some(WEEKLY_KEY), big).await;
    assert_eq!(status, 413);
}

/// Calls beyond `api.max_concurrent_requests` are answered 503 at once (health still
/// answers), and a call past `api.request_timeout_secs` is answered 503.
#[tokio::test]
async fn calls_are_bounded_in_number_and_time() {
    let api = start_with(None, 30, |c| {
        c.api.max_concurrent_requests = 1;
        c.api.request_timeout_secs = 1;
    })
    .await;
    // An authenticated upload that sends 10 of its 1000 bytes and stalls holds the one slot.
    let mut slow = half_sent(
        &api.url,
        &format!(
            "POST /v1/rooms/weekly/backgrounds HTTP/1.1\r\nAuthorization: Bearer {WEEKLY_KEY}\r\nContent-Length: 1000\r\n"
        ),
        &[0u8; 10],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.get("/v1/meetings", Some(WEEKLY_KEY)).await.0, 503);
    assert_eq!(api.get("/healthz", None).await.0, 200);
    assert_eq!(
        status_line(&mut slow, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "the stalled call times out"
    );
    assert_eq!(api.get("/v1/meetings", Some(WEEKLY_KEY)).await.0, 200);
}

fn png(seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([seed, (x * 8) as u8, (y * 10) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Uploads count against the room's quota (507 past it), a repeated upload costs nothing, and
/// uploads older than the expiry are deleted when the API starts.
#[tokio::test]
async fn background_uploads_have_a_quota_and_expire() {
    // An expired upload left by an earlier process.
    let mut seen_dir = None;
    let api = start_with(None, 30, |c| {
        c.api.background_max_count = 2;
        c.api.background_expiry_days = 1;
        let dir = SourcePolicy::from_config(c).upload_dir("weekly");
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join(format!("{}.png", "ab".repeat(32)));
        std::fs::write(&old, png(9)).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 86_400))
            .unwrap();
        seen_dir = Some(old);
    })
    .await;
    assert!(
        !seen_dir.unwrap().exists(),
        "expired uploads are swept at start"
    );
    let upload = |body: Vec<u8>| {
        api.client
            .post(format!("{}/v1/rooms/weekly/backgrounds", api.url))
            .bearer_auth(WEEKLY_KEY)
            .body(body)
            .send()
    };
    let first = upload(png(1)).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(upload(png(2)).await.unwrap().status(), 201);
    assert_eq!(upload(png(3)).await.unwrap().status(), 507, "a third image");
    let again = upload(png(1)).await.unwrap();
    assert_eq!(again.status(), 200, "the same image again is no new image");
    assert_eq!(
        again.json::<Value>().await.unwrap()["image"],
        first["image"]
    );
    // Another room has its own quota.
    let board = api
        .client
        .post(format!("{}/v1/rooms/board/backgrounds", api.url))
        .bearer_auth(ADMIN_KEY)
        .body(png(3))
        .send()
        .await
        .unwrap();
    assert_eq!(board.status(), 201);
}

/// Concurrent writes of different keys of one room's metadata all survive: through the API
/// (recording switch and settings at once), through clones of one RoomService (serialised by
/// its per-room lock) and through a second RoomService as another process would write
/// (caught by reading back and re-applying).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_metadata_writes_all_survive() {
    use meeting_agent::livekit::room_service::RoomService;
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = start(Some(&server), 30).await;
    for room in ["weekly", "busy"] {
        server
            .room_service("CreateRoom", &json!({"name": room}))
            .await
            .unwrap();
    }
    let metadata = |room: &'static str| {
        let server = &server;
        async move {
            let rooms = server
                .room_service("ListRooms", &json!({"names": [room]}))
                .await
                .unwrap();
            serde_json::from_str::<Value>(rooms["rooms"][0]["metadata"].as_str().unwrap()).unwrap()
        }
    };

    // Through the API: five calls at once, each setting its own key.
    let put = |path: &str, body: Value| {
        api.client
            .put(format!("{}{path}", api.url))
            .bearer_auth(WEEKLY_KEY)
            .json(&body)
            .send()
    };
    let calls = futures_util::future::join_all([
        put("/v1/rooms/weekly/recording", json!({"enabled": true})),
        put(
            "/v1/rooms/weekly/settings",
            json!({"captions.enabled": false}),
        ),
        put(
            "/v1/rooms/weekly/settings",
            json!({"captions.language": "de"}),
        ),
        put("/v1/rooms/weekly/settings", json!({"ns.enabled": false})),
        put("/v1/rooms/weekly/settings", json!({"ns.clean_track": true})),
    ])
    .await;
    for r in calls {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(
        metadata("weekly").await,
        json!({"recording.enabled": true, "captions.enabled": false, "captions.language": "de", "ns.enabled": false, "ns.clean_track": true})
    );

    // Directly: 16 writers on clones of one service and 4 on another, all at once.
    let here = RoomService::new(&server.ws_url(), &server.api_key, &server.api_secret);
    let elsewhere = RoomService::new(&server.ws_url(), &server.api_key, &server.api_secret);
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let service = if i % 5 == 4 {
                elsewhere.clone()
            } else {
                here.clone()
            };
            tokio::spawn(async move {
                service
                    .set_switches("busy", [(format!("key.{i}"), json!(i))])
                    .await
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let expected: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("key.{i}"), json!(i))).collect();
    assert_eq!(metadata("busy").await, Value::Object(expected));
    assert_eq!(here.rooms_locked(), 0, "no lock entry outlives its writes");
}
