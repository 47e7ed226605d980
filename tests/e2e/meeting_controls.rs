//! Meeting controls through the control API on a real livekit-server, judged by what the other
//! participants (LiveKit's Python SDK) observe: mute all (kept muted), remove, host transfer,
//! lock; a host's browser calls them with its own participant token, and tokens of
//! non-hosts, of another room, expired or forged are refused. Every action is in the audit log.

use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};
use serde_json::{Value, json};

use crate::control_api::{ADMIN_KEY, ControlApi, ROOM, SEEN};

fn join(
    server: &LocalLiveKitServer,
    identity: &str,
    token: &str,
    publish: bool,
) -> PythonParticipant {
    let tone = if publish { "440" } else { "0" };
    PythonParticipant::spawn(
        server,
        ROOM,
        identity,
        &["--token", token, "--tone-hz", tone, "--video", "none"],
    )
    .unwrap()
}

async fn wait(p: &mut PythonParticipant, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    p.wait_for(SEEN, pred)
        .await
        .unwrap_or_else(|| panic!("{} did not see {what}", p.identity))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_run_the_meeting_with_their_own_tokens_and_everyone_sees_it() {
    use reqwest::Method;
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = ControlApi::start(&server).await;
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hanna_token = api.token("hanna", "host").await;
    let cora_token = api.token("cora", "co-host").await;
    let pete_token = api.token("pete", "participant").await;
    let quinn_token = api.token("quinn", "guest").await;
    let olga_token = api.token("olga", "participant").await;

    let mut olga = join(&server, "olga", &olga_token, false);
    wait(&mut olga, "its connection", |e| e["event"] == "connected").await;
    let mut pete = join(&server, "pete", &pete_token, true);
    let mut quinn = join(&server, "quinn", &quinn_token, true);
    let mut hanna = join(&server, "hanna", &hanna_token, false);
    let mut cora = join(&server, "cora", &cora_token, false);
    for p in [&mut pete, &mut quinn] {
        wait(p, "its microphone published", |e| e["event"] == "published").await;
    }
    for p in [&mut hanna, &mut cora] {
        wait(p, "its connection", |e| e["event"] == "connected").await;
    }
    let mut subscribed = 0;
    while subscribed < 2 {
        wait(&mut olga, "pete's and quinn's microphones", |e| {
            e["event"] == "track_subscribed"
        })
        .await;
        subscribed += 1;
    }

    let mute_all = "/v1/rooms/standup/mute-all";
    // Refused: a participant, a token of another room, an expired one, a forged one.
    let (status, body) = api
        .call(Method::POST, mute_all, &pete_token, Some(json!({})))
        .await;
    assert_eq!(status, 403, "a participant may not mute everyone: {body}");
    let (_, other) = api.mint("elsewhere", "hanna", "host").await;
    let other_room_token = other["token"].as_str().unwrap();
    assert_eq!(
        api.call(Method::POST, mute_all, other_room_token, Some(json!({})))
            .await
            .0,
        403,
        "a host elsewhere is nobody here"
    );
    let short_lived = AccessToken::with_api_key(&server.api_key, &server.api_secret)
        .with_identity("hanna")
        .with_ttl(Duration::from_secs(1))
        .with_grants(VideoGrants {
            room_join: true,
            room: ROOM.into(),
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        api.call(Method::POST, mute_all, &short_lived, Some(json!({})))
            .await
            .0,
        401,
        "expired"
    );
    let forged = AccessToken::with_api_key(&server.api_key, "not-the-secret-at-all-0123456789")
        .with_identity("hanna")
        .with_grants(VideoGrants {
            room_join: true,
            room: ROOM.into(),
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    assert_eq!(
        api.call(Method::POST, mute_all, &forged, Some(json!({})))
            .await
            .0,
        401
    );

    // Hostile or malformed calls by a host get a clear error and change nothing.
    for (method, path, body, expected) in [
        (
            Method::PUT,
            "/v1/rooms/standup/participants/olga/role",
            json!({"role": "owner"}),
            422,
        ),
        (
            Method::PUT,
            "/v1/rooms/standup/participants/olga/role",
            json!({"role": "host", "x": 1}),
            422,
        ),
        (
            Method::PUT,
            "/v1/rooms/standup/participants/a%2F..%2Fb/role",
            json!({"role": "guest"}),
            400,
        ),
        (
            Method::PUT,
            "/v1/rooms/standup/spotlight",
            json!({"identity": "x".repeat(129)}),
            400,
        ),
        (
            Method::PUT,
            "/v1/rooms/standup/lock",
            json!({"locked": "yes"}),
            422,
        ),
        (
            Method::POST,
            "/v1/rooms/standup/participants/nobody/mute",
            json!({}),
            404,
        ),
        (
            Method::POST,
            "/v1/rooms/standup/mute-all",
            json!({"keep_muted": 1}),
            422,
        ),
    ] {
        let (status, answer) = api
            .call(method, path, &hanna_token, Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{path} {body} -> {answer}");
        assert!(answer["error"].is_string() || status == 422, "{answer}");
    }

    // A co-host mutes one participant: the others see that microphone muted.
    let (status, body) = api
        .post("/v1/rooms/standup/participants/quinn/mute", &cora_token)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["muted_tracks"], 1);
    wait(&mut olga, "quinn muted", |e| {
        e["event"] == "track_muted" && e["identity"] == "quinn"
    })
    .await;

    // The host mutes everyone and keeps them muted.
    let asked = Instant::now();
    let (status, body) = api
        .call(
            Method::POST,
            mute_all,
            &hanna_token,
            Some(json!({"keep_muted": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut muted: Vec<String> = body["muted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    muted.sort();
    assert_eq!(muted, ["olga", "pete", "quinn"], "hosts and co-hosts stay");
    // Muted at once, and kept muted: the server takes both microphones (their publications
    // end for everyone), and they may not publish one until released.
    let (mut muted_seen, mut taken, mut silenced) = (Vec::new(), Vec::new(), Vec::new());
    while taken.len() < 2 {
        let ev = wait(&mut olga, "the microphones muted and taken", |e| {
            e["event"] == "track_muted" || e["event"] == "track_unpublished"
        })
        .await;
        let who = ev["identity"].as_str().unwrap().to_string();
        let list = if ev["event"] == "track_muted" {
            &mut muted_seen
        } else {
            &mut taken
        };
        if !list.contains(&who) {
            list.push(who.clone());
        }
        if !silenced.contains(&who) {
            silenced.push(who);
            if silenced.len() == 2 {
                println!(
                    "control_action_ms mute-all: {} ms until both microphones were seen silenced",
                    asked.elapsed().as_millis()
                );
            }
        }
    }
    taken.sort();
    assert_eq!(taken, ["pete", "quinn"]);
    let listed = server
        .room_service("ListParticipants", &json!({"room": ROOM}))
        .await
        .unwrap();
    let pete_info = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identity"] == "pete")
        .unwrap()
        .clone();
    let sources = pete_info["permission"]["canPublishSources"]
        .as_array()
        .or(pete_info["permission"]["can_publish_sources"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        !sources.is_empty() && !sources.iter().any(|s| s == "MICROPHONE"),
        "{pete_info}"
    );
    let (status, body) = api
        .post("/v1/rooms/standup/participants/pete/release", &cora_token)
        .await;
    assert_eq!(status, 200, "{body}");

    // A co-host may not remove the host, but may remove a guest: everyone sees quinn leave.
    let (status, _) = api
        .call(
            Method::DELETE,
            "/v1/rooms/standup/participants/hanna",
            &cora_token,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = api
        .call(
            Method::DELETE,
            "/v1/rooms/standup/participants/quinn",
            &cora_token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait(&mut olga, "quinn removed", |e| {
        e["event"] == "participant_disconnected" && e["identity"] == "quinn"
    })
    .await;

    // Hanna hands the meeting to pete: she is co-host now and may give no more roles, he may.
    let (status, body) = api
        .put(
            "/v1/rooms/standup/participants/pete/role",
            &hanna_token,
            json!({"role": "host"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ev = wait(&mut olga, "the new roles", |e| {
        e["event"] == "room_metadata_changed"
            && e["metadata"]
                .as_str()
                .unwrap_or("")
                .contains("\"pete\":\"host\"")
    })
    .await;
    let metadata: Value = serde_json::from_str(ev["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(
        metadata["meeting.roles"],
        json!({"hanna": "co-host", "cora": "co-host", "pete": "host", "quinn": "guest"})
    );
    let (status, _) = api
        .put(
            "/v1/rooms/standup/participants/olga/role",
            &hanna_token,
            json!({"role": "co-host"}),
        )
        .await;
    assert_eq!(status, 403, "no longer host");
    let (status, body) = api
        .put(
            "/v1/rooms/standup/participants/olga/role",
            &pete_token,
            json!({"role": "co-host"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Locked: the others see it, and the API mints no token for the room until unlocked.
    let (status, body) = api
        .put(
            "/v1/rooms/standup/lock",
            &cora_token,
            json!({"locked": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait(&mut olga, "the meeting locked", |e| {
        e["event"] == "room_metadata_changed"
            && e["metadata"]
                .as_str()
                .unwrap_or("")
                .contains("\"meeting.locked\":true")
    })
    .await;
    assert_eq!(api.mint(ROOM, "late-larry", "participant").await.0, 423);
    let (status, _) = api
        .put(
            "/v1/rooms/standup/lock",
            &pete_token,
            json!({"locked": false}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.mint(ROOM, "late-larry", "participant").await.0, 200);

    // The audit log has every action, refusals too, newest first; participants may not read it.
    let (status, body) = api
        .call(Method::GET, "/v1/rooms/standup/audit", ADMIN_KEY, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let actions: Vec<(String, String, String)> = body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["actor"].as_str().unwrap().to_string(),
                a["action"].as_str().unwrap().to_string(),
                a["result"].as_str().unwrap().chars().take(3).collect(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, result: &str| {
        actions
            .iter()
            .any(|a| a.0 == actor && a.1 == action && a.2 == result)
    };
    assert!(has("pete", "mute-all", "403"), "{actions:?}");
    assert!(has("hanna", "mute-all-keep", "ok"), "{actions:?}");
    assert!(has("cora", "remove", "403"), "{actions:?}");
    assert!(has("cora", "remove", "ok"), "{actions:?}");
    assert!(has("hanna", "role:host", "ok"), "{actions:?}");
    assert!(
        has("cora", "lock", "ok") && has("pete", "unlock", "ok"),
        "{actions:?}"
    );
    assert_eq!(actions[0].1, "unlock", "newest first");
    let (status, _) = api
        .call(Method::GET, "/v1/rooms/standup/audit", &olga_token, None)
        .await;
    assert_eq!(status, 200, "olga is co-host now");
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/rooms/standup/audit",
            other_room_token,
            None,
        )
        .await;
    assert_eq!(status, 403);

    // The meeting's export has them as notes, timed from its start.
    let meeting = meeting_agent::store::Meeting::new(ROOM, started_ms);
    let root = meeting.root_message("meeting-agent", "Meeting in standup".into());
    api.store.open_meeting(&meeting, &root).await.unwrap();
    let (status, text) = {
        let res = api
            .client
            .get(format!(
                "{}/v1/meetings/{}/transcript?format=txt",
                api.url, meeting.id
            ))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("* meeting control: hanna mute-all-keep (ok)")
            && text.contains("* meeting control: cora remove quinn (ok)"),
        "{text}"
    );

    for p in [olga, pete, hanna, cora, quinn] {
        p.stop().await;
    }
    std::fs::remove_dir_all(&api.dir).ok();
}

/// The waiting room with the agent in the meeting: who has no rule admitting them waits without
/// rights while the host is told (the agent's data message) and sees since when; a host admits
/// (they start receiving the meeting) or denies (they are gone); the capacity makes the next one
/// wait. A locked meeting keeps out a token minted elsewhere: the agent sends its holder to the
/// waiting room, or removes them when there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_room_admits_and_denies_and_a_locked_meeting_stays_closed() {
    use reqwest::Method;
    crate::common::init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = ControlApi::start(&server).await;
    let service = meeting_agent::livekit::room_service::RoomService::new(
        &server.ws_url(),
        &server.api_key,
        &server.api_secret,
    );
    let session = meeting_agent::features::FeatureSet::default()
        .with_meeting_controls(service)
        .session();
    let config = crate::common::config_for(&server, "");
    let _agent = crate::common::start_worker_with(
        config,
        std::sync::Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;

    let waiting_room = "/v1/rooms/standup/waiting-room";
    let settings = |enabled: bool| {
        json!({"enabled": enabled, "message": "The host will let you in shortly.", "capacity": 3,
               "auto_admit_domains": ["example.com"]})
    };
    let hanna_token = api.token("hanna", "host").await;
    let (status, body) = api.put(waiting_room, ADMIN_KEY, settings(true)).await;
    assert_eq!(status, 200, "{body}");
    let mut hanna = PythonParticipant::spawn(
        &server,
        ROOM,
        "hanna",
        &[
            "--token",
            &hanna_token,
            "--video",
            "none",
            "--wait-for-agent",
            "30",
        ],
    )
    .unwrap();
    wait(&mut hanna, "the agent", |e| e["event"] == "agent_present").await;

    // Nobody vouches for the visitor: a token without rights, marked waiting.
    let (status, minted) = api.mint(ROOM, "visitor", "participant").await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["waiting"], true);
    assert_eq!(
        minted["waiting_message"],
        "The host will let you in shortly."
    );
    let mut visitor = join(&server, "visitor", minted["token"].as_str().unwrap(), false);
    let notice = wait(&mut hanna, "the agent's notice", |e| {
        e["event"] == "data_received" && e["topic"] == "meeting.waiting_room"
    })
    .await;
    let notice: Value = serde_json::from_str(notice["payload"].as_str().unwrap()).unwrap();
    assert_eq!(notice["joined"], "visitor");
    assert_eq!(notice["waiting"][0]["identity"], "visitor");
    assert!(
        visitor
            .wait_for(Duration::from_secs(3), |e| e["event"] == "track_subscribed")
            .await
            .is_none(),
        "who waits receives nothing of the meeting"
    );
    let (status, listed) = api
        .call(Method::GET, "/v1/rooms/standup/waiting", &hanna_token, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["waiting"][0]["identity"], "visitor");
    let since = listed["waiting"][0]["since_ms"].as_i64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now_ms - 60_000..=now_ms).contains(&since),
        "{since} vs {now_ms}"
    );

    // An address of an admitted domain goes straight in.
    let (status, minted) = api.mint(ROOM, "ann@example.com", "participant").await;
    assert_eq!(status, 200);
    assert_eq!(minted["waiting"], false);
    let mut ann = join(
        &server,
        "ann@example.com",
        minted["token"].as_str().unwrap(),
        false,
    );
    wait(&mut ann, "hanna's microphone", |e| {
        e["event"] == "track_subscribed" && e["identity"] == "hanna"
    })
    .await;

    // Admitted, the visitor receives the meeting.
    let (status, body) = api
        .post("/v1/rooms/standup/waiting/visitor/admit", &hanna_token)
        .await;
    assert_eq!(status, 200, "{body}");
    wait(&mut visitor, "hanna's microphone once admitted", |e| {
        e["event"] == "track_subscribed" && e["identity"] == "hanna"
    })
    .await;
    assert_eq!(
        api.post("/v1/rooms/standup/waiting/visitor/admit", &hanna_token)
            .await
            .0,
        409,
        "admitted already"
    );

    // Denied, mallory is gone.
    let (_, minted) = api.mint(ROOM, "mallory", "participant").await;
    assert_eq!(minted["waiting"], true);
    let mallory = join(&server, "mallory", minted["token"].as_str().unwrap(), false);
    wait(&mut hanna, "mallory waiting", |e| {
        e["event"] == "data_received" && e["payload"].as_str().unwrap_or("").contains("mallory")
    })
    .await;
    let (status, body) = api
        .post("/v1/rooms/standup/waiting/mallory/deny", &hanna_token)
        .await;
    assert_eq!(status, 200, "{body}");
    wait(&mut hanna, "mallory gone", |e| {
        e["event"] == "participant_disconnected" && e["identity"] == "mallory"
    })
    .await;

    // Full (hanna, ann, visitor: capacity 3): even an admitted domain waits now.
    let (_, minted) = api.mint(ROOM, "bob@example.com", "participant").await;
    assert_eq!(minted["waiting"], true, "{minted}");

    // Locked, with the waiting room on: a token signed elsewhere lands in the waiting room.
    let lock = |locked: bool| {
        api.put(
            "/v1/rooms/standup/lock",
            &hanna_token,
            json!({ "locked": locked }),
        )
    };
    assert_eq!(lock(true).await.0, 200);
    wait(&mut hanna, "the lock", |e| {
        e["event"] == "room_metadata_changed"
            && e["metadata"]
                .as_str()
                .unwrap_or("")
                .contains("\"meeting.locked\":true")
    })
    .await;
    let outsider = PythonParticipant::spawn(
        &server,
        ROOM,
        "outsider",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    wait(&mut hanna, "the outsider sent to the waiting room", |e| {
        e["event"] == "participant_attributes_changed"
            && e["identity"] == "outsider"
            && e["changed"]["meeting.waiting"] == "true"
    })
    .await;
    // Without a waiting room, one is removed.
    let (status, _) = api.put(waiting_room, &hanna_token, settings(false)).await;
    assert_eq!(status, 200);
    let intruder = PythonParticipant::spawn(
        &server,
        ROOM,
        "intruder",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    wait(&mut hanna, "the intruder removed", |e| {
        e["event"] == "participant_disconnected" && e["identity"] == "intruder"
    })
    .await;
    // Who was in before the lock stays.
    assert!(
        ann.wait_for(Duration::from_secs(1), |e| e["event"] == "disconnected")
            .await
            .is_none()
    );

    for p in [hanna, visitor, ann, mallory, outsider, intruder] {
        p.stop().await;
    }
    std::fs::remove_dir_all(&api.dir).ok();
}

/// Breakout rooms on a LiveKit server without MoveParticipant: four participants (clients that
/// follow a move, as the platform's web client does) are spread over two breakouts, the agent is
/// dispatched into each, one is moved by hand, a broadcast and the timer's warning reach every
/// breakout, and when the timer ends everyone is back in the main room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakouts_spread_the_meeting_and_the_timer_brings_everyone_back() {
    crate::common::init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let api = ControlApi::start(&server).await;
    // The agent keeps each room's meeting thread in the API's store.
    let options = meeting_agent::features::meeting_log::MeetingLogOptions {
        bot_user: "meeting-agent".into(),
        flush_timeout: Duration::from_secs(10),
        llm: None,
        events: None,
        email: Default::default(),
    };
    let session = meeting_agent::features::FeatureSet::default()
        .with_store(api.store.clone(), options)
        .session();
    let _agent = crate::common::start_worker_with(
        crate::common::config_for(&server, ""),
        std::sync::Arc::new(session.clone()),
        session.subscribe(),
    )
    .await;
    let hanna_token = api.token("hanna", "host").await;
    let mut hanna = PythonParticipant::spawn(
        &server,
        ROOM,
        "hanna",
        &["--token", &hanna_token, "--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    wait(&mut hanna, "its connection", |e| e["event"] == "connected").await;
    let mut people = Vec::new();
    for i in 0..4 {
        let identity = format!("p{i}");
        let token = api.token(&identity, "participant").await;
        let mut p = PythonParticipant::spawn_script(
            &server,
            "breakout_client.py",
            &identity,
            &["--token", &token],
        )
        .unwrap();
        wait(&mut p, "its connection", |e| {
            e["event"] == "connected" && e["room"] == ROOM
        })
        .await;
        people.push(p);
    }

    // Malformed or unbounded requests change nothing.
    for (path, body) in [
        ("/v1/rooms/standup/breakouts", json!({"count": 0})),
        ("/v1/rooms/standup/breakouts", json!({"count": 17})),
        (
            "/v1/rooms/standup/breakouts",
            json!({"count": 2, "assignments": {"p0": 3}}),
        ),
        (
            "/v1/rooms/standup/breakouts",
            json!({"count": 2, "assignments": {"a/b": 1}}),
        ),
        (
            "/v1/rooms/standup/breakouts",
            json!({"count": 2, "duration_secs": 0}),
        ),
        (
            "/v1/rooms/standup/breakouts",
            json!({"count": 2, "duration_secs": 86_400}),
        ),
        (
            "/v1/rooms/standup/breakouts/broadcast",
            json!({"message": ""}),
        ),
    ] {
        let (status, answer) = api
            .call(
                reqwest::Method::POST,
                path,
                &hanna_token,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    let opened = Instant::now();
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/rooms/standup/breakouts",
            &hanna_token,
            Some(json!({"count": 2, "spread": "even", "duration_secs": 14, "warning_secs": 5})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rooms"],
        json!(["standup--breakout-1", "standup--breakout-2"])
    );
    let assigned: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(body["assignments"].clone()).unwrap();
    assert_eq!(assigned.len(), 4, "everyone but the host: {body}");
    assert_eq!(
        assigned.values().filter(|&&n| n == 1).count(),
        2,
        "evenly: {body}"
    );
    for p in people.iter_mut() {
        let room = format!("standup--breakout-{}", assigned[&p.identity]);
        wait(p, "its breakout", |e| {
            e["event"] == "connected" && e["room"] == room.as_str()
        })
        .await;
    }
    println!(
        "breakout_move_all_s: {:.2} s for 4 participants into 2 breakouts",
        opened.elapsed().as_secs_f64()
    );
    // The agent is dispatched into each breakout.
    for p in people.iter_mut() {
        wait(p, "the agent in its breakout", |e| {
            e["event"] == "participant_connected" && e["kind"] == "agent"
        })
        .await;
    }
    let (status, listed) = api
        .call(
            reqwest::Method::GET,
            "/v1/rooms/standup/breakouts",
            &hanna_token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let present: usize = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["present"].as_array().unwrap().len())
        .sum();
    assert_eq!(present, 4, "{listed}");

    // One moved by hand to the other breakout.
    let (p0_to, p0) = (3 - assigned["p0"], &mut people[0]);
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/rooms/standup/breakouts/move",
            &hanna_token,
            Some(json!({"identity": "p0", "to": p0_to})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = format!("standup--breakout-{p0_to}");
    wait(p0, "the other breakout", |e| {
        e["event"] == "connected" && e["room"] == room.as_str()
    })
    .await;

    // A broadcast, then the timer's warning, reach every breakout. A data message reaches who is
    // in the room with a data channel open: p0, just moved, may not have it yet, so a
    // participant who missed the broadcast gets it sent again (at most twice).
    let broadcast = || {
        api.call(
            reqwest::Method::POST,
            "/v1/rooms/standup/breakouts/broadcast",
            &hanna_token,
            Some(json!({"message": "Two minutes left"})),
        )
    };
    let (status, body) = broadcast().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rooms_reached"], 2);
    let is_broadcast = |e: &Value| {
        e["event"] == "data_received"
            && e["topic"] == "meeting.broadcast"
            && e["payload"]
                .as_str()
                .unwrap_or("")
                .contains("Two minutes left")
    };
    for p in people.iter_mut() {
        let mut heard = false;
        for _ in 0..3 {
            if p.wait_for(Duration::from_secs(4), is_broadcast)
                .await
                .is_some()
            {
                heard = true;
                break;
            }
            assert_eq!(broadcast().await.0, 200);
        }
        assert!(heard, "{} did not hear the broadcast", p.identity);
    }
    for p in people.iter_mut() {
        wait(p, "the timer's warning", |e| {
            e["event"] == "data_received"
                && e["payload"]
                    .as_str()
                    .unwrap_or("")
                    .contains("closes_in_secs")
        })
        .await;
    }
    // The timer ends them: everyone is back in the main room, and the host sees them.
    for p in people.iter_mut() {
        wait(p, "the main room again", |e| {
            e["event"] == "connected" && e["room"] == ROOM
        })
        .await;
    }
    let (_, listed) = api
        .call(
            reqwest::Method::GET,
            "/v1/rooms/standup/breakouts",
            &hanna_token,
            None,
        )
        .await;
    assert_eq!(listed["rooms"], json!([]));
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "/v1/rooms/standup/breakouts",
            &hanna_token,
            None,
        )
        .await;
    assert_eq!(status, 409, "nothing left to close");

    // Each breakout's meeting ends as its room closes; the main meeting's thread links them and
    // its summary has theirs.
    let ended = |room: String| {
        let store = api.store.clone();
        async move {
            for _ in 0..120 {
                if let Some(m) = store
                    .meetings(Some(&room))
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|m| m.ended_at_ms.is_some())
                {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("the meeting in {room} did not end");
        }
    };
    for n in 1..=2 {
        ended(format!("standup--breakout-{n}")).await;
    }
    for p in people {
        p.stop().await;
    }
    hanna.stop().await;
    server
        .room_service("DeleteRoom", &json!({"room": ROOM}))
        .await
        .unwrap();
    let main = ended(ROOM.to_string()).await;
    let thread = api.store.thread(&main.id).await.unwrap();
    let links: Vec<&str> = thread
        .iter()
        .filter(|m| m.kind == "breakout")
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    for n in 1..=2 {
        let prefix = format!("Breakout room standup--breakout-{n}: ");
        assert!(links.iter().any(|l| l.starts_with(&prefix)), "{links:?}");
    }
    let summary: String = thread
        .iter()
        .filter(|m| m.kind == "summary")
        .map(|m| m.text.as_str())
        .collect();
    assert!(
        summary.contains("\nBreakout rooms\n- standup--breakout-1 (thread ")
            && summary.contains("- standup--breakout-2 (thread "),
        "{summary}"
    );
    std::fs::remove_dir_all(&api.dir).ok();
}
