//! The retention job: deletes what is past its time (meeting transcripts, voice and video
//! messages' results and posters, a room's recordings where its own limit is stricter than
//! `recording.retention_days`), idempotently, and writes each deletion in the audit log (room
//! `*` for media messages, which belong to no room). A dry run only counts.

use std::path::Path;

use serde::Serialize;

use crate::config::RetentionConfig;
use crate::features::recording::Recorder;
use crate::recording::s3::S3Store;
use crate::store::{AuditEntry, Store, StoreError};

const DAY_MS: i64 = 86_400_000;
/// The audit log's actor for retention deletions.
pub const ACTOR: &str = "retention";

/// What a pass deleted (or, dry, would delete).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub dry_run: bool,
    /// Meetings whose transcript went.
    pub transcripts: usize,
    pub segments: u64,
    pub transcript_messages: u64,
    /// Call-quality samples, which go with the transcript (engagement figures stay, as the
    /// summary's speaking times do).
    pub quality_samples: u64,
    pub media_jobs: usize,
    pub posters: usize,
    pub recordings: usize,
}

/// Where media derivatives live, to delete them with their job.
pub struct MediaStorage<'a> {
    pub dir: &'a Path,
    pub s3: Option<&'a S3Store>,
}

/// One pass now, with the configuration's policy, media folder and bucket.
pub async fn run_configured(
    config: &crate::config::Config,
    store: &Store,
    recorder: Option<&Recorder>,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let dir = config.media_dir();
    let s3 = crate::media_messages::attachments_bucket(config);
    let media = MediaStorage {
        dir: &dir,
        s3: s3.as_deref(),
    };
    let now = crate::captions::journal::unix_ms() as i64;
    run(store, recorder, &media, &config.retention, now, dry_run).await
}

/// One pass at `now_ms`.
pub async fn run(
    store: &Store,
    recorder: Option<&Recorder>,
    media: &MediaStorage<'_>,
    policy: &RetentionConfig,
    now_ms: i64,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let mut report = Report {
        dry_run,
        ..Default::default()
    };
    let audit = |room: &str, action: &str, target: String, result: String| AuditEntry {
        room: room.to_string(),
        at_ms: now_ms,
        actor: ACTOR.into(),
        action: action.into(),
        target: Some(target),
        result,
    };
    // Meeting transcripts.
    for meeting in store.meetings(None).await? {
        let days = policy
            .rooms
            .get(&meeting.room)
            .and_then(|r| r.transcripts_days)
            .unwrap_or(policy.transcripts_days);
        let Some(ended) = meeting.ended_at_ms else {
            continue;
        };
        if days == 0 || ended >= now_ms - days as i64 * DAY_MS {
            continue;
        }
        let (segments, messages, samples) = if dry_run {
            let (segments, messages) = store.transcript_size(&meeting.id).await?;
            (
                segments,
                messages,
                store.quality_sample_count(&meeting.id).await?,
            )
        } else {
            let (segments, messages) = store.delete_transcript(&meeting.id).await?;
            (
                segments,
                messages,
                store.delete_quality_samples(&meeting.id).await?,
            )
        };
        if segments + messages + samples == 0 {
            continue;
        }
        report.transcripts += 1;
        report.segments += segments;
        report.transcript_messages += messages;
        report.quality_samples += samples;
        if !dry_run {
            let result = format!(
                "ok: {segments} segments, {messages} messages, {samples} call-quality samples ({days} days)"
            );
            store
                .add_audit(&audit(
                    &meeting.room,
                    "delete-transcript",
                    meeting.id.clone(),
                    result,
                ))
                .await?;
        }
    }
    // Voice and video messages.
    if policy.media_days > 0 {
        let cutoff = now_ms - policy.media_days as i64 * DAY_MS;
        for job in store.media_jobs_finished_before(cutoff).await? {
            report.media_jobs += 1;
            let poster = job
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                .and_then(|r| r["poster"].as_str().map(str::to_string));
            if poster.is_some() {
                report.posters += 1;
            }
            if dry_run {
                continue;
            }
            if let Some(poster) = &poster {
                delete_derivative(media, poster).await;
            }
            store.delete_media_job(&job.message_id).await?;
            let result = format!("ok ({} days)", policy.media_days);
            store
                .add_audit(&audit("*", "delete-media-message", job.message_id, result))
                .await?;
        }
    }
    // Rooms whose recordings go sooner than every room's.
    if let Some(recorder) = recorder {
        for (room, retention) in &policy.rooms {
            let Some(days) = retention.recordings_days.filter(|&d| d > 0) else {
                continue;
            };
            let cutoff = now_ms - days as i64 * DAY_MS;
            let listed = match recorder.storage.list().await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: cannot list recordings");
                    break;
                }
            };
            for meta in listed
                .into_iter()
                .filter(|m| &m.room == room && m.started_unix_ms < cutoff)
            {
                report.recordings += 1;
                if dry_run {
                    continue;
                }
                let result = match recorder.delete(&meta).await {
                    Ok(()) => format!("ok ({days} days)"),
                    Err(e) => format!("failed: {e}"),
                };
                store
                    .add_audit(&audit(room, "delete-recording", meta.id.clone(), result))
                    .await?;
            }
        }
    }
    if report
        != (Report {
            dry_run,
            ..Default::default()
        })
    {
        tracing::info!(?report, "retention pass");
    }
    Ok(report)
}

/// Deletes a poster named by its source (`file:` under the media folder, or `s3:`).
async fn delete_derivative(media: &MediaStorage<'_>, source: &str) {
    if let Some(relative) = source.strip_prefix("file:") {
        if let Ok(path) = crate::media_messages::worker::inside(media.dir, relative) {
            let _ = std::fs::remove_file(path);
        }
    } else if let (Some(key), Some(s3)) = (source.strip_prefix("s3:"), media.s3)
        && let Err(e) = s3.delete_object(key).await
    {
        tracing::warn!(error = %e, key, "retention: cannot delete a poster");
    }
}
