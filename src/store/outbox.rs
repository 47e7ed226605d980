//! The outbox: every webhook delivery and e-mail the agent owes, kept in the store until it is
//! delivered or given up on (dead-lettered), so nothing is lost across restarts or a receiver's
//! outage. Deliveries with the same `order_key` (one endpoint, one room) go one at a time in
//! the order they were written: a claim takes only the oldest unfinished one of its key. A
//! failing webhook endpoint is retried no sooner than its `retry_at_ms` (one backoff per
//! endpoint, not per delivery); its first success makes everything it holds due at once.
//! Claims are leases, as the media job queue's are: a dispatcher that died leaves its claims
//! to be taken again when their lease ends (at least once; receivers deduplicate by event id).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, exec_both, on_both};
use crate::integrations::events::Event;

/// The channel PostgreSQL dispatchers `LISTEN` on.
pub const NOTIFY_CHANNEL: &str = "meeting_agent_outbox";
/// Most deliveries one listing returns.
pub const MAX_LISTED: i64 = 1000;

/// Wakes this process's dispatchers when something is written (other processes: `NOTIFY`).
pub static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A secret as the store keeps it: the newest first; an old one still signs until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

/// A webhook endpoint (its secrets are never listed).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Event types delivered (empty: all).
    pub event_types: Vec<String>,
    /// Rooms whose events are delivered (empty: all).
    pub rooms: Vec<String>,
    pub enabled: bool,
    /// Failed attempts since the last success.
    pub failures: i64,
    /// While failing: the next attempt, not before (Unix ms).
    pub retry_at_ms: i64,
    pub created_at_ms: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub secrets: Vec<StoredSecret>,
}

impl WebhookEndpoint {
    /// Whether `event` goes to this endpoint.
    pub fn wants(&self, event: &Event) -> bool {
        self.enabled
            && (self.event_types.is_empty()
                || self.event_types.iter().any(|t| t == event.event_type))
            && (self.rooms.is_empty()
                || event
                    .room
                    .as_ref()
                    .is_some_and(|room| self.rooms.contains(room)))
    }

    /// The secrets that sign at `now_ms`.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|s| s.secret.as_str())
            .collect()
    }
}

type EndpointRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
);

const ENDPOINT_COLUMNS: &str = "id, url, description, secrets, event_types, rooms, enabled, failures, retry_at_ms, created_at_ms";

fn endpoint(
    (
        id,
        url,
        description,
        secrets,
        event_types,
        rooms,
        enabled,
        failures,
        retry_at_ms,
        created_at_ms,
    ): EndpointRow,
) -> WebhookEndpoint {
    WebhookEndpoint {
        id,
        url,
        description,
        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
        rooms: serde_json::from_str(&rooms).unwrap_or_default(),
        enabled: enabled != 0,
        failures,
        retry_at_ms,
        created_at_ms,
        secrets: serde_json::from_str(&secrets).unwrap_or_default(),
    }
}

/// What an endpoint is made of, as its owner sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSettings {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub rooms: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its turn or its next attempt.
    Pending,
    /// Claimed by a dispatcher (until its lease ends).
    Sending,
    Delivered,
    /// Given up on: attempts or age ran out, the outbox was full, or its endpoint was deleted.
    Dead,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sending" => Ok(Self::Sending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            _ => Err("status: pending, sending, delivered or dead"),
        }
    }
}

/// One delivery, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    /// The `webhook-id` a receiver deduplicates on.
    pub event_id: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The endpoint's id, or the address.
    pub target: String,
    pub event_type: String,
    pub room: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    /// The receiver's last HTTP status (or SMTP reply code).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

const DELIVERY_COLUMNS: &str = "id, event_id, channel, target, event_type, room, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms, delivered_at_ms, last_status, last_error";

fn delivery(
    (
        id,
        event_id,
        channel,
        target,
        event_type,
        room,
        status,
        attempts,
        next_attempt_at_ms,
        created_at_ms,
        updated_at_ms,
        delivered_at_ms,
        last_status,
        last_error,
    ): DeliveryRow,
) -> Delivery {
    Delivery {
        id,
        event_id,
        channel,
        target,
        event_type,
        room,
        status: status.parse().unwrap_or(DeliveryStatus::Pending),
        attempts,
        next_attempt_at_ms,
        created_at_ms,
        updated_at_ms,
        delivered_at_ms,
        last_status,
        last_error,
    }
}

