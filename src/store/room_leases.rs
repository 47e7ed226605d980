//! Room leases: which worker process serves which room instance (its sid), shared by every
//! worker on the same store. A worker beats (`agent_workers.heartbeat_ms`) while it lives; a
//! room is served while its worker's beat is fresh. Claiming a room is one statement that only
//! succeeds when nobody alive holds it, so two workers never serve one room; a room whose worker
//! stopped beating or let go of it is *orphaned* and taken, once, by one sweeping worker
//! (`redispatched_ms`), which asks the server for an agent again.

use super::{Store, StoreError, exec_both, on_both};

/// First key of the advisory locks by which PostgreSQL workers show they are alive (the
/// second is the hash of the worker's id): PostgreSQL lets go of a session's locks the moment
/// its connection closes, so a killed worker is seen dead at once, and a worker too busy to
/// beat on time is never taken for dead.
pub const LIVENESS_LOCK_CLASS: i32 = 0x6d61_6c76;

/// Whether the worker `$w` (a column) is alive, per database: SQLite by its heartbeat
/// (after `$alive`), PostgreSQL by its liveness lock.
macro_rules! alive {
    (sqlite, $w:literal, $alive:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM agent_workers w WHERE w.worker_id = ",
            $w,
            " AND w.heartbeat_ms > ",
            $alive,
            ")"
        )
    };
    (pg, $w:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = 1835101302 AND l.objid = (hashtext(",
            $w,
            ") & 2147483647)::oid)"
        )
    };
}

/// A room that lost its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedRoom {
    pub room_sid: String,
    pub room: String,
}

/// How a worker lets go of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The meeting is over (the room closed): nothing to take over.
    Ended,
    /// The room still needs an agent (the job failed or was cut short): orphaned now.
    Orphaned,
}

