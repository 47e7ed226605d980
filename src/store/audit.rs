//! The audit log of meeting controls: who did what to whom in which room, when, and how it
//! ended (refusals included).

use serde::Serialize;

use super::{Store, StoreError, exec_both, on_both};

/// Most entries one listing returns.
pub const MAX_LISTED: i64 = 1000;

#[derive(Debug, Clone, Serialize, PartialEq)]
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
