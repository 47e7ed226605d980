//! The transcript journal: every final caption appended as one JSON line and synced to disk
//! before it is acknowledged, so a crash loses at most the utterance in progress. A final the
//! recognizer refused (its queue was full) is kept with its times, no text and
//! `"untranscribed": true`. The file is created readable by the agent's user only (0600).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::publisher::Caption;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub room: String,
    pub participant: String,
    pub track_sid: String,
    pub segment_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub language: String,
    pub text: String,
    /// Wall-clock time the entry was written, Unix milliseconds.
    pub written_at_ms: u64,
    /// The utterance was not transcribed (the recognizer's queue was full): `text` is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untranscribed: bool,
}

#[derive(Clone)]
pub struct Journal {
    file: Arc<Mutex<std::fs::File>>,
    pub path: PathBuf,
    room: String,
}

impl Journal {
    /// Opens (appending) `<dir>/transcripts/<room>-<session start>.jsonl`.
    pub fn open(data_dir: &Path, room: &str, started_unix_ms: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = data_dir.join("transcripts");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let safe: String = room
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{safe}-{started_unix_ms}.jsonl"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
            path,
            room: room.to_string(),
        })
    }

    /// The room this journal is for.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Appends and syncs a final caption (blocking: call from a blocking context).
    pub fn append(&self, caption: &Caption) -> std::io::Result<()> {
        self.write(caption, false)
    }

    /// Appends and syncs a final the recognizer refused: its times, no text (blocking).
    pub fn append_untranscribed(&self, caption: &Caption) -> std::io::Result<()> {
        self.write(
            &Caption {
                text: String::new(),
                ..caption.clone()
            },
            true,
        )
    }

    fn write(&self, caption: &Caption, untranscribed: bool) -> std::io::Result<()> {
        let entry = JournalEntry {
            room: self.room.clone(),
            participant: caption.participant.clone(),
            track_sid: caption.track_sid.clone(),
            segment_id: caption.segment_id.clone(),
            start_ms: caption.start_ms,
            end_ms: caption.end_ms,
            language: caption.language.clone(),
            text: caption.text.clone(),
            written_at_ms: unix_ms(),
            untranscribed,
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Every complete entry of a journal file; a torn last line (crash mid-write) is skipped.
    pub fn read(path: &Path) -> std::io::Result<Vec<JournalEntry>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_and_a_torn_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("journal-{}", std::process::id()));
        let journal = Journal::open(&dir, "weekly sync", 1).unwrap();
        let caption = Caption {
            participant: "alice".into(),
            track_sid: "TR_1".into(),
            segment_id: "SG_1".into(),
            text: "hello".into(),
            is_final: true,
            start_ms: 100,
            end_ms: 900,
            language: "en".into(),
        };
        journal.append(&caption).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal.path)
            .unwrap()
            .write_all(b"{\"room\":\"weekly")
            .unwrap();
        let entries = Journal::read(&journal.path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].text.as_str(), entries[0].room.as_str()),
            ("hello", "weekly sync")
        );
        assert!(
            journal
                .path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("weekly_sync-")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_journal_is_private_and_keeps_refused_finals() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("journal-mode-{}", std::process::id()));
        // Whatever the process's umask, only the agent's user can read the transcript.
        let journal = Journal::open(&dir, "private", 2).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&journal.path), 0o600);
        assert_eq!(mode(&dir.join("transcripts")), 0o700);
        let caption = Caption {
            participant: "bob".into(),
            track_sid: "TR_2".into(),
            segment_id: "SG_TR_2_7".into(),
            text: "should not be kept".into(),
            is_final: true,
            start_ms: 1_000,
            end_ms: 4_000,
            language: "en".into(),
        };
        journal.append_untranscribed(&caption).unwrap();
        journal.append(&caption).unwrap();
        let entries = Journal::read(&journal.path).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].untranscribed && entries[0].text.is_empty());
        assert_eq!(
            (
                entries[0].segment_id.as_str(),
                entries[0].start_ms,
                entries[0].end_ms
            ),
            ("SG_TR_2_7", 1_000, 4_000)
        );
        assert!(!entries[1].untranscribed);
        let raw = std::fs::read_to_string(&journal.path).unwrap();
        assert_eq!(raw.matches("untranscribed").count(), 1, "{raw}");
        std::fs::remove_dir_all(dir).ok();
    }
}
