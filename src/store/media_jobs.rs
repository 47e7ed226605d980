//! The media job queue: a message with an audio or video attachment becomes one job (keyed by
//! the message, so enqueueing twice is one job). Workers in any number of processes claim jobs
//! one at a time: a claim is a lease (`not_before_ms` moves to the lease's end), so a job whose
//! worker died is claimed again once its lease runs out, and a worker that finishes after losing
//! its lease changes nothing. PostgreSQL skips rows another transaction holds (`FOR UPDATE SKIP
//! LOCKED`) and wakes idle workers with `NOTIFY`; SQLite has one writer at a time, so its
//! claim (one `UPDATE ... RETURNING`) is atomic and idle workers poll.

use serde::Serialize;

use super::{Store, StoreError, exec_both, on_both};

/// The channel PostgreSQL workers `LISTEN` on.
pub const NOTIFY_CHANNEL: &str = "meeting_agent_media_jobs";
/// Most jobs one listing returns.
pub const MAX_LISTED: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// As the database holds it (it writes nothing else).
    fn parse(s: &str) -> Self {
        s.parse().unwrap_or(JobStatus::Queued)
    }
}

impl std::str::FromStr for JobStatus {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(JobStatus::Queued),
            "running" => Ok(JobStatus::Running),
            "done" => Ok(JobStatus::Done),
            "failed" => Ok(JobStatus::Failed),
            _ => Err("status: queued, running, done or failed"),
        }
    }
}

/// A job as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MediaJob {
    /// The message whose attachment this is.
    pub message_id: String,
    /// `s3:<key>` or `file:<path under the media folder>`.
    pub source: String,
    pub status: JobStatus,
    /// Claims so far (the running one included).
    pub attempts: i64,
    /// Queued: not before this (backoff); running: the lease's end (Unix ms).
    pub not_before_ms: i64,
    pub claimed_by: Option<String>,
    /// Why the last attempt failed, in words a user can read.
    pub error: Option<String>,
    /// What the job produced (JSON), once done.
    pub result: Option<String>,
    pub updated_at_ms: i64,
}

/// A claimed job: what the worker needs, and which attempt this is.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub message_id: String,
    pub source: String,
    pub attempt: i64,
}

type JobRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

const COLUMNS: &str =
    "message_id, source, status, attempts, not_before_ms, claimed_by, error, result, updated_at_ms";

fn job(
    (message_id, source, status, attempts, not_before_ms, claimed_by, error, result, updated_at_ms): JobRow,
) -> MediaJob {
    MediaJob {
        message_id,
        source,
        status: JobStatus::parse(&status),
        attempts,
        not_before_ms,
        claimed_by,
        error,
        result,
        updated_at_ms,
    }
}

impl Store {
    /// Queues the attachment of `message_id` (idempotent: a message has one job). True when
    /// it was new.
    pub async fn enqueue_media(
        &self,
        message_id: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let added = exec_both!(
            self,
            "INSERT INTO media_jobs (message_id, source, status, attempts, not_before_ms, updated_at_ms) VALUES (?1, ?2, 'queued', 0, ?3, ?3) ON CONFLICT (message_id) DO NOTHING",
            "INSERT INTO media_jobs (message_id, source, status, attempts, not_before_ms, updated_at_ms) VALUES ($1, $2, 'queued', 0, $3, $3) ON CONFLICT (message_id) DO NOTHING",
            message_id,
            source,
            now_ms,
        )?;
        if added > 0 {
            self.wake_media_workers().await?;
        }
        Ok(added > 0)
    }

