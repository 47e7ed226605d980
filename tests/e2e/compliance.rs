//! Retention and the compliance export on a real store (SQLite and PostgreSQL) and the local
//! recording storage: a pass deletes exactly what is past its time (per room where a room has
//! its own limit), records each deletion in the audit log, and deletes nothing a second time;
//! a meeting's archive holds its transcript, summary, messages, recordings and audit entries.

use std::collections::BTreeMap;
use std::io::Read;

use meeting_agent::compliance::retention::{self, MediaStorage};
use meeting_agent::config::{Config, RetentionConfig, RoomRetention};
use meeting_agent::features::recording::Recorder;
use meeting_agent::recording::RecordingMeta;
use meeting_agent::store::{AuditEntry, Meeting, Message, Segment, Store};
use meeting_agent_devtools::LocalPostgres;

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_790_000_000_000;

/// An ended meeting of `room`, `days` ago, with a transcript, a summary and a control action.
async fn meeting(store: &Store, room: &str, days: i64, said: &str) -> Meeting {
    let start = NOW - days * DAY - 3_600_000;
    let mut meeting = Meeting::new(room, start);
    store
        .open_meeting(
            &meeting,
            &meeting.root_message("meeting-agent", format!("Meeting in {room}")),
        )
        .await
        .unwrap();
    let segment = Segment {
        key: "SG_1".into(),
        speaker: "sam".into(),
        text: said.into(),
        start_ms: 1_000,
        end_ms: 3_000,
    };
    store.add_segments(&meeting, &[segment]).await.unwrap();
    let sample = meeting_agent::store::quality::QualitySample {
        participant: "sam".into(),
        track_sid: "TR_1".into(),
        kind: "audio".into(),
        source: "microphone".into(),
        seq: 0,
        at_ms: start + 5_000,
        interval_ms: 5_000,
        bytes: 20_000,
        packets: 250,
        packets_lost: 0,
        jitter_us: 2_000,
        frames: 0,
        width: 0,
        height: 0,
        freezes: 0,
        freeze_ms: 0,
        quality: "excellent".into(),
    };
    store
        .add_quality_samples(&meeting.id, room, &[sample])
        .await
        .unwrap();
    let post = |kind: &str, text: &str| Message {
        id: format!("{}/{kind}", meeting.id),
        conversation_id: meeting.id.clone(),
        sender_id: "meeting-agent".into(),
        recipient_id: None,
        reply_to: Some(meeting.thread_id.clone()),
        kind: kind.into(),
        text: text.into(),
        created_at_ms: start + 5_000,
    };
    store
        .post(&[
            post("transcript", &format!("sam: {said}")),
            post("summary", "Summary: budget. Attendance: sam 100%"),
        ])
        .await
        .unwrap();
    store
        .add_audit(&AuditEntry {
            room: room.into(),
            at_ms: start + 2_000,
            actor: "hanna".into(),
            action: "mute-all".into(),
            target: None,
            result: "ok".into(),
        })
        .await
        .unwrap();
    store
        .end_meeting(&meeting.id, start + 3_600_000)
        .await
        .unwrap();
    meeting.ended_at_ms = Some(start + 3_600_000);
    meeting
}

