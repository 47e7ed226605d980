//! The messaging store against real databases: SQLite (a file) and PostgreSQL (a throwaway
//! cluster started here). Threads, idempotent writes, verbatim text, search, long messages,
//! and a meeting whose database goes away and comes back.

use std::time::Duration;

use meeting_agent::features::meeting_log::{MeetingLog, MeetingLogOptions};
use meeting_agent::store::{
    MAX_MESSAGE_CHARS, Meeting, Message, SearchQuery, Segment, Store, split_message,
};
use meeting_agent_devtools::LocalPostgres;

fn segment(key: &str, speaker: &str, text: &str, start_ms: i64) -> Segment {
    Segment {
        key: key.into(),
        speaker: speaker.into(),
        text: text.into(),
        start_ms,
        end_ms: start_ms + 2_500,
    }
}

const ODD: &str = "Robert'); DROP TABLE messages;-- \"quoted\" 100% _under_ \\ back ünïcødé 日本語 🎉 \u{200b}zero-width";

fn message(meeting: &Meeting, id: &str, kind: &str, text: &str) -> Message {
    Message {
        id: format!("{}/{id}", meeting.id),
        conversation_id: meeting.id.clone(),
        sender_id: "meeting-agent".into(),
        recipient_id: None,
        reply_to: Some(meeting.thread_id.clone()),
        kind: kind.into(),
        text: text.into(),
        created_at_ms: meeting.started_at_ms + 1_000,
    }
}