/// A claimed delivery: what the dispatcher sends, and which attempt this is.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub seq: i64,
    pub id: String,
    pub event_id: String,
    pub channel: String,
    pub target: String,
    pub event_type: String,
    pub room: Option<String>,
    pub payload: String,
    pub attempt: i64,
    pub created_at_ms: i64,
}

type ItemRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
);

/// A new row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub event_id: String,
    pub channel: &'static str,
    pub target: String,
    pub event_type: String,
    pub room: Option<String>,
    pub order_key: String,
    pub payload: String,
    pub not_before_ms: i64,
}

impl Store {
    pub async fn add_webhook_endpoint(
        &self,
        id: &str,
        settings: &EndpointSettings,
        secret: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let secrets = serde_json::to_string(&[StoredSecret {
            secret: secret.to_string(),
            expires_at_ms: None,
        }])
        .expect("secrets serialise");
        exec_both!(
            self,
            "INSERT INTO webhook_endpoints (id, url, description, secrets, event_types, rooms, enabled, failures, retry_at_ms, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8)",
            "INSERT INTO webhook_endpoints (id, url, description, secrets, event_types, rooms, enabled, failures, retry_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8)",
            id,
            &settings.url,
            &settings.description,
            secrets,
            json(&settings.event_types),
            json(&settings.rooms),
            i64::from(settings.enabled),
            now_ms,
        )?;
        Ok(())
    }

