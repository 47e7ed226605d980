//! Failover between worker processes sharing one store. livekit-server does not dispatch a
//! room again when the worker serving it dies (it only drops the worker), so the workers do it
//! themselves: each claims its rooms in the store's room leases (one live agent per room
//! instance) and beats while it lives; every worker that is not draining sweeps for rooms whose
//! worker stopped beating or let go, takes each one (exactly one sweeper does) and asks the
//! server for an agent again through the AgentDispatch API. The server hands that job to a
//! worker by load as usual; its session continues the same meeting (the meeting is the room
//! instance, not the process: src/session/mod.rs).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::watch;

use crate::captions::journal::unix_ms;
use crate::config::Config;
use crate::livekit::room_service::RoomService;
use crate::store::room_leases::{LIVENESS_LOCK_CLASS, Release};
use crate::store::{Store, StoreError};

/// How often a job checks that its room is still its worker's.
pub const HOLD_CHECK: Duration = Duration::from_secs(2);
/// A room taken for re-dispatch is taken again after this long if no agent claimed it.
const REDISPATCH_RETRY: Duration = Duration::from_secs(15);
/// Most orphaned rooms one sweep handles (the rest wait for the next).
const SWEEP_BATCH: i64 = 32;

static REDISPATCHED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_failover_redispatched_total",
        "Rooms whose worker died or let go, given an agent again through the dispatch API.",
    )
});
static CLAIMS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_failover_claims_refused_total",
        "Jobs refused because another live worker already serves the room.",
    )
});
static STORE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_failover_store_errors_total",
        "Heartbeats, claims and sweeps that failed on the store.",
    )
});

/// This worker process's room leases.
pub struct RoomLeases {
    store: Store,
    rooms: RoomService,
    worker_id: String,
    agent_name: String,
    heartbeat: Duration,
    stale_after: Duration,
}

impl RoomLeases {
    pub fn new(config: &Config, store: Store) -> Self {
        Self {
            store,
            rooms: RoomService::new(
                &config.livekit.url,
                &config.livekit.api_key,
                &config.livekit.api_secret,
            ),
            // Unique per process (a worker re-registering keeps it; a restarted one is new).
            worker_id: format!(
                "{}-{}-{}",
                crate::media_messages::worker::hostname(),
                std::process::id(),
                unix_ms()
            ),
            agent_name: config.agent.name.clone(),
            heartbeat: Duration::from_millis(config.agent.failover_heartbeat_ms),
            stale_after: Duration::from_millis(config.agent.failover_stale_ms),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn alive_after_ms(&self) -> i64 {
        unix_ms() as i64 - self.stale_after.as_millis() as i64
    }

    /// Claims the room instance for this worker: false when another live worker serves it.
    /// A store that cannot answer does not keep a room without an agent: the job goes ahead.
    pub async fn claim(&self, room_sid: &str, room: &str) -> bool {
        if room_sid.is_empty() {
            return true;
        }
        let now = unix_ms() as i64;
        match self
            .store
            .claim_room(room_sid, room, &self.worker_id, now, self.alive_after_ms())
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                CLAIMS_REFUSED.inc();
                false
            }
            Err(e) => {
                STORE_ERRORS.inc();
                tracing::warn!(room, error = %e, "room lease unavailable; serving the room anyway");
                true
            }
        }
    }

    /// Whether this worker still holds the room (a store that cannot answer: yes). A worker
    /// whose liveness lock went away for a while may have been replaced in its rooms.
    pub async fn still_holds(&self, room_sid: &str) -> bool {
        if room_sid.is_empty() {
            return true;
        }
        match self.store.room_worker(room_sid).await {
            Ok(holder) => holder.as_deref() == Some(self.worker_id.as_str()),
            Err(_) => true,
        }
    }

    /// Lets go of a room: `Ended` when the meeting is over, `Orphaned` when it still needs an
    /// agent (taken over by a sweeping worker).
    pub async fn release(&self, room_sid: &str, how: Release) {
        if room_sid.is_empty() {
            return;
        }
        if let Err(e) = self
            .store
            .release_room(room_sid, &self.worker_id, how)
            .await
        {
            STORE_ERRORS.inc();
            tracing::warn!(room_sid, error = %e, "could not release the room lease");
        }
    }

