//! The messaging store: meetings, their chat threads (root message, transcript batches, summary)
//! and transcript segments, in SQLite (embedded default) or PostgreSQL (the platform's Supabase
//! database). Every write is idempotent: ids are derived from what is written, and inserts skip
//! rows that exist, so a retried write never duplicates a message.

use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use thiserror::Error;

pub mod analytics;
pub mod audit;
pub mod media_jobs;
pub mod outbox;
pub mod quality;
pub mod recordings;
pub mod redact;
pub mod retention;
pub mod room_leases;
pub mod schema;
pub mod search;

pub use analytics::Usage;
pub use audit::AuditEntry;
pub use media_jobs::{Claim, JobStatus, MediaJob};
pub use quality::{Engagement, QualitySample};
pub use search::{SearchHit, SearchQuery};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported store URL {0:?}: use sqlite:PATH or postgres://USER@HOST:PORT/DB")]
    Url(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e.to_string()),
            other => Self::Query(other.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement on either database: `$sqlite` with `?N` placeholders, `$pg` with
/// `$N`; the arguments are bound in order.
macro_rules! on_both {
    ($store:expr, $method:ident, $row:ty, $sqlite:expr, $pg:expr $(, $arg:expr)* $(,)?) => {
        match $store {
            Store::Sqlite(pool) => sqlx::query_as::<_, $row>($sqlite)$(.bind($arg))*.$method(pool).await,
            Store::Postgres(pool) => sqlx::query_as::<_, $row>($pg)$(.bind($arg))*.$method(pool).await,
        }
    };
}
pub(crate) use on_both;

/// [`on_both`] for statements: the number of rows affected.
macro_rules! exec_both {
    ($store:expr, $sqlite:expr, $pg:expr $(, $arg:expr)* $(,)?) => {
        match $store {
            Store::Sqlite(pool) => sqlx::query($sqlite)$(.bind($arg))*.execute(pool).await.map(|r| r.rows_affected()),
            Store::Postgres(pool) => sqlx::query($pg)$(.bind($arg))*.execute(pool).await.map(|r| r.rows_affected()),
        }
    };
}
pub(crate) use exec_both;

/// Runs the statement once per item in one transaction (all or nothing), binding each with
/// `$bind`; `$sqlite` and `$pg` as in [`on_both`].
macro_rules! insert_each {
    ($store:expr, $items:expr, $sqlite:expr, $pg:expr, |$q:ident, $item:ident| $bind:expr) => {
        match $store {
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for $item in $items {
                    let $q = sqlx::query($sqlite);
                    $bind.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for $item in $items {
                    let $q = sqlx::query($pg);
                    $bind.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
    };
}
pub(crate) use insert_each;

impl Store {
    /// A PostgreSQL listener on `channel` (workers woken by `NOTIFY`); `None` on SQLite, or
    /// when it cannot connect (then the caller polls).
    pub async fn listener(&self, channel: &str) -> Option<sqlx::postgres::PgListener> {
        let Store::Postgres(pool) = self else {
            return None;
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
        listener.listen(channel).await.ok()?;
        Some(listener)
    }
}

/// A meeting: one agent session in one room.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Meeting {
    /// `<room>-<start, Unix ms>`, as the transcript journal is named.
    pub id: String,
    pub room: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// The root message of the meeting's chat thread.
    pub thread_id: String,
    /// LiveKit's sid of the room instance (rooms of the same name get new sids), when known:
    /// `room_finished` closes the meetings of that instance only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_sid: Option<String>,
}

impl Meeting {
    pub fn new(room: &str, started_at_ms: i64) -> Self {
        let id = format!("{room}-{started_at_ms}");
        Self {
            thread_id: format!("{id}/root"),
            id,
            room: room.to_string(),
            started_at_ms,
            ended_at_ms: None,
            room_sid: None,
        }
    }

    /// The meeting of the room instance `sid` (an empty sid is unknown).
    pub fn with_room_sid(mut self, sid: &str) -> Self {
        self.room_sid = (!sid.is_empty()).then(|| sid.to_string());
        self
    }

    /// The message that opens the meeting's thread, posted by `sender` at the meeting's start.
    pub fn root_message(&self, sender: &str, text: String) -> Message {
        Message {
            id: self.thread_id.clone(),
            conversation_id: self.id.clone(),
            sender_id: sender.to_string(),
            recipient_id: None,
            reply_to: None,
            kind: "meeting".into(),
            text,
            created_at_ms: self.started_at_ms,
        }
    }
}

/// One final caption.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Segment {
    /// Unique within the meeting (the caption's segment id).
    pub key: String,
    pub speaker: String,
    pub text: String,
    /// Milliseconds since the meeting started.
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub recipient_id: Option<String>,
    pub reply_to: Option<String>,
    /// `meeting` (thread root), `transcript`, `summary`, `breakout` (a link to a breakout room's
    /// thread) or `chat`.
    pub kind: String,
    pub text: String,
    pub created_at_ms: i64,
}

/// Messages longer than this are split into parts (never truncated).
pub const MAX_MESSAGE_CHARS: usize = 4000;

type MessageRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// SQLite's migrations (one writer at a time: no lock needed), each in one transaction.
async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS meeting_agent_migrations (version INTEGER PRIMARY KEY)",
    )
    .execute(pool)
    .await?;
    for &(version, statements) in schema::SQLITE {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM meeting_agent_migrations WHERE version = ?1")
                .bind(version)
                .fetch_optional(pool)
                .await?;
        if applied.is_some() {
            continue;
        }
        // One transaction per migration: a failure leaves the schema as it was.
        let mut tx = pool.begin().await?;
        for statement in statements.split(";\n\n") {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO meeting_agent_migrations (version) VALUES (?1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Key of the advisory lock that makes workers starting together migrate one at a time
/// (`CREATE TABLE IF NOT EXISTS` racing itself fails on PostgreSQL's catalog).
const MIGRATION_LOCK: i64 = 0x6d61_6d69_6772;

/// PostgreSQL's migrations, on one connection holding [`MIGRATION_LOCK`].
async fn migrate_postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = apply_postgres_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply_postgres_migrations(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS meeting_agent_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *conn)
        .await?;
    for &(version, statements) in schema::POSTGRES {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM meeting_agent_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        if applied.is_some() {
            continue;
        }
        // One transaction per migration: a failure leaves the schema as it was.
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for statement in statements.split(";\n\n") {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO meeting_agent_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

impl Store {
    /// Connects and brings the schema up to date. `url`: `sqlite:PATH` (created if missing) or
    /// `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            if let Some(dir) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await?,
            )
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => migrate_sqlite(pool).await,
            Store::Postgres(pool) => migrate_postgres(pool).await,
        }
    }

    async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ())?,
            Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Records the meeting and opens its thread with `root` (idempotent).
    pub async fn open_meeting(&self, meeting: &Meeting, root: &Message) -> Result<(), StoreError> {
        exec_both!(
            self,
            "INSERT INTO meetings (id, room, started_at, thread_id, room_sid) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO meetings (id, room, started_at, thread_id, room_sid) VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), $4, $5) ON CONFLICT (id) DO NOTHING",
            &meeting.id,
            &meeting.room,
            meeting.started_at_ms,
            &meeting.thread_id,
            &meeting.room_sid,
        )?;
        self.post(std::slice::from_ref(root)).await
    }

    pub async fn end_meeting(&self, meeting_id: &str, ended_at_ms: i64) -> Result<(), StoreError> {
        exec_both!(
            self,
            "UPDATE meetings SET ended_at = ?2 WHERE id = ?1",
            "UPDATE meetings SET ended_at = to_timestamp($2::bigint / 1000.0) WHERE id = $1",
            meeting_id,
            ended_at_ms,
        )?;
        Ok(())
    }

    /// Marks the still open meetings of one instance of `room` as ended (LiveKit's
    /// `room_finished`); how many were. With the instance's `room_sid`, the meetings of that sid
    /// are closed, and meetings whose sid is unknown only when they started at or before
    /// `started_before_ms` (the event's time): a later meeting of the same name, another
    /// instance, stays open.
    pub async fn end_room_meetings(
        &self,
        room: &str,
        room_sid: Option<&str>,
        started_before_ms: i64,
        ended_at_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(exec_both!(
            self,
            "UPDATE meetings SET ended_at = ?4 WHERE room = ?1 AND ended_at IS NULL
               AND (room_sid = ?2 OR ((room_sid IS NULL OR ?2 IS NULL) AND started_at <= ?3))",
            "UPDATE meetings SET ended_at = to_timestamp($4::bigint / 1000.0) WHERE room = $1 AND ended_at IS NULL
               AND (room_sid = $2::text OR ((room_sid IS NULL OR $2::text IS NULL) AND started_at <= to_timestamp($3::bigint / 1000.0)))",
            room,
            room_sid,
            started_before_ms,
            ended_at_ms,
        )?)
    }

    /// Whether the webhook event `id` is seen for the first time (and now remembered); ids
    /// older than `keep_ms` are forgotten first.
    pub async fn webhook_event_first_seen(
        &self,
        id: &str,
        now_ms: i64,
        keep_ms: i64,
    ) -> Result<bool, StoreError> {
        exec_both!(
            self,
            "DELETE FROM webhook_events WHERE received_at_ms < ?1",
            "DELETE FROM webhook_events WHERE received_at_ms < $1",
            now_ms.saturating_sub(keep_ms),
        )?;
        Ok(exec_both!(
            self,
            "INSERT INTO webhook_events (id, received_at_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO webhook_events (id, received_at_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            id,
            now_ms,
        )? == 1)
    }

    /// Forgets a webhook event id (its handling failed; LiveKit retries it).
    pub async fn forget_webhook_event(&self, id: &str) -> Result<(), StoreError> {
        exec_both!(
            self,
            "DELETE FROM webhook_events WHERE id = ?1",
            "DELETE FROM webhook_events WHERE id = $1",
            id,
        )?;
        Ok(())
    }

    /// Stores final captions (a segment already stored is skipped), in one transaction.
    pub async fn add_segments(
        &self,
        meeting: &Meeting,
        segments: &[Segment],
    ) -> Result<(), StoreError> {
        insert_each!(
            self,
            segments,
            "INSERT INTO transcript_segments (id, meeting_id, room, speaker, text, start_ms, end_ms, spoken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO transcript_segments (id, meeting_id, room, speaker, text, start_ms, end_ms, spoken_at) VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::bigint / 1000.0)) ON CONFLICT (id) DO NOTHING",
            |q, s| q
                .bind(format!("{}/{}", meeting.id, s.key))
                .bind(&meeting.id)
                .bind(&meeting.room)
                .bind(&s.speaker)
                .bind(&s.text)
                .bind(s.start_ms)
                .bind(s.end_ms)
                .bind(meeting.started_at_ms + s.start_ms)
        );
        Ok(())
    }

    /// Posts messages (a message already posted is skipped), in one transaction.
    pub async fn post(&self, messages: &[Message]) -> Result<(), StoreError> {
        insert_each!(
            self,
            messages,
            "INSERT INTO messages (id, sender_id, recipient_id, text, created_at, conversation_id, reply_to, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO messages (id, sender_id, recipient_id, text, created_at, conversation_id, reply_to, kind) VALUES ($1, $2, $3, $4, to_timestamp($5::bigint / 1000.0), $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            |q, m| q
                .bind(&m.id)
                .bind(&m.sender_id)
                .bind(&m.recipient_id)
                .bind(&m.text)
                .bind(m.created_at_ms)
                .bind(&m.conversation_id)
                .bind(&m.reply_to)
                .bind(&m.kind)
        );
        Ok(())
    }

    /// A thread's messages, oldest first.
    pub async fn thread(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError> {
        let rows: Vec<MessageRow> = on_both!(
            self,
            fetch_all,
            MessageRow,
            "SELECT id, conversation_id, sender_id, recipient_id, reply_to, kind, text, created_at FROM messages WHERE conversation_id = ?1 ORDER BY created_at, id",
            "SELECT id, conversation_id, sender_id, recipient_id, reply_to, kind, text, (extract(epoch from created_at) * 1000)::bigint FROM messages WHERE conversation_id = $1 ORDER BY created_at, id",
            conversation_id
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(id, conversation_id, sender_id, recipient_id, reply_to, kind, text, created)| {
                    Message {
                        id,
                        conversation_id: conversation_id.unwrap_or_default(),
                        sender_id,
                        recipient_id,
                        reply_to,
                        kind,
                        text,
                        created_at_ms: created,
                    }
                },
            )
            .collect())
    }

    /// A meeting's segments in spoken order.
    pub async fn segments(&self, meeting_id: &str) -> Result<Vec<Segment>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = on_both!(
            self,
            fetch_all,
            (String, String, String, i64, i64),
            "SELECT id, speaker, text, start_ms, end_ms FROM transcript_segments WHERE meeting_id = ?1 ORDER BY start_ms, id",
            "SELECT id, speaker, text, start_ms, end_ms FROM transcript_segments WHERE meeting_id = $1 ORDER BY start_ms, id",
            meeting_id,
        )?;
        Ok(rows
            .into_iter()
            .map(|(id, speaker, text, start_ms, end_ms)| Segment {
                // Rows are `<meeting id>/<key>`: cut in Rust, by bytes, whatever the room's
                // name (SQL's substr counts characters).
                key: segment_key(meeting_id, &id).to_string(),
                speaker,
                text,
                start_ms,
                end_ms,
            })
            .collect())
    }

    /// Meetings, newest first: of one room, or all.
    pub async fn meetings(&self, room: Option<&str>) -> Result<Vec<Meeting>, StoreError> {
        self.find_meetings(room, None).await
    }

    /// One meeting by its id.
    pub async fn meeting(&self, id: &str) -> Result<Option<Meeting>, StoreError> {
        Ok(self.find_meetings(None, Some(id)).await?.pop())
    }

    async fn find_meetings(
        &self,
        room: Option<&str>,
        id: Option<&str>,
    ) -> Result<Vec<Meeting>, StoreError> {
        type Row = (String, String, i64, Option<i64>, String, Option<String>);
        let rows: Vec<Row> = on_both!(
            self,
            fetch_all,
            Row,
            "SELECT id, room, started_at, ended_at, thread_id, room_sid FROM meetings WHERE (?1 IS NULL OR room = ?1) AND (?2 IS NULL OR id = ?2) ORDER BY started_at DESC",
            "SELECT id, room, (extract(epoch from started_at) * 1000)::bigint, (extract(epoch from ended_at) * 1000)::bigint, thread_id, room_sid FROM meetings WHERE ($1::text IS NULL OR room = $1) AND ($2::text IS NULL OR id = $2) ORDER BY started_at DESC",
            room,
            id
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(id, room, started_at_ms, ended_at_ms, thread_id, room_sid)| Meeting {
                    id,
                    room,
                    started_at_ms,
                    ended_at_ms,
                    thread_id,
                    room_sid,
                },
            )
            .collect())
    }

    /// Answers when the database does (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.execute("SELECT 1").await
    }
}

