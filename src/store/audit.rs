//! The audit log of meeting controls: who did what to whom in which room, when, and how it
//! ended (refusals included).

use serde::Serialize;

use super::{Store, StoreError, exec_both, on_both};

/// Most entries one listing returns.
pub const MAX_LISTED: i64 = 1000;

/// A control action.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    pub room: String,
    pub at_ms: i64,
    /// The participant's identity, or `key:<id>` for an operator's API key.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// `ok`, or the status and message it was refused with.
    pub result: String,
}

impl AuditEntry {
    /// The entry as a line of a meeting's export.
    pub fn describe(&self) -> String {
        let target = self
            .target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        format!(
            "meeting control: {} {}{target} ({})",
            self.actor, self.action, self.result
        )
    }
}

impl Store {
    pub async fn add_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        exec_both!(
            self,
            "INSERT INTO audit_log (room, at_ms, actor, action, target, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            "INSERT INTO audit_log (room, at_ms, actor, action, target, result) VALUES ($1, $2, $3, $4, $5, $6)",
            &entry.room,
            entry.at_ms,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.result,
        )?;
        Ok(())
    }

    /// The room's entries from `from_ms` to `to_ms`, oldest first (at most [`MAX_LISTED`]):
    /// what happened during one meeting, for its exports.
    pub async fn audit_between(
        &self,
        room: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries: Vec<AuditEntry> = self
            .audit(room, MAX_LISTED)
            .await?
            .into_iter()
            .filter(|e| (from_ms..=to_ms).contains(&e.at_ms))
            .collect();
        entries.reverse();
        Ok(entries)
    }

    /// The meeting controls during `meeting`, as notes of its export.
    pub async fn meeting_notes(
        &self,
        meeting: &super::Meeting,
    ) -> Result<Vec<crate::captions::export::Note>, StoreError> {
        let to_ms = meeting.ended_at_ms.unwrap_or(i64::MAX);
        Ok(self
            .audit_between(&meeting.room, meeting.started_at_ms, to_ms)
            .await?
            .iter()
            .map(|e| crate::captions::export::Note {
                at_ms: e.at_ms - meeting.started_at_ms,
                text: e.describe(),
            })
            .collect())
    }

    /// The room's entries, newest first, at most `limit` (and [`MAX_LISTED`]).
    pub async fn audit(&self, room: &str, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<(String, i64, String, String, Option<String>, String)> = on_both!(
            self,
            fetch_all,
            (String, i64, String, String, Option<String>, String),
            "SELECT room, at_ms, actor, action, target, result FROM audit_log WHERE room = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
            "SELECT room, at_ms, actor, action, target, result FROM audit_log WHERE room = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
            room,
            limit.clamp(0, MAX_LISTED),
        )?;
        Ok(rows
            .into_iter()
            .map(|(room, at_ms, actor, action, target, result)| AuditEntry {
                room,
                at_ms,
                actor,
                action,
                target,
                result,
            })
            .collect())
    }
}
