//! Recording metadata in the messaging store: one row per recording, the whole
//! [`RecordingMeta`] as JSON beside the columns lists are filtered and ordered by.

use super::{Store, StoreError, exec_both, on_both};
use crate::recording::RecordingMeta;

impl Store {
    /// Inserts or replaces the recording's row (idempotent: delivery may repeat after a restart).
    pub async fn save_recording(&self, meta: &RecordingMeta) -> Result<(), StoreError> {
        let json = serde_json::to_string(meta).expect("metadata serialises");
        let status = serde_json::to_value(meta.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        exec_both!(
            self,
            "INSERT INTO recordings (id, room, started_at_ms, status, storage_key, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, storage_key = excluded.storage_key, meta = excluded.meta",
            "INSERT INTO recordings (id, room, started_at_ms, status, storage_key, meta) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, storage_key = excluded.storage_key, meta = excluded.meta",
            &meta.id,
            &meta.room,
            meta.started_unix_ms,
            status,
            &meta.key,
            json,
        )?;
        Ok(())
    }

    /// Recordings, newest first: of one room, or all.
    pub async fn recordings(&self, room: Option<&str>) -> Result<Vec<RecordingMeta>, StoreError> {
        self.find_recordings(room, None).await
    }

    pub async fn recording(&self, id: &str) -> Result<Option<RecordingMeta>, StoreError> {
        Ok(self.find_recordings(None, Some(id)).await?.pop())
    }

    async fn find_recordings(
        &self,
        room: Option<&str>,
        id: Option<&str>,
    ) -> Result<Vec<RecordingMeta>, StoreError> {
        let rows: Vec<(String,)> = on_both!(
            self,
            fetch_all,
            (String,),
            "SELECT meta FROM recordings WHERE (?1 IS NULL OR room = ?1) AND (?2 IS NULL OR id = ?2) ORDER BY started_at_ms DESC",
            "SELECT meta FROM recordings WHERE ($1::text IS NULL OR room = $1) AND ($2::text IS NULL OR id = $2) ORDER BY started_at_ms DESC",
            room,
            id
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(json,)| match serde_json::from_str(&json) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a recording row with unreadable metadata");
                    None
                }
            })
            .collect())
    }

    pub async fn delete_recording(&self, id: &str) -> Result<bool, StoreError> {
        Ok(exec_both!(
            self,
            "DELETE FROM recordings WHERE id = ?1",
            "DELETE FROM recordings WHERE id = $1",
            id
        )? > 0)
    }
}
