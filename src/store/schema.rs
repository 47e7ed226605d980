//! The schema, per database, as numbered migrations applied once each (recorded in
//! `meeting_agent_migrations`). PostgreSQL extends a `messages` table the platform may already
//! have (Supabase) instead of assuming it is new.

/// Version 2, the same in both databases: recording metadata.
const RECORDINGS: &str = r#"CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    storage_key TEXT NOT NULL,
    meta TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS recordings_by_room ON recordings (room, started_at_ms)"#;

/// Version 3, the same in both databases: webhook events already handled (replays are
/// refused; rows older than a day are pruned as new ones arrive).
const WEBHOOK_EVENTS: &str = r#"CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    received_at_ms BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS webhook_events_by_time ON webhook_events (received_at_ms)"#;

/// Version 9, the same in both databases: which worker serves which room instance, for
/// failover (src/worker/failover.rs). A worker's heartbeat says it is alive; a room whose
/// worker stopped beating (or let go of it) gets an agent again.
const ROOM_LEASES: &str = r#"CREATE TABLE IF NOT EXISTS agent_workers (
    worker_id TEXT PRIMARY KEY,
    heartbeat_ms BIGINT NOT NULL,
    draining BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS agent_rooms (
    room_sid TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    worker_id TEXT,
    claimed_ms BIGINT NOT NULL,
    ended BOOLEAN NOT NULL DEFAULT FALSE,
    redispatched_ms BIGINT
);

CREATE INDEX IF NOT EXISTS agent_rooms_open ON agent_rooms (ended, worker_id)"#;

/// Version 5: the audit log of meeting controls; `$id` is each database's own row number.
macro_rules! audit_log {
    ($id:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS audit_log (\n    id ",
            $id,
            r#",
    room TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS audit_log_by_room ON audit_log (room, at_ms)"#
        )
    };
}

/// Version 6, the same in both databases: the media job queue (voice and video messages).
const MEDIA_JOBS: &str = r#"CREATE TABLE IF NOT EXISTS media_jobs (
    message_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    not_before_ms BIGINT NOT NULL,
    claimed_by TEXT,
    error TEXT,
    result TEXT,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS media_jobs_due ON media_jobs (status, not_before_ms)"#;

/// Version 8, the same in both databases: call quality samples (one row per subscribed track
/// per interval, figures of that interval) and each participant's engagement per meeting.
const CALL_QUALITY: &str = r#"CREATE TABLE IF NOT EXISTS quality_samples (
    meeting_id TEXT NOT NULL,
    room TEXT NOT NULL,
    participant TEXT NOT NULL,
    track_sid TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    packets BIGINT NOT NULL,
    packets_lost BIGINT NOT NULL,
    jitter_us BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    freezes BIGINT NOT NULL,
    freeze_ms BIGINT NOT NULL,
    quality TEXT NOT NULL,
    PRIMARY KEY (meeting_id, track_sid, seq)
);

CREATE INDEX IF NOT EXISTS quality_samples_by_room ON quality_samples (room, at_ms);

CREATE TABLE IF NOT EXISTS engagement (
    meeting_id TEXT NOT NULL,
    room TEXT NOT NULL,
    participant TEXT NOT NULL,
    speaking_ms BIGINT NOT NULL,
    camera_ms BIGINT NOT NULL,
    screen_ms BIGINT NOT NULL,
    joins BIGINT NOT NULL,
    leaves BIGINT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    bytes_received BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, participant)
);

CREATE INDEX IF NOT EXISTS engagement_by_room ON engagement (room, first_seen_ms)"#;