    /// On PostgreSQL, a connection of its own holding this worker's liveness lock (the other
    /// workers see it alive while the lock is held; `None` on SQLite, or when it cannot
    /// connect: then it is tried again at every beat).
    pub async fn hold_liveness(&self) -> Option<sqlx::PgConnection> {
        let Store::Postgres(pool) = &self.store else {
            return None;
        };
        let attempt = async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
            let (held,): (bool,) =
                sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2) & 2147483647)")
                    .bind(LIVENESS_LOCK_CLASS)
                    .bind(&self.worker_id)
                    .fetch_one(&mut conn)
                    .await?;
            Ok::<_, sqlx::Error>((conn, held))
        };
        match attempt.await {
            Ok((conn, true)) => Some(conn),
            Ok((_, false)) => {
                tracing::error!(worker_id = %self.worker_id, "another session holds this worker's liveness lock");
                None
            }
            Err(e) => {
                STORE_ERRORS.inc();
                tracing::warn!(error = %e, "cannot take the worker's liveness lock");
                None
            }
        }
    }

    /// Beats (holding the liveness lock on PostgreSQL), and sweeps while not draining, until
    /// `stop` turns true; then says this worker is gone. `draining` follows the worker's state.
    pub async fn keep(
        &self,
        mut liveness: Option<sqlx::PgConnection>,
        draining: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let postgres = matches!(self.store, Store::Postgres(_));
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            if postgres {
                let lost = match liveness.as_mut() {
                    Some(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_err(),
                    None => true,
                };
                if lost {
                    liveness = self.hold_liveness().await;
                }
            }
            let draining = *draining.borrow();
            if let Err(e) = self
                .store
                .worker_heartbeat(&self.worker_id, unix_ms() as i64, draining)
                .await
            {
                STORE_ERRORS.inc();
                tracing::warn!(error = %e, "worker heartbeat failed");
                continue;
            }
            if !draining && let Err(e) = self.sweep().await {
                STORE_ERRORS.inc();
                tracing::warn!(error = %e, "failover sweep failed");
            }
        }
        if let Err(e) = self.store.worker_gone(&self.worker_id).await {
            tracing::warn!(error = %e, "could not remove the worker's heartbeat");
        }
    }

    /// Gives every orphaned room that still has people in it an agent again; how many.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = unix_ms() as i64;
        let retry_after = now - REDISPATCH_RETRY.as_millis() as i64;
        let orphans = self
            .store
            .orphaned_rooms(self.alive_after_ms(), retry_after, SWEEP_BATCH)
            .await?;
        let mut dispatched = 0;
        for orphan in orphans {
            if !self
                .store
                .take_orphan(&orphan.room_sid, now, retry_after)
                .await?
            {
                continue; // another worker's sweep took it
            }
            match self.rooms.room_instance(&orphan.room).await {
                // Gone, or a new instance of the name (the server dispatches that one itself).
                Ok(None) => self.store.room_ended(&orphan.room_sid).await?,
                Ok(Some((sid, _))) if sid != orphan.room_sid => {
                    self.store.room_ended(&orphan.room_sid).await?
                }
                Ok(Some((_, 0))) => self.store.room_ended(&orphan.room_sid).await?,
                Ok(Some(_)) => match self
                    .rooms
                    .create_dispatch(&orphan.room, &self.agent_name, "")
                    .await
                {
                    Ok(dispatch) => {
                        REDISPATCHED.inc();
                        dispatched += 1;
                        tracing::info!(room = %orphan.room, room_sid = %orphan.room_sid, dispatch, "room lost its agent: dispatched another");
                    }
                    // Taken again after REDISPATCH_RETRY.
                    Err(e) => {
                        tracing::warn!(room = %orphan.room, error = %e, "re-dispatch failed")
                    }
                },
                Err(e) => {
                    tracing::warn!(room = %orphan.room, error = %e, "cannot look up an orphaned room")
                }
            }
        }
        Ok(dispatched)
    }
}

/// Shared by the worker and its jobs.
pub type SharedLeases = Arc<RoomLeases>;