    /// Puts a job back in the queue now, whatever its state (a re-run); false when unknown.
    pub async fn requeue_media(&self, message_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE media_jobs SET status = 'queued', attempts = 0, not_before_ms = ?2, claimed_by = NULL, error = NULL, updated_at_ms = ?2 WHERE message_id = ?1",
            "UPDATE media_jobs SET status = 'queued', attempts = 0, not_before_ms = $2, claimed_by = NULL, error = NULL, updated_at_ms = $2 WHERE message_id = $1",
            message_id,
            now_ms,
        )?;
        if changed > 0 {
            self.wake_media_workers().await?;
        }
        Ok(changed > 0)
    }

    async fn wake_media_workers(&self) -> Result<(), StoreError> {
        if let Store::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Claims the job that has waited longest among those due (queued past their backoff, or
    /// running past their lease), for `worker` until `now_ms + lease_ms`.
    pub async fn claim_media(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, StoreError> {
        let row: Option<(String, String, i64)> = on_both!(
            self,
            fetch_optional,
            (String, String, i64),
            "UPDATE media_jobs SET status = 'running', claimed_by = ?1, attempts = attempts + 1, not_before_ms = ?2 + ?3, updated_at_ms = ?2 WHERE message_id = (SELECT message_id FROM media_jobs WHERE status IN ('queued', 'running') AND not_before_ms <= ?2 ORDER BY not_before_ms, message_id LIMIT 1) RETURNING message_id, source, attempts",
            "UPDATE media_jobs SET status = 'running', claimed_by = $1, attempts = attempts + 1, not_before_ms = $2 + $3, updated_at_ms = $2 WHERE message_id = (SELECT message_id FROM media_jobs WHERE status IN ('queued', 'running') AND not_before_ms <= $2 ORDER BY not_before_ms, message_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING message_id, source, attempts",
            worker,
            now_ms,
            lease_ms,
        )?;
        Ok(row.map(|(message_id, source, attempt)| Claim {
            message_id,
            source,
            attempt,
        }))
    }

    /// Records the result of `worker`'s claim; false when the claim was lost (its lease ran
    /// out and another worker has the job), in which case nothing changes.
    pub async fn finish_media(
        &self,
        message_id: &str,
        worker: &str,
        result: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE media_jobs SET status = 'done', result = ?3, error = NULL, updated_at_ms = ?4 WHERE message_id = ?1 AND claimed_by = ?2 AND status = 'running'",
            "UPDATE media_jobs SET status = 'done', result = $3, error = NULL, updated_at_ms = $4 WHERE message_id = $1 AND claimed_by = $2 AND status = 'running'",
            message_id,
            worker,
            result,
            now_ms,
        )?;
        Ok(changed > 0)
    }

    /// Records a failed attempt: queued again from `retry_at_ms`, or failed for good when
    /// `retry_at_ms` is `None`. False when the claim was lost.
    pub async fn fail_media(
        &self,
        message_id: &str,
        worker: &str,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (status, not_before) = match retry_at_ms {
            Some(at) => (JobStatus::Queued, at),
            None => (JobStatus::Failed, now_ms),
        };
        let changed = exec_both!(
            self,
            "UPDATE media_jobs SET status = ?3, error = ?4, not_before_ms = ?5, claimed_by = NULL, updated_at_ms = ?6 WHERE message_id = ?1 AND claimed_by = ?2 AND status = 'running'",
            "UPDATE media_jobs SET status = $3, error = $4, not_before_ms = $5, claimed_by = NULL, updated_at_ms = $6 WHERE message_id = $1 AND claimed_by = $2 AND status = 'running'",
            message_id,
            worker,
            status.as_str(),
            error,
            not_before,
            now_ms,
        )?;
        Ok(changed > 0)
    }

    /// Extends `worker`'s lease on a long job; false when it was lost.
    pub async fn renew_media_lease(
        &self,
        message_id: &str,
        worker: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE media_jobs SET not_before_ms = ?3 WHERE message_id = ?1 AND claimed_by = ?2 AND status = 'running'",
            "UPDATE media_jobs SET not_before_ms = $3 WHERE message_id = $1 AND claimed_by = $2 AND status = 'running'",
            message_id,
            worker,
            until_ms,
        )?;
        Ok(changed > 0)
    }

    pub async fn media_job(&self, message_id: &str) -> Result<Option<MediaJob>, StoreError> {
        let sql_lite = format!("SELECT {COLUMNS} FROM media_jobs WHERE message_id = ?1");
        let sql_pg = format!("SELECT {COLUMNS} FROM media_jobs WHERE message_id = $1");
        let row: Option<JobRow> =
            on_both!(self, fetch_optional, JobRow, &sql_lite, &sql_pg, message_id)?;
        Ok(row.map(job))
    }

    /// Jobs, most recently changed first (at most [`MAX_LISTED`]), of one status or all.
    pub async fn media_jobs(&self, status: Option<JobStatus>) -> Result<Vec<MediaJob>, StoreError> {
        let status = status.map(JobStatus::as_str);
        let sql_lite = format!(
            "SELECT {COLUMNS} FROM media_jobs WHERE ?1 IS NULL OR status = ?1 ORDER BY updated_at_ms DESC, message_id LIMIT ?2"
        );
        let sql_pg = format!(
            "SELECT {COLUMNS} FROM media_jobs WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at_ms DESC, message_id LIMIT $2"
        );
        let rows: Vec<JobRow> = on_both!(
            self, fetch_all, JobRow, &sql_lite, &sql_pg, status, MAX_LISTED
        )?;
        Ok(rows.into_iter().map(job).collect())
    }

    /// Finished jobs (done or failed) last changed before `cutoff_ms`, oldest first (at most
    /// [`MAX_LISTED`] a call).
    pub async fn media_jobs_finished_before(
        &self,
        cutoff_ms: i64,
    ) -> Result<Vec<MediaJob>, StoreError> {
        let sql_lite = format!(
            "SELECT {COLUMNS} FROM media_jobs WHERE status IN ('done', 'failed') AND updated_at_ms < ?1 ORDER BY updated_at_ms LIMIT ?2"
        );
        let sql_pg = format!(
            "SELECT {COLUMNS} FROM media_jobs WHERE status IN ('done', 'failed') AND updated_at_ms < $1 ORDER BY updated_at_ms LIMIT $2"
        );
        let rows: Vec<JobRow> = on_both!(
            self, fetch_all, JobRow, &sql_lite, &sql_pg, cutoff_ms, MAX_LISTED
        )?;
        Ok(rows.into_iter().map(job).collect())
    }

    /// The conversation a message belongs to, if the message exists.
    pub async fn message_conversation(
        &self,
        message_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row: Option<(Option<String>,)> = on_both!(
            self,
            fetch_optional,
            (Option<String>,),
            "SELECT conversation_id FROM messages WHERE id = ?1",
            "SELECT conversation_id FROM messages WHERE id = $1",
            message_id
        )?;
        Ok(row.map(|(c,)| c))
    }
}