impl Store {
    /// This worker is alive at `now_ms` (and draining or not).
    pub async fn worker_heartbeat(
        &self,
        worker_id: &str,
        now_ms: i64,
        draining: bool,
    ) -> Result<(), StoreError> {
        exec_both!(
            self,
            "INSERT INTO agent_workers (worker_id, heartbeat_ms, draining) VALUES (?1, ?2, ?3)
             ON CONFLICT (worker_id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, draining = excluded.draining",
            "INSERT INTO agent_workers (worker_id, heartbeat_ms, draining) VALUES ($1, $2, $3)
             ON CONFLICT (worker_id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, draining = excluded.draining",
            worker_id,
            now_ms,
            draining,
        )?;
        Ok(())
    }

    /// A worker that stopped cleanly: its beat is gone at once (its rooms, if any are still
    /// held, are orphaned without waiting for the beat to go stale).
    pub async fn worker_gone(&self, worker_id: &str) -> Result<(), StoreError> {
        exec_both!(
            self,
            "DELETE FROM agent_workers WHERE worker_id = ?1",
            "DELETE FROM agent_workers WHERE worker_id = $1",
            worker_id,
        )?;
        Ok(())
    }

    /// Claims `room_sid` for `worker_id`: true when it is now this worker's, false when a live
    /// worker holds it (SQLite: one that beat after `alive_after_ms`; PostgreSQL: one holding
    /// its liveness lock).
    pub async fn claim_room(
        &self,
        room_sid: &str,
        room: &str,
        worker_id: &str,
        now_ms: i64,
        alive_after_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            concat!(
                "INSERT INTO agent_rooms (room_sid, room, worker_id, claimed_ms, ended) VALUES (?1, ?2, ?3, ?4, FALSE)
             ON CONFLICT (room_sid) DO UPDATE SET worker_id = excluded.worker_id, claimed_ms = excluded.claimed_ms, ended = FALSE
             WHERE agent_rooms.worker_id IS NULL OR agent_rooms.ended OR agent_rooms.worker_id = excluded.worker_id
                OR NOT ",
                alive!(sqlite, "agent_rooms.worker_id", "?5")
            ),
            concat!(
                "INSERT INTO agent_rooms (room_sid, room, worker_id, claimed_ms, ended) VALUES ($1, $2, $3, $4, FALSE)
             ON CONFLICT (room_sid) DO UPDATE SET worker_id = excluded.worker_id, claimed_ms = excluded.claimed_ms, ended = FALSE
             WHERE agent_rooms.worker_id IS NULL OR agent_rooms.ended OR agent_rooms.worker_id = excluded.worker_id
                OR ($5::bigint IS NOT NULL AND NOT ",
                alive!(pg, "agent_rooms.worker_id"),
                ")"
            ),
            room_sid,
            room,
            worker_id,
            now_ms,
            alive_after_ms,
        )?;
        Ok(changed == 1)
    }

    /// `worker_id` lets go of `room_sid` (a room another worker has claimed since is left alone).
    pub async fn release_room(
        &self,
        room_sid: &str,
        worker_id: &str,
        how: Release,
    ) -> Result<(), StoreError> {
        let ended = how == Release::Ended;
        exec_both!(
            self,
            "UPDATE agent_rooms SET worker_id = NULL, ended = ?3 WHERE room_sid = ?1 AND worker_id = ?2",
            "UPDATE agent_rooms SET worker_id = NULL, ended = $3 WHERE room_sid = $1 AND worker_id = $2",
            room_sid,
            worker_id,
            ended,
        )?;
        Ok(())
    }

    /// The room instance is over (the server no longer has it): never taken over.
    pub async fn room_ended(&self, room_sid: &str) -> Result<(), StoreError> {
        exec_both!(
            self,
            "UPDATE agent_rooms SET worker_id = NULL, ended = TRUE WHERE room_sid = ?1",
            "UPDATE agent_rooms SET worker_id = NULL, ended = TRUE WHERE room_sid = $1",
            room_sid,
        )?;
        Ok(())
    }

    /// Rooms without a live agent (their worker let go, or is dead: see [`Self::claim_room`]),
    /// not taken by a sweeper since `retry_after_ms`; at most `limit`.
    pub async fn orphaned_rooms(
        &self,
        alive_after_ms: i64,
        retry_after_ms: i64,
        limit: i64,
    ) -> Result<Vec<OrphanedRoom>, StoreError> {
        let rows = on_both!(
            self,
            fetch_all,
            (String, String),
            concat!(
                "SELECT room_sid, room FROM agent_rooms r
             WHERE NOT r.ended AND (r.redispatched_ms IS NULL OR r.redispatched_ms <= ?2)
               AND (r.worker_id IS NULL OR NOT ",
                alive!(sqlite, "r.worker_id", "?1"),
                ") ORDER BY claimed_ms LIMIT ?3"
            ),
            concat!(
                "SELECT room_sid, room FROM agent_rooms r
             WHERE NOT r.ended AND (r.redispatched_ms IS NULL OR r.redispatched_ms <= $2)
               AND (r.worker_id IS NULL OR ($1::bigint IS NOT NULL AND NOT ",
                alive!(pg, "r.worker_id"),
                ")) ORDER BY claimed_ms LIMIT $3"
            ),
            alive_after_ms,
            retry_after_ms,
            limit,
        )?;
        Ok(rows
            .into_iter()
            .map(|(room_sid, room)| OrphanedRoom { room_sid, room })
            .collect())
    }

    /// Takes an orphaned room for re-dispatch: true for exactly one of the sweepers that try
    /// at once (and again only after `retry_after_ms`, should that dispatch come to nothing).
    pub async fn take_orphan(
        &self,
        room_sid: &str,
        now_ms: i64,
        retry_after_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec_both!(
            self,
            "UPDATE agent_rooms SET redispatched_ms = ?2
             WHERE room_sid = ?1 AND NOT ended AND (redispatched_ms IS NULL OR redispatched_ms <= ?3)",
            "UPDATE agent_rooms SET redispatched_ms = $2
             WHERE room_sid = $1 AND NOT ended AND (redispatched_ms IS NULL OR redispatched_ms <= $3)",
            room_sid,
            now_ms,
            retry_after_ms,
        )?;
        Ok(changed == 1)
    }

    /// Who serves `room_sid` now, if anyone (for tests and the console).
    pub async fn room_worker(&self, room_sid: &str) -> Result<Option<String>, StoreError> {
        let row = on_both!(
            self,
            fetch_optional,
            (Option<String>,),
            "SELECT worker_id FROM agent_rooms WHERE room_sid = ?1",
            "SELECT worker_id FROM agent_rooms WHERE room_sid = $1",
            room_sid,
        )?;
        Ok(row.and_then(|(w,)| w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        // A file: each pooled connection to `:memory:` would be a database of its own.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("room-leases-{}-{n}/store.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Store::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_room_held_by_a_live_worker_cannot_be_claimed() {
        let s = store().await;
        s.worker_heartbeat("a", 1_000, false).await.unwrap();
        s.worker_heartbeat("b", 1_000, false).await.unwrap();
        assert!(s.claim_room("RM_1", "r", "a", 1_000, 0).await.unwrap());
        assert!(!s.claim_room("RM_1", "r", "b", 1_100, 0).await.unwrap());
        // Claiming again is the holder's own business.
        assert!(s.claim_room("RM_1", "r", "a", 1_200, 0).await.unwrap());
        assert_eq!(s.room_worker("RM_1").await.unwrap().as_deref(), Some("a"));
        assert!(s.orphaned_rooms(500, 0, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_dead_workers_room_is_orphaned_and_taken_once() {
        let s = store().await;
        s.worker_heartbeat("a", 1_000, false).await.unwrap();
        assert!(s.claim_room("RM_1", "r", "a", 1_000, 0).await.unwrap());
        // a's beat is 1 000; alive means a beat after 2 000 now.
        let orphans = s.orphaned_rooms(2_000, 0, 10).await.unwrap();
        assert_eq!(
            orphans,
            vec![OrphanedRoom {
                room_sid: "RM_1".into(),
                room: "r".into()
            }]
        );
        assert!(s.take_orphan("RM_1", 3_000, 0).await.unwrap());
        assert!(
            !s.take_orphan("RM_1", 3_001, 0).await.unwrap(),
            "taken twice"
        );
        assert!(s.orphaned_rooms(2_000, 0, 10).await.unwrap().is_empty());
        // After the retry interval it can be taken again (the dispatch came to nothing).
        assert_eq!(s.orphaned_rooms(2_000, 3_000, 10).await.unwrap().len(), 1);
        // Another worker claims it: served again, not orphaned.
        s.worker_heartbeat("b", 3_500, false).await.unwrap();
        assert!(s.claim_room("RM_1", "r", "b", 3_500, 2_000).await.unwrap());
        assert!(
            s.orphaned_rooms(2_000, 10_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn released_rooms_end_or_wait_for_an_agent() {
        let s = store().await;
        s.worker_heartbeat("a", 1_000, false).await.unwrap();
        assert!(s.claim_room("RM_1", "r1", "a", 1_000, 0).await.unwrap());
        assert!(s.claim_room("RM_2", "r2", "a", 1_000, 0).await.unwrap());
        s.release_room("RM_1", "a", Release::Ended).await.unwrap();
        s.release_room("RM_2", "a", Release::Orphaned)
            .await
            .unwrap();
        // a is alive, but RM_2 has no worker.
        let orphans = s.orphaned_rooms(500, 0, 10).await.unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].room_sid, "RM_2");
        // A release by a worker that no longer holds the room changes nothing.
        s.worker_heartbeat("b", 1_000, false).await.unwrap();
        assert!(s.claim_room("RM_2", "r2", "b", 1_000, 500).await.unwrap());
        s.release_room("RM_2", "a", Release::Ended).await.unwrap();
        assert_eq!(s.room_worker("RM_2").await.unwrap().as_deref(), Some("b"));
        s.room_ended("RM_2").await.unwrap();
        assert!(s.orphaned_rooms(5_000, 0, 10).await.unwrap().is_empty());
        s.worker_gone("b").await.unwrap();
    }
}