/// Version 7: the outbox (webhook deliveries and e-mails, delivered at least once and in order
/// per `order_key`), webhook endpoints, e-mail opt-outs and the addresses the platform gives
/// for its users. `$seq` is each database's own row number.
macro_rules! outbox {
    ($seq:literal) => {
        concat!(
            r#"CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    secrets TEXT NOT NULL,
    event_types TEXT NOT NULL,
    rooms TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    retry_at_ms BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq "#,
            $seq,
            r#",
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    event_type TEXT NOT NULL,
    room TEXT,
    order_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    claimed_by TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    last_status BIGINT,
    last_error TEXT
);

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at_ms);

CREATE INDEX IF NOT EXISTS outbox_order ON outbox (order_key, seq);

CREATE INDEX IF NOT EXISTS outbox_by_target ON outbox (target, seq);

CREATE TABLE IF NOT EXISTS email_optouts (
    room TEXT NOT NULL,
    address TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (room, address)
);

CREATE TABLE IF NOT EXISTS user_emails (
    identity TEXT PRIMARY KEY,
    address TEXT NOT NULL
)"#
        )
    };
}

/// (version, statements) for SQLite; statements are separated by `;\n\n`.
pub const SQLITE: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE IF NOT EXISTS meetings (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    thread_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    recipient_id TEXT,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    conversation_id TEXT,
    reply_to TEXT,
    kind TEXT NOT NULL DEFAULT 'chat'
);

CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, created_at);

CREATE TABLE IF NOT EXISTS transcript_segments (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id),
    room TEXT NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    spoken_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS segments_by_meeting ON transcript_segments (meeting_id, start_ms);

CREATE INDEX IF NOT EXISTS segments_by_room ON transcript_segments (room, spoken_at);

CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5 (
    text, content = 'transcript_segments', content_rowid = 'rowid', tokenize = 'porter unicode61'
);

CREATE TRIGGER IF NOT EXISTS segments_fts_insert AFTER INSERT ON transcript_segments BEGIN
    INSERT INTO segments_fts (rowid, text) VALUES (new.rowid, new.text);
END;

CREATE TRIGGER IF NOT EXISTS segments_fts_delete AFTER DELETE ON transcript_segments BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;

CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    text, content = 'messages', content_rowid = 'rowid', tokenize = 'porter unicode61'
);

CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;

CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END"#,
    ),
    (2, RECORDINGS),
    (3, WEBHOOK_EVENTS),
    // The room instance's sid, so `room_finished` closes that instance's meetings only.
    (
        4,
        r#"ALTER TABLE meetings ADD COLUMN room_sid TEXT;

CREATE INDEX IF NOT EXISTS meetings_by_room_sid ON meetings (room_sid)"#,
    ),
    (5, audit_log!("INTEGER PRIMARY KEY AUTOINCREMENT")),
    (6, MEDIA_JOBS),
    (7, outbox!("INTEGER PRIMARY KEY AUTOINCREMENT")),
    (8, CALL_QUALITY),
    (9, ROOM_LEASES),
];

/// (version, statements) for PostgreSQL.
pub const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE IF NOT EXISTS meetings (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    thread_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    recipient_id TEXT,
    text TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE messages ADD COLUMN IF NOT EXISTS conversation_id TEXT;

ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to TEXT;

ALTER TABLE messages ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'chat';

ALTER TABLE messages ADD COLUMN IF NOT EXISTS tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;

CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, created_at);

CREATE INDEX IF NOT EXISTS messages_tsv ON messages USING gin (tsv);

CREATE TABLE IF NOT EXISTS transcript_segments (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id),
    room TEXT NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    spoken_at TIMESTAMPTZ NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);

CREATE INDEX IF NOT EXISTS segments_by_meeting ON transcript_segments (meeting_id, start_ms);

CREATE INDEX IF NOT EXISTS segments_by_room ON transcript_segments (room, spoken_at);

CREATE INDEX IF NOT EXISTS segments_tsv ON transcript_segments USING gin (tsv)"#,
    ),
    (2, RECORDINGS),
    (3, WEBHOOK_EVENTS),
    (
        4,
        r#"ALTER TABLE meetings ADD COLUMN IF NOT EXISTS room_sid TEXT;

CREATE INDEX IF NOT EXISTS meetings_by_room_sid ON meetings (room_sid)"#,
    ),
    (5, audit_log!("BIGSERIAL PRIMARY KEY")),
    (6, MEDIA_JOBS),
    (7, outbox!("BIGSERIAL PRIMARY KEY")),
    (8, CALL_QUALITY),
    (9, ROOM_LEASES),
];
