//! What is known about one recording: kept as `meta.json` beside the spooled bytes and the
//! finished file, and in the messaging store's `recordings` table.

use serde::{Deserialize, Serialize};

/// Lifecycle of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    /// Being written.
    Recording,
    /// Written; bytes still going to storage.
    Uploading,
    /// Whole and in storage.
    Complete,
    /// The agent died while writing: stored up to the last complete fragment.
    Partial,
}

/// A recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Recording)]
pub struct RecordingMeta {
    /// Unique, URL- and key-safe.
    pub id: String,
    pub room: String,
    pub started_unix_ms: i64,
    pub ended_unix_ms: Option<i64>,
    /// Everyone who appeared in the recording, in order of first appearance.
    pub participants: Vec<String>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<u64>,
    pub layout: String,
    /// `fmp4`.
    pub format: String,
    /// `local` or `s3`.
    pub storage: String,
    /// Object key in the bucket, or path under the recordings folder.
    pub key: String,
    pub status: RecordingStatus,
    /// Every screen share, with when its first picture reached the recording: a share
    /// that never sent one says so here (`first_frame_ms` empty) rather than silently
    /// missing from the picture.
    #[serde(default)]
    pub screen_shares: Vec<ShareSpan>,
}

/// A screen share as the recording saw it, in milliseconds into the recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShareSpan {
    pub identity: String,
    /// When the agent subscribed to it (about when it was published).
    pub subscribed_ms: u64,
    /// When its first picture went into the recording; `None`: none ever did.
    pub first_frame_ms: Option<u64>,
    /// When it ended (unpublished, its owner left, or the recording ended).
    pub ended_ms: Option<u64>,
}

impl RecordingMeta {
    /// A new recording of `room` starting now; the key is `<room>/<id>.mp4`.
    pub fn new(room: &str, started_unix_ms: i64, layout: &str, storage: &str) -> Self {
        let id = new_id(started_unix_ms);
        Self {
            key: format!("{}/{id}.mp4", key_safe(room)),
            id,
            room: room.to_string(),
            started_unix_ms,
            ended_unix_ms: None,
            participants: Vec::new(),
            duration_ms: None,
            size_bytes: None,
            layout: layout.to_string(),
            format: "fmp4".into(),
            storage: storage.to_string(),
            status: RecordingStatus::Recording,
            screen_shares: Vec::new(),
        }
    }

    pub fn add_participant(&mut self, identity: &str) {
        if !self.participants.iter().any(|p| p == identity) {
            self.participants.push(identity.to_string());
        }
    }
}

/// Time-ordered and unique within a process and across restarts: milliseconds, then a
/// counter and random bits.
fn new_id(started_unix_ms: i64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .is_err()
    {
        random = (std::process::id() ^ n.rotate_left(16)).to_le_bytes();
    }
    format!(
        "rec-{started_unix_ms:013}-{n:04x}{:08x}",
        u32::from_le_bytes(random)
    )
}

/// Room names may hold anything; object keys and file names get letters, digits, `-`, `_`, `.`.
pub fn key_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_keys_are_safe() {
        let a = RecordingMeta::new("team/../x y", 1_700_000_000_000, "grid", "s3");
        let b = RecordingMeta::new("team/../x y", 1_700_000_000_000, "grid", "s3");
        assert_ne!(a.id, b.id);
        assert!(a.key.starts_with("team_.._x_y/rec-1700000000000-"));
        assert!(!a.key.contains(' '));
        assert_eq!(key_safe(".."), "_");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<RecordingMeta>(&json).unwrap(), a);
    }
}