/// A stored recording of `room`, `days` old, as the recorder leaves it: in the local storage,
/// and its metadata in the store.
async fn recording(store: &Store, dir: &std::path::Path, room: &str, days: i64) -> RecordingMeta {
    let meta = RecordingMeta::new(room, NOW - days * DAY - 3_000_000, "grid", "local");
    let file = dir.join(&meta.key);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"not played here").unwrap();
    std::fs::write(
        file.with_extension("json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    store.save_recording(&meta).await.unwrap();
    meta
}

async fn retention_deletes_what_is_due(store: &Store, dir: &std::path::Path) {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let old_weekly = meeting(store, "weekly", 40, "The old budget was approved.").await;
    let board = meeting(store, "board", 10, "Board salaries are confidential.").await;
    let new_weekly = meeting(store, "weekly", 1, "The new budget is ready.").await;
    // Voice messages: one finished 40 days ago (with its poster), one yesterday.
    let media = dir.join("media");
    std::fs::create_dir_all(media.join("derivatives")).unwrap();
    std::fs::write(media.join("derivatives/old-poster.jpg"), b"jpeg").unwrap();
    for (id, days, result) in [
        (
            "old-voice",
            40,
            r#"{"transcript":"old","poster":"file:derivatives/old-poster.jpg"}"#,
        ),
        ("new-voice", 1, r#"{"transcript":"new"}"#),
    ] {
        let at = NOW - days * DAY;
        store.enqueue_media(id, "file:x.ogg", at).await.unwrap();
        store.claim_media("w", at, 1000).await.unwrap().unwrap();
        store.finish_media(id, "w", result, at).await.unwrap();
    }
    let recordings = config.recordings_dir();
    let board_old = recording(store, &recordings, "board", 40).await;
    let board_new = recording(store, &recordings, "board", 1).await;
    let weekly_old = recording(store, &recordings, "weekly", 40).await;
    let weekly_new = recording(store, &recordings, "weekly", 1).await;
    let recorder = Recorder::for_storage(&config)
        .unwrap()
        .with_store(store.clone());

    let policy = RetentionConfig {
        transcripts_days: 30,
        media_days: 30,
        rooms: BTreeMap::from([(
            "board".to_string(),
            RoomRetention {
                transcripts_days: Some(7),
                recordings_days: Some(7),
            },
        )]),
        ..Default::default()
    };
    let storage = MediaStorage {
        dir: &media,
        s3: None,
    };
    let pass = |dry_run| retention::run(store, Some(&recorder), &storage, &policy, NOW, dry_run);
    let dry = pass(true).await.unwrap();
    assert_eq!(
        (
            dry.transcripts,
            dry.segments,
            dry.transcript_messages,
            dry.quality_samples,
            dry.media_jobs,
            dry.posters,
            dry.recordings
        ),
        (2, 2, 2, 2, 1, 1, 1),
        "{dry:?}"
    );
    assert_eq!(
        store.segments(&old_weekly.id).await.unwrap().len(),
        1,
        "a dry run deletes nothing"
    );
    assert!(recordings.join(&board_old.key).exists());

    let done = pass(false).await.unwrap();
    assert_eq!(
        (
            done.transcripts,
            done.segments,
            done.media_jobs,
            done.recordings
        ),
        (2, 2, 1, 1),
        "{done:?}"
    );
    for gone in [&old_weekly, &board] {
        assert!(store.segments(&gone.id).await.unwrap().is_empty());
        assert_eq!(store.quality_sample_count(&gone.id).await.unwrap(), 0);
        let thread = store.thread(&gone.id).await.unwrap();
        assert!(thread.iter().all(|m| m.kind != "transcript"), "{thread:?}");
        assert!(
            thread.iter().any(|m| m.kind == "summary"),
            "the summary stays"
        );
    }
    assert_eq!(
        store.segments(&new_weekly.id).await.unwrap().len(),
        1,
        "not due yet"
    );
    assert!(store.media_job("old-voice").await.unwrap().is_none());
    assert!(
        !media.join("derivatives/old-poster.jpg").exists(),
        "its poster went with it"
    );
    assert!(store.media_job("new-voice").await.unwrap().is_some());
    assert!(
        !recordings.join(&board_old.key).exists(),
        "board keeps recordings 7 days"
    );
    assert!(recordings.join(&board_new.key).exists());
    assert!(
        recordings.join(&weekly_old.key).exists(),
        "weekly follows recording.retention_days (0: kept)"
    );
    // Every deletion is in the audit log, under its room.
    let by_retention = |room: &'static str| async move {
        store
            .audit(room, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.actor == retention::ACTOR)
            .map(|e| (e.action, e.target.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by_retention("weekly").await,
        vec![("delete-transcript".to_string(), old_weekly.id.clone())]
    );
    let mut board_log = by_retention("board").await;
    board_log.sort();
    assert_eq!(
        board_log,
        vec![
            ("delete-recording".to_string(), board_old.id.clone()),
            ("delete-transcript".to_string(), board.id.clone())
        ]
    );
    assert_eq!(
        by_retention("*").await,
        vec![("delete-media-message".to_string(), "old-voice".to_string())]
    );
    // Idempotent: a second pass finds nothing.
    let again = pass(false).await.unwrap();
    assert_eq!(
        (again.transcripts, again.media_jobs, again.recordings),
        (0, 0, 0),
        "{again:?}"
    );

    // The compliance export of the meeting that still has everything.
    let archive =
        meeting_agent::compliance::archive::meeting(store, Some(&recorder), &new_weekly.id)
            .await
            .unwrap()
            .unwrap();
    let mut files = BTreeMap::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().mode().unwrap(), 0o600);
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "audit.json",
            "media.json",
            "meeting.json",
            "messages.json",
            "recordings.json",
            "summary.txt",
            "transcript.json",
            "transcript.vtt"
        ]
    );
    assert!(
        files["transcript.vtt"].contains("<v sam>The new budget is ready."),
        "{}",
        files["transcript.vtt"]
    );
    assert!(
        files["transcript.vtt"].contains("meeting control: hanna mute-all (ok)"),
        "{}",
        files["transcript.vtt"]
    );
    assert!(files["summary.txt"].contains("Attendance"));
    assert!(files["audit.json"].contains("mute-all"));
    assert!(files["messages.json"].contains("Meeting in weekly"));
    // Its recording with a playback link; not the one of 40 days ago.
    let listed: serde_json::Value = serde_json::from_str(&files["recordings.json"]).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["recording"]["id"], weekly_new.id.as_str());
    assert!(
        listed[0]["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("file://")),
        "{listed}"
    );
    assert!(
        meeting_agent::compliance::archive::meeting(store, None, "nope")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sqlite_retention_deletes_what_is_due_and_the_archive_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("compliance-sqlite-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite:{}", dir.join("store.db").display()))
        .await
        .unwrap();
    retention_deletes_what_is_due(&store, &dir).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn postgres_retention_deletes_what_is_due_and_the_archive_keeps_the_rest() {
    let pg = LocalPostgres::start().unwrap();
    let dir = std::env::temp_dir().join(format!("compliance-pg-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    retention_deletes_what_is_due(&store, &dir).await;
    std::fs::remove_dir_all(&dir).ok();
}
