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
    /// The room's composite recording, or one participant's sound on its own.
    #[serde(default)]
    pub kind: RecordingKind,
    /// Per-participant recordings: whose microphone it is (identity).
    #[serde(default)]
    pub participant: Option<String>,
    /// Per-participant recordings: the id of the room's composite recording it was made
    /// beside.
    #[serde(default)]
    pub parent: Option<String>,
}

/// What a recording holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKind {
    /// Every camera laid out and every microphone mixed: `<room>/<id>.mp4`.
    #[default]
    Composite,
    /// One participant's microphone (AAC in fragmented MP4):
    /// `<room>/<composite id>/<identity>-<id>.m4a`.
    Participant,
}

impl RecordingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Composite => "composite",
            Self::Participant => "participant",
        }
    }
}

/// How much of an identity goes into a per-participant recording's key: identities are
/// chosen by clients, and the recording's own id keeps keys unique anyway.
const IDENTITY_IN_KEY: usize = 64;

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
            kind: RecordingKind::Composite,
            participant: None,
            parent: None,
        }
    }

    /// A new recording of `identity`'s microphone on its own, beside the composite recording
    /// `parent`; the key is `<room>/<parent id>/<identity, key-safe, at most 64 characters>-<id>.m4a`.
    pub fn participant(
        parent: &RecordingMeta,
        identity: &str,
        started_unix_ms: i64,
        storage: &str,
    ) -> Self {
        let mut meta = Self::new(&parent.room, started_unix_ms, "audio", storage);
        // No dots: the name never reads as `..` or a hidden file, whatever the identity.
        let name: String = key_safe(identity)
            .chars()
            .take(IDENTITY_IN_KEY)
            .map(|c| if c == '.' { '_' } else { c })
            .collect();
        meta.key = format!(
            "{}/{}/{name}-{}.m4a",
            key_safe(&parent.room),
            key_safe(&parent.id),
            meta.id
        );
        meta.kind = RecordingKind::Participant;
        meta.participant = Some(identity.to_string());
        meta.parent = Some(parent.id.clone());
        meta.participants = vec![identity.to_string()];
        meta
    }

    /// A per-participant recording with the participant's camera: MP4 rather than M4A.
    pub fn with_video(mut self) -> Self {
        if let Some(stem) = self.key.strip_suffix(".m4a") {
            self.key = format!("{stem}.mp4");
        }
        self.layout = "camera".into();
        self
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
        assert_eq!(a.kind, RecordingKind::Composite);
    }

    #[test]
    fn metadata_written_before_per_participant_recordings_reads_as_a_composite() {
        let old = r#"{"id":"rec-1","room":"r","started_unix_ms":1,"ended_unix_ms":null,
            "participants":[],"duration_ms":null,"size_bytes":null,"layout":"grid",
            "format":"fmp4","storage":"s3","key":"r/rec-1.mp4","status":"complete"}"#;
        let meta: RecordingMeta = serde_json::from_str(old).unwrap();
        assert_eq!(meta.kind, RecordingKind::Composite);
        assert_eq!((meta.participant, meta.parent), (None, None));
    }

    #[test]
    fn a_hostile_identity_makes_a_short_safe_key_under_its_room_and_recording() {
        let parent = RecordingMeta::new("team", 1_700_000_000_000, "grid", "s3");
        for identity in [
            "../../etc/passwd".to_string(),
            "/abs".into(),
            "..".into(),
            "".into(),
            "a\\b\0c\nd".into(),
            "ü".repeat(300),
            "x".repeat(5000),
        ] {
            let m = RecordingMeta::participant(&parent, &identity, 1_700_000_000_001, "s3");
            let prefix = format!("team/{}/", parent.id);
            assert!(m.key.starts_with(&prefix), "{:?}", m.key);
            let name = &m.key[prefix.len()..];
            assert!(!name.contains('/') && !name.starts_with('.'), "{name:?}");
            assert!(name.ends_with(&format!("-{}.m4a", m.id)), "{name:?}");
            assert!(
                m.key.len() < prefix.len() + 64 + m.id.len() + 6,
                "{}",
                m.key.len()
            );
            assert!(
                m.key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            );
            assert!(
                std::path::Path::new(&m.key)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            );
            assert_eq!(m.participant.as_deref(), Some(identity.as_str()));
            assert_eq!(m.parent.as_deref(), Some(parent.id.as_str()));
            assert_eq!(m.kind, RecordingKind::Participant);
        }
        // Two identities that read alike still get keys of their own.
        let a = RecordingMeta::participant(&parent, "a/b", 1, "s3");
        let b = RecordingMeta::participant(&parent, "a_b", 1, "s3");
        assert_ne!(a.key, b.key);
    }
}
