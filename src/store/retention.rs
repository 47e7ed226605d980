//! Deletions for retention: a meeting's transcript (its segments and transcript batches; the
//! meeting, its thread's other messages and its summary stay) and its call-quality samples, and
//! a media job with its transcript reply. Each is idempotent: deleting again deletes nothing.

use super::{Store, StoreError, exec_both};

impl Store {
    /// Deletes `meeting_id`'s transcript; (segments, messages) deleted.
    pub async fn delete_transcript(&self, meeting_id: &str) -> Result<(u64, u64), StoreError> {
        let segments = exec_both!(
            self,
            "DELETE FROM transcript_segments WHERE meeting_id = ?1",
            "DELETE FROM transcript_segments WHERE meeting_id = $1",
            meeting_id
        )?;
        let messages = exec_both!(
            self,
            "DELETE FROM messages WHERE conversation_id = ?1 AND kind = 'transcript'",
            "DELETE FROM messages WHERE conversation_id = $1 AND kind = 'transcript'",
            meeting_id
        )?;
        Ok((segments, messages))
    }

    /// How much of `meeting_id`'s transcript is stored: (segments, messages).
    pub async fn transcript_size(&self, meeting_id: &str) -> Result<(u64, u64), StoreError> {
        let (segments,): (i64,) = super::on_both!(
            self,
            fetch_one,
            (i64,),
            "SELECT COUNT(*) FROM transcript_segments WHERE meeting_id = ?1",
            "SELECT COUNT(*) FROM transcript_segments WHERE meeting_id = $1",
            meeting_id
        )?;
        let (messages,): (i64,) = super::on_both!(
            self,
            fetch_one,
            (i64,),
            "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND kind = 'transcript'",
            "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND kind = 'transcript'",
            meeting_id
        )?;
        Ok((segments as u64, messages as u64))
    }

    /// Deletes a media job and the transcript it posted; true when the job existed.
    pub async fn delete_media_job(&self, message_id: &str) -> Result<bool, StoreError> {
        exec_both!(
            self,
            "DELETE FROM messages WHERE id = ?1 AND kind = 'media_transcript'",
            "DELETE FROM messages WHERE id = $1 AND kind = 'media_transcript'",
            format!("{message_id}/transcript")
        )?;
        let jobs = exec_both!(
            self,
            "DELETE FROM media_jobs WHERE message_id = ?1",
            "DELETE FROM media_jobs WHERE message_id = $1",
            message_id
        )?;
        Ok(jobs > 0)
    }

    /// Deletes `meeting_id`'s call-quality samples; how many.
    pub async fn delete_quality_samples(&self, meeting_id: &str) -> Result<u64, StoreError> {
        exec_both!(
            self,
            "DELETE FROM quality_samples WHERE meeting_id = ?1",
            "DELETE FROM quality_samples WHERE meeting_id = $1",
            meeting_id
        )
        .map_err(Into::into)
    }

    /// How many call-quality samples `meeting_id` has.
    pub async fn quality_sample_count(&self, meeting_id: &str) -> Result<u64, StoreError> {
        let (n,): (i64,) = super::on_both!(
            self,
            fetch_one,
            (i64,),
            "SELECT COUNT(*) FROM quality_samples WHERE meeting_id = ?1",
            "SELECT COUNT(*) FROM quality_samples WHERE meeting_id = $1",
            meeting_id
        )?;
        Ok(n as u64)
    }
}