    /// Every endpoint, oldest first.
    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql =
            format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at_ms, id");
        let rows: Vec<EndpointRow> = on_both!(self, fetch_all, EndpointRow, &sql, &sql)?;
        Ok(rows.into_iter().map(endpoint).collect())
    }

    pub async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let sql_lite = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1");
        let sql_pg = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row: Option<EndpointRow> =
            on_both!(self, fetch_optional, EndpointRow, &sql_lite, &sql_pg, id)?;
        Ok(row.map(endpoint))
    }

    /// False when there is no such endpoint.
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        settings: &EndpointSettings,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE webhook_endpoints SET url = ?2, description = ?3, event_types = ?4, rooms = ?5, enabled = ?6 WHERE id = ?1",
            "UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, rooms = $5, enabled = $6 WHERE id = $1",
            id,
            &settings.url,
            &settings.description,
            json(&settings.event_types),
            json(&settings.rooms),
            i64::from(settings.enabled),
        )?;
        Ok(changed > 0)
    }

    /// Replaces an endpoint's secrets (a rotation); false when there is no such endpoint.
    pub async fn set_webhook_secrets(
        &self,
        id: &str,
        secrets: &[StoredSecret],
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE webhook_endpoints SET secrets = ?2 WHERE id = ?1",
            "UPDATE webhook_endpoints SET secrets = $2 WHERE id = $1",
            id,
            serde_json::to_string(secrets).expect("secrets serialise"),
        )?;
        Ok(changed > 0)
    }

    /// Deletes an endpoint; what it still had to receive is dead-lettered (visible in the
    /// log). False when there was no such endpoint.
    pub async fn delete_webhook_endpoint(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        exec_both!(
            self,
            "UPDATE outbox SET status = 'dead', last_error = 'endpoint deleted', claimed_by = NULL, updated_at_ms = ?2 WHERE channel = 'webhook' AND target = ?1 AND status IN ('pending', 'sending')",
            "UPDATE outbox SET status = 'dead', last_error = 'endpoint deleted', claimed_by = NULL, updated_at_ms = $2 WHERE channel = 'webhook' AND target = $1 AND status IN ('pending', 'sending')",
            id,
            now_ms,
        )?;
        let deleted = exec_both!(
            self,
            "DELETE FROM webhook_endpoints WHERE id = ?1",
            "DELETE FROM webhook_endpoints WHERE id = $1",
            id,
        )?;
        Ok(deleted > 0)
    }

    /// Records a failed attempt at `id`: its failures so far.
    pub async fn webhook_endpoint_failed(&self, id: &str) -> Result<i64, StoreError> {
        let row: Option<(i64,)> = on_both!(
            self,
            fetch_optional,
            (i64,),
            "UPDATE webhook_endpoints SET failures = failures + 1 WHERE id = ?1 RETURNING failures",
            "UPDATE webhook_endpoints SET failures = failures + 1 WHERE id = $1 RETURNING failures",
            id,
        )?;
        Ok(row.map_or(1, |(f,)| f))
    }

    /// No attempt at `id` before `retry_at_ms`: its pending deliveries wait until then.
    pub async fn hold_webhook_endpoint(
        &self,
        id: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        exec_both!(
            self,
            "UPDATE webhook_endpoints SET retry_at_ms = ?2 WHERE id = ?1",
            "UPDATE webhook_endpoints SET retry_at_ms = $2 WHERE id = $1",
            id,
            retry_at_ms,
        )?;
        Ok(())
    }

    /// `id` answered: its failures are forgotten and everything it holds is due now.
    pub async fn webhook_endpoint_recovered(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let was_failing = exec_both!(
            self,
            "UPDATE webhook_endpoints SET failures = 0, retry_at_ms = 0 WHERE id = ?1 AND (failures > 0 OR retry_at_ms > 0)",
            "UPDATE webhook_endpoints SET failures = 0, retry_at_ms = 0 WHERE id = $1 AND (failures > 0 OR retry_at_ms > 0)",
            id,
        )?;
        if was_failing > 0 {
            exec_both!(
                self,
                "UPDATE outbox SET next_attempt_at_ms = ?2 WHERE channel = 'webhook' AND target = ?1 AND status = 'pending' AND next_attempt_at_ms > ?2",
                "UPDATE outbox SET next_attempt_at_ms = $2 WHERE channel = 'webhook' AND target = $1 AND status = 'pending' AND next_attempt_at_ms > $2",
                id,
                now_ms,
            )?;
            self.wake_dispatchers().await?;
        }
        Ok(())
    }

    /// Deliveries not yet finished for `target` (the outbox's bound per endpoint or address).
    pub async fn outbox_unfinished(&self, target: &str) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_both!(
            self,
            fetch_one,
            (i64,),
            "SELECT COUNT(*) FROM outbox WHERE target = ?1 AND status IN ('pending', 'sending')",
            "SELECT COUNT(*) FROM outbox WHERE target = $1 AND status IN ('pending', 'sending')",
            target,
        )?;
        Ok(n)
    }

    /// Writes `rows` (each once: a row whose id exists is skipped) and wakes the dispatchers;
    /// a row written `dead` carries `dead_reason`. The number written.
    pub async fn add_to_outbox(
        &self,
        rows: &[(NewDelivery, Option<&str>)],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut written = 0;
        for (row, dead_reason) in rows {
            let status = if dead_reason.is_some() {
                "dead"
            } else {
                "pending"
            };
            written += exec_both!(
                self,
                "INSERT INTO outbox (id, event_id, channel, target, event_type, room, order_key, payload, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?11, ?12) ON CONFLICT (id) DO NOTHING",
                "INSERT INTO outbox (id, event_id, channel, target, event_type, room, order_key, payload, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $11, $12) ON CONFLICT (id) DO NOTHING",
                &row.id,
                &row.event_id,
                row.channel,
                &row.target,
                &row.event_type,
                &row.room,
                &row.order_key,
                &row.payload,
                status,
                row.not_before_ms,
                now_ms,
                dead_reason,
            )?;
        }
        if written > 0 {
            self.wake_dispatchers().await?;
        }
        Ok(written)
    }

    async fn wake_dispatchers(&self) -> Result<(), StoreError> {
        WAKE.notify_waiters();
        if let Store::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Claims up to `limit` due deliveries for `worker` until `now_ms + lease_ms`: each the
    /// oldest unfinished one of its order key, of an endpoint not held back by its backoff;
    /// e-mails only for a worker that can send them (`email`).
    pub async fn claim_outbox(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        email: bool,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        const DUE: &str = "SELECT o.seq FROM outbox o WHERE o.status IN ('pending', 'sending') AND o.next_attempt_at_ms <= {now} AND (o.channel = 'webhook' OR {email} = 1) AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.order_key = o.order_key AND p.seq < o.seq AND p.status IN ('pending', 'sending')) AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE o.channel = 'webhook' AND e.id = o.target AND e.retry_at_ms > {now}) ORDER BY o.seq LIMIT {limit}";
        let due_lite = DUE
            .replace("{now}", "?2")
            .replace("{limit}", "?4")
            .replace("{email}", "?5");
        let due_pg = DUE
            .replace("{now}", "$2")
            .replace("{limit}", "$4")
            .replace("{email}", "$5")
            + " FOR UPDATE SKIP LOCKED";
        let claim = "UPDATE outbox SET status = 'sending', claimed_by = {worker}, attempts = attempts + 1, next_attempt_at_ms = {now} + {lease}, updated_at_ms = {now} WHERE seq IN ({due}) RETURNING seq, id, event_id, channel, target, event_type, room, payload, attempts, created_at_ms";
        let sql_lite = claim
            .replace("{worker}", "?1")
            .replace("{now}", "?2")
            .replace("{lease}", "?3")
            .replace("{due}", &due_lite);
        let sql_pg = claim
            .replace("{worker}", "$1")
            .replace("{now}", "$2")
            .replace("{lease}", "$3")
            .replace("{due}", &due_pg);
        let mut rows: Vec<ItemRow> = on_both!(
            self,
            fetch_all,
            ItemRow,
            &sql_lite,
            &sql_pg,
            worker,
            now_ms,
            lease_ms,
            limit,
            i64::from(email)
        )?;
        rows.sort_by_key(|r| r.0);
        Ok(rows
            .into_iter()
            .map(
                |(
                    seq,
                    id,
                    event_id,
                    channel,
                    target,
                    event_type,
                    room,
                    payload,
                    attempt,
                    created_at_ms,
                )| {
                    OutboxItem {
                        seq,
                        id,
                        event_id,
                        channel,
                        target,
                        event_type,
                        room,
                        payload,
                        attempt,
                        created_at_ms,
                    }
                },
            )
            .collect())
    }

    /// `worker`'s claim was delivered; false when the claim had been lost (nothing changes).
    pub async fn delivered(
        &self,
        seq: i64,
        worker: &str,
        status: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE outbox SET status = 'delivered', delivered_at_ms = ?3, updated_at_ms = ?3, last_status = ?4, last_error = NULL, claimed_by = NULL WHERE seq = ?1 AND claimed_by = ?2 AND status = 'sending'",
            "UPDATE outbox SET status = 'delivered', delivered_at_ms = $3, updated_at_ms = $3, last_status = $4, last_error = NULL, claimed_by = NULL WHERE seq = $1 AND claimed_by = $2 AND status = 'sending'",
            seq,
            worker,
            now_ms,
            status,
        )?;
        Ok(changed > 0)
    }

    /// A failed attempt: pending again from `retry_at_ms`, or dead when `None`. False when
    /// the claim had been lost.
    pub async fn delivery_failed(
        &self,
        seq: i64,
        worker: &str,
        status: Option<i64>,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (state, next) = match retry_at_ms {
            Some(at) => (DeliveryStatus::Pending, at),
            None => (DeliveryStatus::Dead, now_ms),
        };
        let changed = exec_both!(
            self,
            "UPDATE outbox SET status = ?3, next_attempt_at_ms = ?4, last_status = ?5, last_error = ?6, claimed_by = NULL, updated_at_ms = ?7 WHERE seq = ?1 AND claimed_by = ?2 AND status = 'sending'",
            "UPDATE outbox SET status = $3, next_attempt_at_ms = $4, last_status = $5, last_error = $6, claimed_by = NULL, updated_at_ms = $7 WHERE seq = $1 AND claimed_by = $2 AND status = 'sending'",
            seq,
            worker,
            state.as_str(),
            next,
            status,
            error,
            now_ms,
        )?;
        Ok(changed > 0)
    }

    /// The delivery log: newest first, of one target and/or status (at most [`MAX_LISTED`]).
    pub async fn deliveries(
        &self,
        target: Option<&str>,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let status = status.map(DeliveryStatus::as_str);
        let sql_lite = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY seq DESC LIMIT ?3"
        );
        let sql_pg = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE ($1::text IS NULL OR target = $1) AND ($2::text IS NULL OR status = $2) ORDER BY seq DESC LIMIT $3"
        );
        let rows: Vec<DeliveryRow> = on_both!(
            self,
            fetch_all,
            DeliveryRow,
            &sql_lite,
            &sql_pg,
            target,
            status,
            limit.clamp(1, MAX_LISTED)
        )?;
        Ok(rows.into_iter().map(delivery).collect())
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let sql_lite = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = ?1");
        let sql_pg = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = $1");
        let row: Option<DeliveryRow> =
            on_both!(self, fetch_optional, DeliveryRow, &sql_lite, &sql_pg, id)?;
        Ok(row.map(delivery))
    }

    /// Sends a dead (or delivered) delivery again, as a new first attempt; false when unknown
    /// or still unfinished.
    pub async fn redeliver(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at_ms = ?2, created_at_ms = ?2, updated_at_ms = ?2, delivered_at_ms = NULL WHERE id = ?1 AND status IN ('dead', 'delivered')",
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at_ms = $2, created_at_ms = $2, updated_at_ms = $2, delivered_at_ms = NULL WHERE id = $1 AND status IN ('dead', 'delivered')",
            id,
            now_ms,
        )?;
        if changed > 0 {
            self.wake_dispatchers().await?;
        }
        Ok(changed > 0)
    }

    /// Forgets finished deliveries (delivered or dead) last changed before `cutoff_ms`.
    pub async fn prune_outbox(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        Ok(exec_both!(
            self,
            "DELETE FROM outbox WHERE status IN ('delivered', 'dead') AND updated_at_ms < ?1",
            "DELETE FROM outbox WHERE status IN ('delivered', 'dead') AND updated_at_ms < $1",
            cutoff_ms,
        )?)
    }

    /// Deliveries per status, for `/metrics`.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT status, COUNT(*) FROM outbox GROUP BY status";
        Ok(on_both!(self, fetch_all, (String, i64), sql, sql)?)
    }

    /// Stops e-mails about `room`'s meetings to `address`.
    pub async fn opt_out_email(
        &self,
        room: &str,
        address: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        exec_both!(
            self,
            "INSERT INTO email_optouts (room, address, at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (room, address) DO NOTHING",
            "INSERT INTO email_optouts (room, address, at_ms) VALUES ($1, $2, $3) ON CONFLICT (room, address) DO NOTHING",
            room,
            address,
            now_ms,
        )?;
        Ok(())
    }

    pub async fn opted_out(&self, room: &str, address: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = on_both!(
            self,
            fetch_optional,
            (i64,),
            "SELECT at_ms FROM email_optouts WHERE room = ?1 AND address = ?2",
            "SELECT at_ms FROM email_optouts WHERE room = $1 AND address = $2",
            room,
            address,
        )?;
        Ok(row.is_some())
    }

    /// The address the platform gives for a user (`user_emails`, which it fills).
    pub async fn user_email(&self, identity: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_both!(
            self,
            fetch_optional,
            (String,),
            "SELECT address FROM user_emails WHERE identity = ?1",
            "SELECT address FROM user_emails WHERE identity = $1",
            identity,
        )?;
        Ok(row.map(|(a,)| a))
    }

    /// Sets a user's address (what the platform's own sync does; the tests and the CLI too).
    pub async fn set_user_email(&self, identity: &str, address: &str) -> Result<(), StoreError> {
        exec_both!(
            self,
            "INSERT INTO user_emails (identity, address) VALUES (?1, ?2) ON CONFLICT (identity) DO UPDATE SET address = excluded.address",
            "INSERT INTO user_emails (identity, address) VALUES ($1, $2) ON CONFLICT (identity) DO UPDATE SET address = excluded.address",
            identity,
            address,
        )?;
        Ok(())
    }
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}