/// The segment key of the row id `<meeting id>/<key>` (the whole id if it is not one).
fn segment_key<'a>(meeting_id: &str, row_id: &'a str) -> &'a str {
    row_id
        .strip_prefix(meeting_id)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(row_id)
}

/// Splits `text` into parts of at most `max` characters, at line breaks where it can, else at
/// spaces, else anywhere: nothing is lost.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let cut = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let head = &rest[..cut];
        let at = head
            .rfind('\n')
            .or_else(|| head.rfind(' '))
            .filter(|&i| i > 0)
            .map(|i| i + 1)
            .unwrap_or(cut);
        parts.push(rest[..at].to_string());
        rest = &rest[at..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_split_without_loss() {
        let text: String = (0..500).map(|i| format!("line {i} ünïcødé ✓\n")).collect();
        let parts = split_message(&text, 300);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= 300));
        assert_eq!(parts.concat(), text);
        let unbroken = "x".repeat(1000);
        assert_eq!(split_message(&unbroken, 300).concat(), unbroken);
        assert_eq!(split_message("", 10), vec![String::new()]);
    }

    #[test]
    fn segment_keys_are_cut_by_bytes() {
        let meeting = Meeting::new("Café Größe 会议", 1);
        assert_eq!(
            segment_key(&meeting.id, &format!("{}/SG_1", meeting.id)),
            "SG_1"
        );
        assert_eq!(segment_key("weekly-1", "weekly-1/SG_2"), "SG_2");
        assert_eq!(segment_key("weekly-1", "other/SG_2"), "other/SG_2");
    }
}