async fn exercise(store: &Store) {
    // Running the migrations again changes nothing.
    let meeting = Meeting::new("board-room", 1_764_000_000_000);
    let root = meeting.root_message("meeting-agent", "Meeting in board-room started".into());
    store.open_meeting(&meeting, &root).await.unwrap();
    store.open_meeting(&meeting, &root).await.unwrap();
    let segments = vec![
        segment(
            "SG_1",
            "sam",
            "Please send the budget to the finance team by Friday.",
            5_000,
        ),
        segment(
            "SG_2",
            "ann",
            "We will launch the new product in March.",
            12_000,
        ),
        segment("SG_3", "sam", ODD, 20_000),
    ];
    // A retried write stores nothing twice.
    store.add_segments(&meeting, &segments).await.unwrap();
    store.add_segments(&meeting, &segments[1..]).await.unwrap();
    assert_eq!(
        store.segments(&meeting.id).await.unwrap(),
        segments,
        "stored verbatim, once"
    );

    let long: String = (0..400)
        .map(|i| format!("[0:{i:02}] sam: sentence number {i} of a long transcript\n"))
        .collect();
    let parts = split_message(&long, MAX_MESSAGE_CHARS);
    assert!(parts.len() > 1);
    let mut messages: Vec<Message> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| message(&meeting, &format!("transcript/0/{i}"), "transcript", p))
        .collect();
    messages.push(message(&meeting, "chat", "chat", ODD));
    store.post(&messages).await.unwrap();
    store.post(&messages).await.unwrap();
    let thread = store.thread(&meeting.id).await.unwrap();
    assert_eq!(thread.len(), 1 + messages.len(), "{thread:#?}");
    assert_eq!(thread[0].kind, "meeting");
    let transcript: String = thread
        .iter()
        .filter(|m| m.kind == "transcript")
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(transcript, long, "split, not truncated");
    assert!(
        thread.iter().any(|m| m.text == ODD),
        "odd text stored verbatim"
    );

    // Search: the phrase, its speaker and time, highlighted.
    let hits = store
        .search(&SearchQuery {
            text: "budget finance".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let hit = hits.first().expect("a hit");
    assert_eq!(
        (
            hit.kind.as_str(),
            hit.speaker.as_str(),
            hit.offset_ms,
            hit.at_ms
        ),
        (
            "transcript",
            "sam",
            Some(5_000),
            meeting.started_at_ms + 5_000
        )
    );
    assert_eq!(hit.room.as_deref(), Some("board-room"));
    assert!(hit.snippet.contains("[budget]"), "{}", hit.snippet);
    // Stemmed: "launching" finds "launch".
    let launch = store
        .search(&SearchQuery {
            text: "launching".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(launch[0].speaker, "ann");
    // Filters.
    for (query, expected) in [
        (
            SearchQuery {
                text: "budget".into(),
                speaker: Some("ann".into()),
                ..Default::default()
            },
            0,
        ),
        (
            SearchQuery {
                text: "budget".into(),
                room: Some("other".into()),
                ..Default::default()
            },
            0,
        ),
        (
            SearchQuery {
                text: "budget".into(),
                since_ms: Some(meeting.started_at_ms + 6_000),
                ..Default::default()
            },
            0,
        ),
        (
            SearchQuery {
                text: "budget".into(),
                until_ms: Some(meeting.started_at_ms + 6_000),
                room: Some("board-room".into()),
                ..Default::default()
            },
            1,
        ),
    ] {
        assert_eq!(
            store.search(&query).await.unwrap().len(),
            expected,
            "{query:?}"
        );
    }
    // Metacharacters in a query are words, not syntax; chat messages are searched too.
    let odd = store
        .search(&SearchQuery {
            text: "Robert'); DROP TABLE".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(odd.iter().any(|h| h.kind == "chat"), "{odd:#?}");
    assert!(odd.iter().any(|h| h.kind == "transcript"), "{odd:#?}");
    assert!(
        store
            .search(&SearchQuery {
                text: ";;".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    store
        .end_meeting(&meeting.id, meeting.started_at_ms + 60_000)
        .await
        .unwrap();
    let meetings = store.meetings(Some("board-room")).await.unwrap();
    assert_eq!(
        meetings[0].ended_at_ms,
        Some(meeting.started_at_ms + 60_000)
    );
}

/// Search returns meeting threads only (never a direct message or another conversation of the
/// platform's `messages` table); segment keys survive a non-ASCII room name; `room_finished`
/// closes one room instance's meetings; webhook ids are remembered for a day.
async fn scoped_search_room_instances_and_webhook_ids(store: &Store) {
    let room = "Café Größe 会议";
    let meeting = Meeting::new(room, 1_764_100_000_000).with_room_sid("RM_cafe");
    let root = meeting.root_message("meeting-agent", "Meeting in the café".into());
    store.open_meeting(&meeting, &root).await.unwrap();
    let segments = vec![
        segment("SG_1", "zoë", "The zeppelin lands on Tuesday.", 1_000),
        segment("SG_ü2", "李", "会议 zeppelin follow-up.", 5_000),
    ];
    store.add_segments(&meeting, &segments).await.unwrap();
    assert_eq!(
        store.segments(&meeting.id).await.unwrap(),
        segments,
        "keys cut right after a non-ASCII meeting id"
    );
    let stored = store.meeting(&meeting.id).await.unwrap().unwrap();
    assert_eq!(stored.room_sid.as_deref(), Some("RM_cafe"));

    // The platform's own chat: a direct message in another conversation, and one without a
    // conversation at all (how the platform's table holds them).
    let dm = Message {
        id: "dm-1".into(),
        conversation_id: "dm-ann-bob".into(),
        sender_id: "ann".into(),
        recipient_id: Some("bob".into()),
        reply_to: None,
        kind: "chat".into(),
        text: "The zeppelin salary figures are private.".into(),
        created_at_ms: meeting.started_at_ms + 2_000,
    };
    store.post(&[dm]).await.unwrap();
    match store {
        Store::Sqlite(pool) => {
            sqlx::query("INSERT INTO messages (id, sender_id, recipient_id, text, created_at, kind) VALUES ('dm-2', 'ann', 'bob', 'zeppelin password hunter2', 1764100003000, 'chat')")
                .execute(pool)
                .await
                .unwrap();
        }
        Store::Postgres(pool) => {
            sqlx::query("INSERT INTO messages (id, sender_id, recipient_id, text) VALUES ('dm-2', 'ann', 'bob', 'zeppelin password hunter2')")
                .execute(pool)
                .await
                .unwrap();
        }
    }
    store
        .post(&[message(
            &meeting,
            "chat-z",
            "chat",
            "Is the zeppelin insured?",
        )])
        .await
        .unwrap();
    let hits = store
        .search(&SearchQuery {
            text: "zeppelin".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        hits.len(),
        3,
        "two segments and the thread's chat: {hits:#?}"
    );
    assert!(
        hits.iter()
            .all(|h| h.room.as_deref() == Some(room) && h.conversation == meeting.id),
        "{hits:#?}"
    );
    assert!(
        !hits
            .iter()
            .any(|h| h.snippet.contains("salary") || h.snippet.contains("hunter2")),
        "{hits:#?}"
    );

    // room_finished of instance RM_a: its meeting and an older one without a sid close; a
    // later instance (RM_b) and a later meeting without a sid stay open.
    let t = 1_764_200_000_000;
    let open = |started: i64, sid: &str| {
        let m = Meeting::new("standup", started).with_room_sid(sid);
        let root = m.root_message("meeting-agent", "standup".into());
        async move {
            store.open_meeting(&m, &root).await.unwrap();
            m.id
        }
    };
    let a = open(t, "RM_a").await;
    let b = open(t + 100_000, "RM_b").await;
    let old = open(t - 50_000, "").await;
    let later = open(t + 200_000, "").await;
    let closed = store
        .end_room_meetings("standup", Some("RM_a"), t + 50_000, t + 60_000)
        .await
        .unwrap();
    assert_eq!(closed, 2);
    let ended = |id: String| async move { store.meeting(&id).await.unwrap().unwrap().ended_at_ms };
    assert_eq!(ended(a).await, Some(t + 60_000));
    assert_eq!(ended(old).await, Some(t + 60_000));
    assert_eq!(ended(b).await, None);
    assert_eq!(ended(later).await, None);

    // Webhook ids: once each, for a day.
    let day = 86_400_000;
    let now = 1_764_300_000_000;
    assert!(
        store
            .webhook_event_first_seen("EV_1", now, day)
            .await
            .unwrap()
    );
    assert!(
        !store
            .webhook_event_first_seen("EV_1", now + 1, day)
            .await
            .unwrap()
    );
    store.forget_webhook_event("EV_1").await.unwrap();
    assert!(
        store
            .webhook_event_first_seen("EV_1", now + 2, day)
            .await
            .unwrap()
    );
    // A day later the old id is pruned as a new one arrives.
    assert!(
        store
            .webhook_event_first_seen("EV_2", now + day + 10, day)
            .await
            .unwrap()
    );
    assert!(
        store
            .webhook_event_first_seen("EV_1", now + day + 11, day)
            .await
            .unwrap()
    );
}

/// The audit log of meeting controls: per room, newest first, bounded listings.
async fn audit_log(store: &Store) {
    use meeting_agent::store::AuditEntry;
    let entry = |room: &str, at_ms: i64, action: &str, result: &str| AuditEntry {
        room: room.into(),
        at_ms,
        actor: "ann".into(),
        action: action.into(),
        target: (action != "lock").then(|| "bob".to_string()),
        result: result.into(),
    };
    let written = [
        entry("weekly", 1_000, "mute", "ok"),
        entry(
            "weekly",
            2_000,
            "remove",
            "403: only a host may act on a host",
        ),
        entry("board", 1_500, "lock", "ok"),
        entry("weekly", 2_000, "lock", "ok"),
    ];
    for e in &written {
        store.add_audit(e).await.unwrap();
    }
    let weekly = store.audit("weekly", 10).await.unwrap();
    assert_eq!(
        weekly,
        vec![written[3].clone(), written[1].clone(), written[0].clone()],
        "newest first, the later of a tie first"
    );
    assert_eq!(store.audit("weekly", 1).await.unwrap().len(), 1);
    assert_eq!(
        store.audit("board", 10).await.unwrap(),
        vec![written[2].clone()]
    );
    assert!(store.audit("nowhere", 10).await.unwrap().is_empty());
    // A meeting's exports carry the controls during it, timed from its start.
    let mut meeting = Meeting::new("weekly", 500);
    meeting.ended_at_ms = Some(1_800);
    assert_eq!(
        store.meeting_notes(&meeting).await.unwrap(),
        vec![meeting_agent::captions::export::Note {
            at_ms: 500,
            text: "meeting control: ann mute bob (ok)".into()
        }]
    );
}

/// The media job queue's rules, the same in both databases: one job per message, the oldest due
/// first, a lease that another worker may take over once it runs out (the first worker's late
/// result is then ignored), retries not before their time, failures kept with their reason.
async fn media_queue(store: &Store) {
    use meeting_agent::store::JobStatus;
    assert!(store.enqueue_media("m1", "file:a.ogg", 100).await.unwrap());
    assert!(
        !store
            .enqueue_media("m1", "file:other.ogg", 100)
            .await
            .unwrap(),
        "one job per message"
    );
    assert!(store.enqueue_media("m2", "s3:b.webm", 200).await.unwrap());
    assert!(
        store.claim_media("w1", 50, 1000).await.unwrap().is_none(),
        "nothing due yet"
    );
    let first = store.claim_media("w1", 300, 1000).await.unwrap().unwrap();
    assert_eq!(
        (
            first.message_id.as_str(),
            first.source.as_str(),
            first.attempt
        ),
        ("m1", "file:a.ogg", 1)
    );
    let second = store.claim_media("w2", 300, 1000).await.unwrap().unwrap();
    assert_eq!(second.message_id, "m2");
    assert!(
        store.claim_media("w3", 300, 1000).await.unwrap().is_none(),
        "both held"
    );
    // w1's lease (until 1300) runs out; w3 takes m1 over, and w1's late result changes nothing.
    assert!(store.renew_media_lease("m2", "w2", 5000).await.unwrap());
    let taken = store.claim_media("w3", 1400, 1000).await.unwrap().unwrap();
    assert_eq!((taken.message_id.as_str(), taken.attempt), ("m1", 2));
    assert!(!store.finish_media("m1", "w1", "{}", 1500).await.unwrap());
    assert!(!store.renew_media_lease("m1", "w1", 9000).await.unwrap());
    assert!(
        store
            .finish_media("m1", "w3", r#"{"transcript":"hi"}"#, 1500)
            .await
            .unwrap()
    );
    let done = store.media_job("m1").await.unwrap().unwrap();
    assert_eq!(
        (
            done.status,
            done.claimed_by.as_deref(),
            done.result.as_deref()
        ),
        (JobStatus::Done, Some("w3"), Some(r#"{"transcript":"hi"}"#))
    );
    // A retry waits for its time; a failure for good keeps its reason.
    assert!(
        store
            .fail_media("m2", "w2", "S3 unavailable", Some(3000), 1600)
            .await
            .unwrap()
    );
    assert!(store.claim_media("w1", 2999, 1000).await.unwrap().is_none());
    let again = store.claim_media("w1", 3000, 1000).await.unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.attempt), ("m2", 2));
    assert!(
        store
            .fail_media("m2", "w1", "not a supported format", None, 3100)
            .await
            .unwrap()
    );
    let failed = store.media_job("m2").await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (JobStatus::Failed, Some("not a supported format"))
    );
    assert!(
        store
            .claim_media("w1", 99_999, 1000)
            .await
            .unwrap()
            .is_none(),
        "failed jobs stay failed"
    );
    assert_eq!(
        store
            .media_jobs(Some(JobStatus::Failed))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.media_jobs(None).await.unwrap().len(), 2);
    // A re-run starts it over.
    assert!(store.requeue_media("m2", 4000).await.unwrap());
    assert!(!store.requeue_media("nope", 4000).await.unwrap());
    let rerun = store.claim_media("w1", 4000, 1000).await.unwrap().unwrap();
    assert_eq!((rerun.message_id.as_str(), rerun.attempt), ("m2", 1));
}

/// The outbox's rules, the same on both databases: one delivery at a time per order key, in
/// the order written; a failing endpoint's deliveries wait out its backoff (other endpoints'
/// do not); its first success makes its backlog due; a lost lease is claimed again; a claim
/// that was lost changes nothing; dead letters stay visible.
async fn outbox(store: &Store) {
    use meeting_agent::integrations::{Event, Events};
    use meeting_agent::store::outbox::{DeliveryStatus, EndpointSettings};
    let settings = |rooms: &[&str]| EndpointSettings {
        url: "https://hooks.example.com/in".into(),
        description: String::new(),
        event_types: vec![],
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        enabled: true,
    };
    store
        .add_webhook_endpoint("ep_a", &settings(&[]), "whsec_x", 0)
        .await
        .unwrap();
    store
        .add_webhook_endpoint("ep_b", &settings(&["r2"]), "whsec_y", 0)
        .await
        .unwrap();
    let events = Events::new(
        store.clone(),
        &meeting_agent::config::WebhooksConfig {
            max_pending_per_target: 5,
            ..Default::default()
        },
    );
    let event = |room: &str, n: u32| {
        Event::new(
            "participant.joined",
            Some(room),
            &format!("{room}/{n}"),
            1000 + n as i64,
            serde_json::json!({"n": n}),
        )
    };
    // r1: 3 events for ep_a only; r2: 2 events for both endpoints.
    for n in 0..3 {
        assert_eq!(events.emit(&event("r1", n), 1000).await.unwrap(), 1);
    }
    for n in 0..2 {
        assert_eq!(events.emit(&event("r2", n), 1000).await.unwrap(), 2);
    }
    // The same event again writes nothing.
    assert_eq!(events.emit(&event("r1", 0), 1000).await.unwrap(), 0);
    // One per order key: ep_a/r1, ep_a/r2, ep_b/r2, each its oldest.
    let first = store
        .claim_outbox("w1", 1000, 60_000, 10, false)
        .await
        .unwrap();
    let got: Vec<(String, String)> = first
        .iter()
        .map(|i| (i.target.clone(), i.payload.clone()))
        .collect();
    assert_eq!(first.len(), 3, "{got:?}");
    assert!(
        first
            .iter()
            .all(|i| i.payload.contains("\"n\":0") && i.attempt == 1),
        "{got:?}"
    );
    // Nothing else is due while they are out.
    assert!(
        store
            .claim_outbox("w2", 1000, 60_000, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    // ep_a/r1 delivered: its next is due; ep_a/r2 fails and ep_a is held until 5000.
    let a_r1 = first
        .iter()
        .find(|i| i.target == "ep_a" && i.room.as_deref() == Some("r1"))
        .unwrap();
    let a_r2 = first
        .iter()
        .find(|i| i.target == "ep_a" && i.room.as_deref() == Some("r2"))
        .unwrap();
    let b_r2 = first.iter().find(|i| i.target == "ep_b").unwrap();
    assert!(
        store
            .delivered(a_r1.seq, "w1", Some(200), 1100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delivered(a_r1.seq, "w1", Some(200), 1100)
            .await
            .unwrap(),
        "twice"
    );
    assert_eq!(store.webhook_endpoint_failed("ep_a").await.unwrap(), 1);
    store.hold_webhook_endpoint("ep_a", 5000).await.unwrap();
    assert!(
        store
            .delivery_failed(a_r2.seq, "w1", Some(500), "500", Some(5000), 1100)
            .await
            .unwrap()
    );
    // ep_a is held: nothing of it before 5000, whatever key; ep_b is not (its r2 is out).
    assert!(
        store
            .claim_outbox("w1", 1200, 60_000, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .delivered(b_r2.seq, "w1", Some(204), 1200)
            .await
            .unwrap()
    );
    let next = store
        .claim_outbox("w1", 1300, 60_000, 10, false)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].target.as_str(), next[0].room.as_deref()),
        ("ep_b", Some("r2"))
    );
    assert!(next[0].payload.contains("\"n\":1"));
    // At 5000 ep_a's heads are due again: r1's second, r2's first (attempt 2).
    let held = store
        .claim_outbox("w1", 5000, 60_000, 10, false)
        .await
        .unwrap();
    let ep_a: Vec<_> = held.iter().filter(|i| i.target == "ep_a").collect();
    assert_eq!(ep_a.len(), 2, "{held:?}");
    let retried = ep_a
        .iter()
        .find(|i| i.room.as_deref() == Some("r2"))
        .unwrap();
    assert_eq!(retried.attempt, 2);
    // A success clears ep_a's failures and makes its backlog due at once.
    store.hold_webhook_endpoint("ep_a", 90_000).await.unwrap();
    assert!(
        store
            .delivery_failed(retried.seq, "w1", None, "refused", Some(90_000), 5100)
            .await
            .unwrap()
    );
    let r1_second = ep_a
        .iter()
        .find(|i| i.room.as_deref() == Some("r1"))
        .unwrap();
    assert!(
        store
            .delivered(r1_second.seq, "w1", Some(200), 5200)
            .await
            .unwrap()
    );
    store
        .webhook_endpoint_recovered("ep_a", 5200)
        .await
        .unwrap();
    let endpoint = store.webhook_endpoint("ep_a").await.unwrap().unwrap();
    assert_eq!((endpoint.failures, endpoint.retry_at_ms), (0, 0));
    let after = store
        .claim_outbox("w1", 5300, 60_000, 10, false)
        .await
        .unwrap();
    assert!(after.iter().any(|i| i.seq == retried.seq), "{after:?}");
    // A lease that ran out is claimed again by another worker; the first one's word is void.
    let lost = after.iter().find(|i| i.seq == retried.seq).unwrap();
    let again = store
        .claim_outbox("w2", 5300 + 60_000, 60_000, 10, false)
        .await
        .unwrap();
    assert!(
        again
            .iter()
            .any(|i| i.seq == lost.seq && i.attempt == lost.attempt + 1)
    );
    assert!(
        !store
            .delivered(lost.seq, "w1", Some(200), 70_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .delivery_failed(lost.seq, "w2", Some(410), "gone", None, 70_000)
            .await
            .unwrap()
    );
    let dead = store
        .deliveries(Some("ep_a"), Some(DeliveryStatus::Dead), 100)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].last_status, dead[0].last_error.as_deref()),
        (Some(410), Some("gone"))
    );
    // Sent again on request, as a first attempt.
    assert!(store.redeliver(&dead[0].id, 80_000).await.unwrap());
    assert!(
        !store.redeliver(&dead[0].id, 80_000).await.unwrap(),
        "already pending"
    );
    // The bound: ep_b may have 5 unfinished (one is out already): of 6 more, 2 are written
    // dead.
    for n in 10..16 {
        events.emit(&event("r2", n), 90_000).await.unwrap();
    }
    let full = store
        .deliveries(Some("ep_b"), Some(DeliveryStatus::Dead), 100)
        .await
        .unwrap();
    assert_eq!(full.len(), 2, "{full:?}");
    assert!(
        full.iter()
            .all(|d| d.last_error.as_deref() == Some("outbox full"))
    );
    // Deleting an endpoint dead-letters what it still had.
    assert!(store.delete_webhook_endpoint("ep_b", 95_000).await.unwrap());
    assert!(
        store
            .deliveries(Some("ep_b"), Some(DeliveryStatus::Pending), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.webhook_endpoint("ep_b").await.unwrap().is_none());
    // Pruning forgets finished rows only.
    let before = store.deliveries(None, None, 1000).await.unwrap().len();
    let pruned = store.prune_outbox(i64::MAX).await.unwrap() as usize;
    let left = store.deliveries(None, None, 1000).await.unwrap();
    assert_eq!(before - pruned, left.len());
    assert!(
        left.iter()
            .all(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Sending))
    );
    // An e-mail is claimed only by a dispatcher that can send it.
    let mail = meeting_agent::store::outbox::NewDelivery {
        id: "mail-1".into(),
        event_id: "msg_mail".into(),
        channel: "email",
        target: "bob@example.com".into(),
        event_type: "meeting.follow_up".into(),
        room: Some("r1".into()),
        order_key: "email/mail-1".into(),
        payload: "{}".into(),
        not_before_ms: 100_000,
    };
    assert_eq!(
        store.add_to_outbox(&[(mail, None)], 100_000).await.unwrap(),
        1
    );
    let webhooks_only = store
        .claim_outbox("w3", 100_000, 1000, 100, false)
        .await
        .unwrap();
    assert!(webhooks_only.iter().all(|i| i.channel == "webhook"));
    let with_mail = store
        .claim_outbox("w4", 100_000, 1000, 100, true)
        .await
        .unwrap();
    assert_eq!(with_mail.iter().filter(|i| i.channel == "email").count(), 1);
    // Opt-outs and the platform's addresses.
    store
        .opt_out_email("r1", "bob@example.com", 1)
        .await
        .unwrap();
    store
        .opt_out_email("r1", "bob@example.com", 2)
        .await
        .unwrap();
    assert!(store.opted_out("r1", "bob@example.com").await.unwrap());
    assert!(!store.opted_out("r2", "bob@example.com").await.unwrap());
    store.set_user_email("bob", "b@example.com").await.unwrap();
    store
        .set_user_email("bob", "bob@example.com")
        .await
        .unwrap();
    assert_eq!(
        store.user_email("bob").await.unwrap().as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(store.user_email("eve").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_keeps_threads_and_segments_and_finds_them() {
    let dir = std::env::temp_dir().join(format!("store-sqlite-{}", std::process::id()));
    let url = format!("sqlite:{}", dir.join("meeting-agent.db").display());
    exercise(&Store::connect(&url).await.unwrap()).await;
    // Reopening migrates nothing twice and keeps the data.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.meetings(None).await.unwrap().len(), 1);
    scoped_search_room_instances_and_webhook_ids(&again).await;
    audit_log(&again).await;
    media_queue(&again).await;
    outbox(&again).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn postgres_keeps_threads_and_segments_and_finds_them() {
    let pg = LocalPostgres::start().unwrap();
    exercise(&Store::connect(&pg.url()).await.unwrap()).await;
    let again = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(again.meetings(None).await.unwrap().len(), 1);
    scoped_search_room_instances_and_webhook_ids(&again).await;
    audit_log(&again).await;
    media_queue(&again).await;
    outbox(&again).await;
}

#[tokio::test]
async fn a_bad_store_url_is_refused_clearly() {
    let e = Store::connect("mysql://x").await.unwrap_err().to_string();
    assert!(e.contains("sqlite:PATH or postgres://"), "{e}");
}

/// The database is stopped mid-meeting and started again: every final caption ends up stored
/// once, in the thread once, and the summary follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_meeting_loses_and_duplicates_nothing() {
    let pg = LocalPostgres::start().unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    let meeting = Meeting::new("outage-room", 1_764_000_000_000);
    let (log, task) = MeetingLog::start(
        store.clone(),
        meeting.clone(),
        MeetingLogOptions {
            bot_user: "meeting-agent".into(),
            flush_timeout: Duration::from_secs(30),
            llm: None,
            events: None,
            email: Default::default(),
        },
    );
    log.presence("sam", true);
    log.presence("ann", true);
    let lines = [
        ("sam", "Good morning everyone."),
        ("ann", "Maria will send the budget by Friday."),
        ("sam", "We agreed to launch in March."),
        ("ann", "I'll book the venue for the launch."),
        ("sam", "Please review the contract before Monday."),
        ("ann", "Thanks, that is all for today."),
    ];
    let say = |i: usize| {
        let (speaker, text) = lines[i];
        log.final_caption(segment(&format!("SG_{i}"), speaker, text, i as i64 * 4_000));
    };
    say(0);
    say(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.halt().unwrap();
    say(2);
    say(3);
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.resume().unwrap();
    say(4);
    log.presence("ann", false);
    say(5);
    drop(log);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap();

    let stored = store.segments(&meeting.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(),
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        "every final stored once, in order"
    );
    let thread = store.thread(&meeting.id).await.unwrap();
    let transcript: String = thread
        .iter()
        .filter(|m| m.kind == "transcript")
        .map(|m| format!("{}\n", m.text))
        .collect();
    for (speaker, text) in lines {
        assert_eq!(
            transcript.matches(&format!("{speaker}: {text}")).count(),
            1,
            "{text:?} once in the thread:\n{transcript}"
        );
    }
    assert_eq!(thread[0].kind, "meeting");
    let summary = thread.last().unwrap();
    assert_eq!(summary.kind, "summary", "{thread:#?}");
    assert!(
        summary
            .text
            .contains("Maria: Maria will send the budget by Friday."),
        "{}",
        summary.text
    );
    assert!(
        summary
            .text
            .contains("ann: I'll book the venue for the launch."),
        "{}",
        summary.text
    );
    assert!(summary.text.contains("Speaking time"), "{}", summary.text);
    assert!(
        thread
            .iter()
            .all(|m| m.kind == "meeting"
                || m.reply_to.as_deref() == Some(meeting.thread_id.as_str()))
    );
}
