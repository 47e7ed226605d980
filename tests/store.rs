//! The messaging store against real databases: SQLite (a file) and PostgreSQL (a throwaway
//! cluster started here). Threads, idempotent writes, verbatim text, search, long messages,
//! and a meeting whose database goes away and comes back.

use std::time::Duration;

use meeting_agent::devtools::LocalPostgres;
use meeting_agent::session::meeting_log::{MeetingLog, MeetingLogOptions};
use meeting_agent::store::{
    MAX_MESSAGE_CHARS, Meeting, Message, SearchQuery, Segment, Store, split_message,
};

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

#[tokio::test]
async fn sqlite_keeps_threads_and_segments_and_finds_them() {
    let dir = std::env::temp_dir().join(format!("store-sqlite-{}", std::process::id()));
    let url = format!("sqlite:{}", dir.join("meeting-agent.db").display());
    exercise(&Store::connect(&url).await.unwrap()).await;
    // Reopening migrates nothing twice and keeps the data.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.meetings(None).await.unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn postgres_keeps_threads_and_segments_and_finds_them() {
    let pg = LocalPostgres::start().unwrap();
    exercise(&Store::connect(&pg.url()).await.unwrap()).await;
    let again = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(again.meetings(None).await.unwrap().len(), 1);
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
