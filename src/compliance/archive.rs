//! The compliance export: everything stored about a meeting, or about a conversation, as one
//! tar archive (files 0600): the meeting, its transcript (WebVTT with the control actions as
//! notes, and JSON), its thread's messages (summary with attendance and speaking time, links,
//! voice and video message transcripts), the media jobs of its messages, its recordings with a
//! playback link, and the audit entries of the room during the meeting.

use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::captions::export::{Format, export_with_notes};
use crate::features::recording::Recorder;
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the archive: {0}")]
    Write(#[from] std::io::Error),
}

/// How long the recordings' links in an archive stay valid.
const LINK_EXPIRY: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

fn json_file<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Files into a tar archive, in order.
fn tar(files: Vec<(&str, Vec<u8>)>, mtime_ms: i64) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = ::tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime((mtime_ms.max(0) / 1000) as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

/// The media jobs of `messages`, as their results (JSON parsed).
async fn media_of(store: &Store, ids: &[String]) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(job) = store.media_job(id).await? {
            let result = job
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok());
            out.push(json!({"message_id": job.message_id, "source": job.source,
                            "status": job.status, "error": job.error, "result": result}));
        }
    }
    Ok(out)
}

/// The archive of meeting `meeting_id`, or `None` when there is no such meeting.
pub async fn meeting(
    store: &Store,
    recorder: Option<&Recorder>,
    meeting_id: &str,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let Some(meeting) = store.meeting(meeting_id).await? else {
        return Ok(None);
    };
    let segments = store.segments(&meeting.id).await?;
    let notes = store.meeting_notes(&meeting).await?;
    let thread = store.thread(&meeting.id).await?;
    let summary: Vec<&str> = thread
        .iter()
        .filter(|m| m.kind == "summary")
        .map(|m| m.text.as_str())
        .collect();
    let ended = meeting.ended_at_ms.unwrap_or(i64::MAX);
    let audit = store
        .audit_between(&meeting.room, meeting.started_at_ms, ended)
        .await?;
    let ids: Vec<String> = thread.iter().map(|m| m.id.clone()).collect();
    let media = media_of(store, &ids).await?;
    let mut recordings = Vec::new();
    for meta in store.recordings(Some(&meeting.room)).await? {
        if !(meeting.started_at_ms - 60_000..=ended).contains(&meta.started_unix_ms) {
            continue;
        }
        let link = match recorder {
            Some(r) => r.storage.link(&meta, LINK_EXPIRY).await.ok(),
            None => None,
        };
        recordings.push(json!({"recording": meta, "link": link,
                               "link_expires_in_secs": link.as_ref().map(|_| LINK_EXPIRY.as_secs())}));
    }
    let files = vec![
        ("meeting.json", json_file(&meeting)),
        (
            "transcript.vtt",
            export_with_notes(&segments, &notes, Format::WebVtt).into_bytes(),
        ),
        ("transcript.json", json_file(&segments)),
        ("summary.txt", summary.join("\n\n").into_bytes()),
        ("messages.json", json_file(&thread)),
        ("media.json", json_file(&media)),
        ("recordings.json", json_file(&recordings)),
        ("audit.json", json_file(&audit)),
    ];
    Ok(Some(tar(
        files,
        meeting.ended_at_ms.unwrap_or(meeting.started_at_ms),
    )?))
}

/// The archive of a conversation (any `conversation_id`: a meeting's thread or the platform's
/// own chats), or `None` when it has no messages.
pub async fn conversation(
    store: &Store,
    conversation_id: &str,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let messages = store.thread(conversation_id).await?;
    if messages.is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let media = media_of(store, &ids).await?;
    let last = messages.last().map_or(0, |m| m.created_at_ms);
    let files = vec![
        (
            "conversation.json",
            json_file(&json!({"conversation_id": conversation_id, "messages": messages.len()})),
        ),
        ("messages.json", json_file(&messages)),
        ("media.json", json_file(&media)),
    ];
    Ok(Some(tar(files, last)?))
}
