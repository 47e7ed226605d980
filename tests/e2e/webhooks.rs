//! Outgoing webhooks and e-mail follow-ups, end to end: endpoints made through the control
//! API, deliveries from the store's outbox by the dispatcher, received by a local HTTP server
//! that verifies every signature with the Standard Webhooks reference library
//! (`tests/participants/webhook_receiver.py`), and follow-ups received by a local SMTP server
//! (`smtp_sink.py`, aiosmtpd). The receiver is taken down and brought back, one always fails,
//! and a real meeting on a real livekit-server is announced and followed up.

use std::time::{Duration, Instant};

use meeting_agent::api::{ApiState, router};
use meeting_agent::config::{ApiKey, Config};
use meeting_agent::integrations::dispatcher::Dispatcher;
use meeting_agent::integrations::{Event, Events};
use meeting_agent::store::Store;
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant, dispatch_cli};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdefgh";
const WEEKLY_KEY: &str = "weekly-key-0123456789abcdef";

struct Hooks {
    url: String,
    client: reqwest::Client,
    store: Store,
    config: Config,
    events: Events,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The API and one dispatcher on a fresh SQLite store; loopback endpoints allowed (`open`).
async fn start(open: bool, tweak: impl FnOnce(&mut Config)) -> Hooks {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("webhooks-test-{}-{n}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite:{}", dir.join("hooks.db").display()))
        .await
        .unwrap();
    let mut config = Config {
        data_dir: dir,
        ..Default::default()
    };
    config.livekit.api_secret = "a-secret-of-at-least-32-characters!!".into();
    config.api.keys = vec![
        ApiKey {
            key: ADMIN_KEY.into(),
            rooms: vec!["*".into()],
            participant_attributes: false,
        },
        ApiKey {
            key: WEEKLY_KEY.into(),
            rooms: vec!["weekly".into()],
            participant_attributes: false,
        },
    ];
    config.webhooks.allow_http = open;
    config.webhooks.allow_private_addresses = open;
    config.webhooks.retry_base_ms = 200;
    config.webhooks.retry_max_ms = 2_000;
    config.webhooks.poll_ms = 200;
    tweak(&mut config);
    let state = ApiState::new(&config, Some(store.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = Dispatcher::new(store.clone(), config.webhooks.clone(), None);
    tokio::spawn(async move { dispatcher.run(stopped).await });
    Hooks {
        url,
        client: reqwest::Client::new(),
        events: Events::new(store.clone(), &config.webhooks),
        store,
        config,
        _stop: stop,
    }
}

impl Hooks {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A new endpoint at `url`: its id and secret.
    async fn endpoint(&self, url: &str, extra: Value) -> (String, String) {
        let mut body = json!({"url": url});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, created) = self
            .call("POST", "/v1/webhooks", Some(ADMIN_KEY), Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        (
            created["id"].as_str().unwrap().to_string(),
            created["secret"].as_str().unwrap().to_string(),
        )
    }

    async fn emit(&self, room: &str, n: u32) -> String {
        let event = Event::new(
            "participant.joined",
            Some(room),
            &format!("{room}/{n}"),
            0,
            json!({"room": room, "n": n}),
        );
        assert_eq!(self.events.emit(&event, now_ms()).await.unwrap(), 1);
        event.id
    }
}

fn now_ms() -> i64 {
    meeting_agent::captions::journal::unix_ms() as i64
}

fn receiver(port: u16, secrets: &[&str], fail: bool) -> PythonParticipant {
    let port = port.to_string();
    let mut args = vec!["--port", port.as_str()];
    for s in secrets {
        args.extend(["--secret", s]);
    }
    if fail {
        args.push("--fail");
    }
    PythonParticipant::spawn_helper("webhook_receiver.py", "receiver", &args).unwrap()
}

async fn listening(r: &mut PythonParticipant) {
    r.wait_for(Duration::from_secs(20), |e| e["event"] == "listening")
        .await
        .expect("the receiver listens");
}

/// Verified deliveries until `count` are in (within `timeout`): (id, room, n) in arrival order.
async fn collect(r: &mut PythonParticipant, got: &mut Vec<Value>, count: usize, timeout: Duration) {
    let until = Instant::now() + timeout;
    while got.len() < count && Instant::now() < until {
        if let Some(e) = r
            .wait_for(Duration::from_millis(200), |e| e["event"] != "listening")
            .await
        {
            assert_ne!(e["event"], "bad_signature", "{e}");
            got.push(e);
        }
    }
    assert!(
        got.len() >= count,
        "only {} of {count} deliveries: {got:?}",
        got.len()
    );
}

/// Per room, the `n`s in the order they arrived: each must be ascending.
fn in_order_per_room(got: &[Value]) {
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for e in got {
        let room = e["room"].as_str().unwrap().to_string();
        let n = e["data"]["n"].as_i64().unwrap();
        if let Some(prev) = last.insert(room.clone(), n) {
            assert!(n > prev, "room {room}: {n} arrived after {prev}: {got:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_receiver_outage_signed_and_in_order_per_room() {
    crate::common::init();
    let hooks = start(true, |_| {}).await;
    let port = free_port();
    let (id, secret) = hooks
        .endpoint(
            &format!("http://127.0.0.1:{port}/hook"),
            json!({"description": "ops"}),
        )
        .await;
    let mut r = receiver(port, &[&secret], false);
    listening(&mut r).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        for room in ["r1", "r2"] {
            sent.push(hooks.emit(room, n).await);
        }
    }
    let mut got = Vec::new();
    collect(&mut r, &mut got, 6, Duration::from_secs(20)).await;

    // The receiver goes away; events keep coming, and wait.
    r.stop().await;
    for n in 3..8 {
        for room in ["r1", "r2"] {
            sent.push(hooks.emit(room, n).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, endpoint) = hooks
        .call("GET", &format!("/v1/webhooks/{id}"), Some(ADMIN_KEY), None)
        .await;
    assert!(endpoint["failures"].as_i64().unwrap() >= 1, "{endpoint}");
    assert!(
        endpoint.get("secret").is_none() && endpoint.get("secrets").is_none(),
        "{endpoint}"
    );
    let (_, pending) = hooks
        .call(
            "GET",
            &format!("/v1/webhooks/{id}/deliveries?status=pending"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    let pending = pending.as_array().unwrap();
    assert!(!pending.is_empty());
    assert!(
        pending.iter().any(|d| d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("onnect"))),
        "{pending:?}"
    );

    // Back: the backlog arrives by itself (no new event needed), in order per room.
    let mut r = receiver(port, &[&secret], false);
    listening(&mut r).await;
    let back = Instant::now();
    collect(&mut r, &mut got, 16, Duration::from_secs(60)).await;
    println!(
        "backlog of 10 delivered {:?} after the receiver came back",
        back.elapsed()
    );
    let ids: std::collections::BTreeSet<_> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let want: std::collections::BTreeSet<_> = sent.iter().cloned().collect();
    assert_eq!(ids, want, "every event once at least, and nothing else");
    in_order_per_room(&got);
    let (_, endpoint) = hooks
        .call("GET", &format!("/v1/webhooks/{id}"), Some(ADMIN_KEY), None)
        .await;
    assert_eq!(endpoint["failures"], 0, "{endpoint}");

    // A rotation: the old secret keeps verifying during the overlap (two signatures), the new
    // one from now on.
    let (status, rotated) = hooks
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/rotate-secret"),
            Some(ADMIN_KEY),
            Some(json!({"overlap_secs": 600})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    hooks.emit("r1", 100).await;
    let mut more = Vec::new();
    collect(&mut r, &mut more, 1, Duration::from_secs(20)).await;
    assert_eq!(more[0]["signatures"], 2, "{more:?}");
    r.stop().await;
    let mut r = receiver(port, &[&new_secret], false);
    listening(&mut r).await;
    hooks.emit("r1", 101).await;
    collect(&mut r, &mut more, 2, Duration::from_secs(30)).await;
    assert_eq!(more[1]["data"]["n"], 101);
    // The metrics count what happened.
    let (_, metrics) = hooks.call("GET", "/metrics", Some(ADMIN_KEY), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("meeting_agent_outbox_delivered_total"),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_always_fails_is_dead_lettered_and_visible() {
    crate::common::init();
    let hooks = start(true, |c| {
        c.webhooks.max_attempts = 3;
        c.webhooks.retry_base_ms = 100;
        c.webhooks.retry_max_ms = 300;
    })
    .await;
    let port = free_port();
    let (id, secret) = hooks
        .endpoint(
            &format!("http://127.0.0.1:{port}/"),
            json!({"rooms": ["r1"]}),
        )
        .await;
    let mut r = receiver(port, &[&secret], true);
    listening(&mut r).await;
    hooks.emit("r1", 0).await;
    hooks.emit("r1", 1).await;
    // Not for this endpoint: another room.
    let other = Event::new("participant.joined", Some("r2"), "r2/0", 0, json!({}));
    assert_eq!(hooks.events.emit(&other, now_ms()).await.unwrap(), 0);
    let until = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let (_, dead) = hooks
            .call(
                "GET",
                &format!("/v1/webhooks/{id}/deliveries?status=dead"),
                Some(ADMIN_KEY),
                None,
            )
            .await;
        if dead.as_array().unwrap().len() == 2 || Instant::now() > until {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in dead {
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["last_status"], 500, "{d}");
        assert!(d["last_error"].as_str().unwrap().contains("500"), "{d}");
    }
    let refused = r
        .received()
        .iter()
        .filter(|e| e["event"] == "refused")
        .count();
    assert!(refused >= 6, "{refused}");
    // Sent again on request; a delivery of another endpoint is not this one's to retry.
    let delivery = dead[0]["id"].as_str().unwrap();
    let (status, _) = hooks
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = hooks
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/deliveries/nope/retry"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, metrics) = hooks.call("GET", "/metrics", Some(ADMIN_KEY), None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("meeting_agent_outbox_dead_lettered_total")
    );
    r.stop().await;
}

/// What an API caller may not do: point the agent inward, name unknown events, reach beyond
/// its rooms, read others' endpoints, or unsubscribe someone with a made-up link.
#[tokio::test]
async fn endpoints_are_checked_and_scoped() {
    crate::common::init();
    let hooks = start(false, |c| c.webhooks.max_endpoints = 3).await;
    let admin = Some(ADMIN_KEY);
    let weekly = Some(WEEKLY_KEY);
    for (body, why) in [
        (json!({"url": "http://93.184.216.34/hook"}), "https"),
        (json!({"url": "https://127.0.0.1/hook"}), "not a public"),
        (json!({"url": "https://[::1]/hook"}), "not a public"),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data"}),
            "not a public",
        ),
        (json!({"url": "https://localhost/hook"}), "not a public"),
        (json!({"url": "file:///etc/passwd"}), "https"),
        (json!({"url": "https://u:p@93.184.216.34/"}), "user name"),
        (
            json!({"url": "https://93.184.216.34/", "event_types": ["meeting.exploded"]}),
            "unknown event type",
        ),
        (
            json!({"url": "https://93.184.216.34/", "rooms": vec!["r"; 101]}),
            "rooms",
        ),
        (
            json!({"url": "https://93.184.216.34/", "description": "x".repeat(501)}),
            "description",
        ),
    ] {
        let (status, answer) = hooks
            .call("POST", "/v1/webhooks", admin, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(why),
            "{body}: {answer}"
        );
    }
    let (status, _) = hooks
        .call(
            "POST",
            "/v1/webhooks",
            None,
            Some(json!({"url": "https://93.184.216.34/"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = hooks
        .call(
            "POST",
            "/v1/webhooks",
            admin,
            Some(json!({"url": "https://93.184.216.34/", "x": 1})),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    // A key for one room: endpoints for that room only.
    for rooms in [json!([]), json!(["board"]), json!(["weekly", "board"])] {
        let (status, _) = hooks
            .call(
                "POST",
                "/v1/webhooks",
                weekly,
                Some(json!({"url": "https://93.184.216.34/", "rooms": rooms})),
            )
            .await;
        assert_eq!(status, 403, "{rooms}");
    }
    let (status, mine) = hooks
        .call(
            "POST",
            "/v1/webhooks",
            weekly,
            Some(json!({"url": "https://93.184.216.34/w", "rooms": ["weekly"]})),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    let (id, secret) = hooks.endpoint("https://93.184.216.34/all", json!({})).await;
    assert!(secret.starts_with("whsec_"));
    let (_, listed) = hooks.call("GET", "/v1/webhooks", weekly, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], mine["id"]);
    let (_, all) = hooks.call("GET", "/v1/webhooks", admin, None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert!(
        !all.to_string().contains("whsec_"),
        "secrets are never listed"
    );
    for (method, path) in [
        ("GET", format!("/v1/webhooks/{id}")),
        ("DELETE", format!("/v1/webhooks/{id}")),
        ("GET", format!("/v1/webhooks/{id}/deliveries")),
        ("POST", format!("/v1/webhooks/{id}/rotate-secret")),
    ] {
        let (status, _) = hooks.call(method, &path, weekly, None).await;
        assert_eq!(
            status, 404,
            "{method} {path}: another key's endpoint is not revealed"
        );
    }
    let (status, _) = hooks
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/rotate-secret"),
            admin,
            Some(json!({"overlap_secs": 700_000})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = hooks
        .call(
            "GET",
            &format!("/v1/webhooks/{id}/deliveries?status=lost"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 400);
    // The cap on endpoints.
    hooks.endpoint("https://93.184.216.34/3", json!({})).await;
    let (status, _) = hooks
        .call(
            "POST",
            "/v1/webhooks",
            admin,
            Some(json!({"url": "https://93.184.216.34/4"})),
        )
        .await;
    assert_eq!(status, 409);
    // A change keeps the secret and is checked like a new one.
    let (status, changed) = hooks
        .call(
            "PUT",
            &format!("/v1/webhooks/{id}"),
            admin,
            Some(json!({"url": "https://93.184.216.34/moved", "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["url"].as_str(), changed["enabled"].as_bool()),
        (Some("https://93.184.216.34/moved"), Some(false))
    );
    let (status, _) = hooks
        .call(
            "PUT",
            &format!("/v1/webhooks/{id}"),
            admin,
            Some(json!({"url": "https://10.0.0.1/"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = hooks
        .call("DELETE", &format!("/v1/webhooks/{id}"), admin, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = hooks
        .call("GET", &format!("/v1/webhooks/{id}"), admin, None)
        .await;
    assert_eq!(status, 404);

    // Unsubscribe links: a genuine one works without a key; anything else changes nothing.
    let key = meeting_agent::integrations::email::unsubscribe_key(&hooks.config.livekit.api_secret);
    let token =
        meeting_agent::integrations::email::unsubscribe_token(&key, "weekly", "bob@example.com");
    let forged = meeting_agent::integrations::email::unsubscribe_token(
        &meeting_agent::integrations::email::unsubscribe_key("guessed"),
        "weekly",
        "eve@example.com",
    );
    let (status, _) = hooks
        .call(
            "GET",
            &format!("/v1/email/unsubscribe?token={forged}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        !hooks
            .store
            .opted_out("weekly", "eve@example.com")
            .await
            .unwrap()
    );
    let (status, page) = hooks
        .call(
            "POST",
            &format!("/v1/email/unsubscribe?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        hooks
            .store
            .opted_out("weekly", "bob@example.com")
            .await
            .unwrap()
    );
}

/// A real meeting: the agent announces it (started, each participant, ended, transcript and
/// summary ready) to a verifying receiver in that order, and mails its follow-up to the
/// attendees whose addresses the platform gives, one of them by a trusted attribute, none to
/// an attribute outside the trusted domains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_is_announced_and_followed_up_by_email() {
    crate::common::init();
    const ROOM: &str = "hooked";
    let server = LocalLiveKitServer::start().await.unwrap();
    let smtp_port = free_port();
    let mut smtp = PythonParticipant::spawn_helper(
        "smtp_sink.py",
        "smtp",
        &["--port", &smtp_port.to_string()],
    )
    .unwrap();
    listening(&mut smtp).await;
    let hooks = start(true, |c| {
        c.email.enabled = true;
        c.email.smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
        c.email.smtp_plaintext = true;
        // Sent once the recording is stored (a moment after the meeting).
        c.email.delay_secs = 3;
        c.recording.auto = true;
        c.email.attribute_domains = vec!["example.com".into()];
        c.email.public_url = "https://meet.example.com".into();
        c.livekit.api_secret = server.api_secret.clone();
    })
    .await;
    // The meeting is recorded (local storage), and the follow-up links the recording.
    let recorder = meeting_agent::features::recording::Recorder::from_config(&hooks.config)
        .unwrap()
        .with_store(hooks.store.clone())
        .with_events(hooks.events.clone());
    // The mailer's dispatcher (the one `start` runs has none): a second, as a worker would.
    let mailer = meeting_agent::integrations::email::Mailer::from_config(
        &hooks.config,
        Some(recorder.clone()),
    )
    .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = Dispatcher::new(
        hooks.store.clone(),
        hooks.config.webhooks.clone(),
        Some(std::sync::Arc::new(mailer)),
    );
    tokio::spawn(async move { dispatcher.run(stopped).await });
    hooks
        .store
        .set_user_email("alice", "alice@corp.example.org")
        .await
        .unwrap();
    let port = free_port();
    let (_, secret) = hooks
        .endpoint(
            &format!("http://127.0.0.1:{port}/"),
            json!({"rooms": [ROOM]}),
        )
        .await;
    let mut r = receiver(port, &[&secret], false);
    listening(&mut r).await;

    let mut options =
        meeting_agent::features::meeting_log::MeetingLogOptions::from_config(&hooks.config);
    options.flush_timeout = Duration::from_secs(10);
    options.events = Some(hooks.events.clone());
    let mut features = meeting_agent::features::FeatureSet::default()
        .with_store(hooks.store.clone(), options)
        .with_recorder(recorder);
    features.events = Some((hooks.events.clone(), hooks.config.email.clone()));
    let session = features.session();
    let _agent = crate::common::start_worker_with(
        crate::common::config_for(&server, ""),
        std::sync::Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    let mut people = Vec::new();
    for (identity, attributes) in [
        ("alice", vec![]),
        ("bob", vec!["--attributes", "email=bob@example.com"]),
        ("eve", vec!["--attributes", "email=eve@evil.test"]),
    ] {
        let args = [&["--tone-hz", "0", "--video", "none"][..], &attributes].concat();
        let mut p = PythonParticipant::spawn(&server, ROOM, identity, &args).unwrap();
        p.wait_for(Duration::from_secs(30), |e| e["event"] == "connected")
            .await
            .expect("connects");
        people.push(p);
    }
    let mut got = Vec::new();
    collect(&mut r, &mut got, 4, Duration::from_secs(30)).await;
    for p in people {
        p.stop().await;
    }
    // Everyone has left (the server may notice a participant whose process ended late).
    let types = |got: &[Value]| {
        got.iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let until = Instant::now() + Duration::from_secs(60);
    while types(&got)
        .iter()
        .filter(|t| *t == "participant.left")
        .count()
        < 3
        && Instant::now() < until
    {
        let want = got.len() + 1;
        collect(&mut r, &mut got, want, Duration::from_secs(60)).await;
    }
    dispatch_cli(&server, &["delete-room", "--room", ROOM])
        .await
        .unwrap();
    while !types(&got).contains(&"summary.ready".to_string()) && Instant::now() < until {
        let want = got.len() + 1;
        collect(&mut r, &mut got, want, Duration::from_secs(60)).await;
    }
    // The recording's events come from the recorder, in their own order.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !types(&got).contains(&"recording.ready".to_string()) && Instant::now() < deadline {
        let want = got.len() + 1;
        collect(&mut r, &mut got, want, Duration::from_secs(30)).await;
    }
    let all = types(&got);
    println!("{all:?}");
    for t in ["recording.started", "recording.ready"] {
        assert_eq!(all.iter().filter(|x| *x == t).count(), 1, "{t}: {all:?}");
    }
    let ready = got.iter().find(|e| e["type"] == "recording.ready").unwrap();
    assert_eq!(ready["data"]["status"], "complete", "{ready}");
    assert!(
        ready["data"]["link"]
            .as_str()
            .unwrap()
            .starts_with("/v1/recordings/rec-")
    );
    let types: Vec<String> = all
        .into_iter()
        .filter(|t| !t.starts_with("recording."))
        .collect();
    let position = |t: &str| {
        types
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no {t}: {types:?}"))
    };
    assert_eq!(position("meeting.started"), 0, "{types:?}");
    assert_eq!(
        types.iter().filter(|t| *t == "participant.joined").count(),
        3,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "participant.left").count(),
        3,
        "{types:?}"
    );
    assert!(
        position("meeting.ended") > types.iter().rposition(|t| t == "participant.left").unwrap()
    );
    assert!(position("transcript.ready") < position("summary.ready"));
    let joined = got
        .iter()
        .find(|e| e["type"] == "participant.joined" && e["data"]["identity"] == "bob")
        .unwrap();
    assert_eq!(joined["data"]["name"], "bob");
    assert!(got.iter().all(|e| e["room"] == ROOM));
    let summary = got.iter().find(|e| e["type"] == "summary.ready").unwrap();
    let attendance = summary["data"]["attendance"].to_string();
    assert!(
        ["alice", "bob", "eve"]
            .iter()
            .all(|p| attendance.contains(p)),
        "{summary}"
    );

    // The follow-ups: alice (the store's address) and bob (a trusted attribute), not eve.
    let mut mails = Vec::new();
    while mails.len() < 2 {
        let mail = smtp
            .wait_for(Duration::from_secs(30), |e| e["event"] == "mail")
            .await
            .unwrap_or_else(|| panic!("follow-ups: {mails:?}"));
        mails.push(mail);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        smtp.received().iter().all(|e| e["event"] != "mail"),
        "a third e-mail"
    );
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| m["to"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["alice@corp.example.org", "bob@example.com"]);
    for m in &mails {
        let subject = m["subject"].as_str().unwrap();
        assert!(
            subject.starts_with(&format!("Meeting summary: {ROOM} (")),
            "{subject}"
        );
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(
            text.contains("Attendees") && text.contains("- eve"),
            "{text}"
        );
        assert!(html.contains("<h3>Attendees</h3>"), "{html}");
        // The stored recording's link (local storage: a file:// path to the MP4).
        assert!(
            text.contains("\nRecording: file://") && text.contains(".mp4"),
            "{text}"
        );
        assert!(html.contains("<h3>Recording</h3>"), "{html}");
        let unsubscribe = m["headers"]["List-Unsubscribe"].as_str().unwrap();
        assert!(
            unsubscribe.starts_with("<https://meet.example.com/v1/email/unsubscribe?token="),
            "{unsubscribe}"
        );
        assert_eq!(
            m["headers"]["List-Unsubscribe-Post"],
            "List-Unsubscribe=One-Click"
        );
    }
    // bob unsubscribes with his link: the store remembers it for this room.
    let bob = mails
        .iter()
        .find(|m| m["to"][0] == "bob@example.com")
        .unwrap();
    let link = bob["headers"]["List-Unsubscribe"]
        .as_str()
        .unwrap()
        .trim_matches(['<', '>']);
    let path = link.strip_prefix("https://meet.example.com").unwrap();
    let (status, _) = hooks.call("GET", path, None, None).await;
    assert_eq!(status, 200);
    assert!(
        hooks
            .store
            .opted_out(ROOM, "bob@example.com")
            .await
            .unwrap()
    );
    // The e-mails are in the outbox's log too.
    let mails_logged = hooks
        .store
        .deliveries(Some("bob@example.com"), None, 10)
        .await
        .unwrap();
    assert_eq!(mails_logged.len(), 1);
    assert_eq!(mails_logged[0].last_status, Some(250));
    r.stop().await;
    smtp.stop().await;
}
