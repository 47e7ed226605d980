//! A media worker: claims jobs from the store's queue one at a time, fetches the attachment
//! (a file under `media_messages.dir`, or an S3 key), processes it, and writes the result back:
//! the job's result, and a `media_transcript` message replying to the attachment's message in
//! its conversation (so the existing full-text search finds it). The claim's lease is renewed
//! while a job runs; a bad file fails at once with its reason, anything else is retried with
//! doubling delays up to `media_messages.max_attempts`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Limits, MediaError, MediaResult, process};
use crate::config::MediaMessagesConfig;
use crate::features::captions::Captioning;
use crate::recording::s3::S3Store;
use crate::store::{Claim, Message, Store, StoreError};

/// The kind of the message a transcript is posted as.
pub const TRANSCRIPT_KIND: &str = "media_transcript";
/// Where files made from attachments (posters) are kept, in the media folder or the bucket.
pub const DERIVATIVES: &str = "derivatives";
/// The longest delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(3600);

fn now_ms() -> i64 {
    crate::captions::journal::unix_ms() as i64
}

/// How one claimed job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(MediaResult),
    /// Failed for good, with the reason the sender is shown.
    Failed(String),
    /// Queued again for a later attempt.
    Retry(String),
    /// Another worker took the job over (this one's lease ran out).
    Lost,
}

pub struct MediaWorker {
    pub id: String,
    store: Store,
    captioning: Captioning,
    config: MediaMessagesConfig,
    dir: PathBuf,
    s3: Option<Arc<S3Store>>,
    bot_user: String,
    /// `media_message.transcribed` for webhooks.
    events: Option<crate::integrations::Events>,
}

impl MediaWorker {
    /// `dir`: where `file:` attachments live (created if missing); `s3`: the bucket `s3:`
    /// attachments are read from, when one is configured.
    pub fn new(
        store: Store,
        captioning: Captioning,
        config: MediaMessagesConfig,
        dir: PathBuf,
        s3: Option<Arc<S3Store>>,
        bot_user: String,
    ) -> Self {
        let id = format!(
            "{}-{}-{:x}",
            hostname(),
            std::process::id(),
            now_ms() & 0xffff_ffff
        );
        Self {
            id,
            store,
            captioning,
            config,
            dir,
            s3,
            bot_user,
            events: None,
        }
    }

    pub fn with_events(mut self, events: Option<crate::integrations::Events>) -> Self {
        self.events = events;
        self
    }

    /// Works until `shutdown` turns true: a job at a time, idle ones polling every
    /// `media_messages.poll_ms` (PostgreSQL's NOTIFY wakes them at once).
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut listener = self.listen().await;
        tracing::info!(worker = %self.id, "media worker started");
        while !*shutdown.borrow() {
            match self.run_once().await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "media queue unavailable; retrying"),
            }
            let poll = Duration::from_millis(self.config.poll_ms.max(10));
            let notified = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = l.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = notified => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.id, "media worker stopped");
    }

    async fn listen(&self) -> Option<sqlx::postgres::PgListener> {
        self.store
            .listener(crate::store::media_jobs::NOTIFY_CHANNEL)
            .await
    }

    /// Claims and runs one job; `None` when none is due.
    pub async fn run_once(&self) -> Result<Option<(String, Outcome)>, StoreError> {
        let lease_ms = self.config.lease_secs.max(1) as i64 * 1000;
        let Some(claim) = self.store.claim_media(&self.id, now_ms(), lease_ms).await? else {
            return Ok(None);
        };
        tracing::info!(worker = %self.id, message_id = %claim.message_id, attempt = claim.attempt, "media job claimed");
        let work = self.work(&claim);
        tokio::pin!(work);
        // Renew the lease while the job runs, so a long one is not taken over.
        let mut renew = tokio::time::interval(Duration::from_millis(lease_ms as u64 / 3));
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    let until = now_ms() + lease_ms;
                    if !self.store.renew_media_lease(&claim.message_id, &self.id, until).await? {
                        return Ok(Some((claim.message_id.clone(), Outcome::Lost)));
                    }
                }
            }
        };
        let outcome = self.record(&claim, result).await?;
        tracing::info!(worker = %self.id, message_id = %claim.message_id, outcome = outcome_name(&outcome), "media job ended");
        Ok(Some((claim.message_id.clone(), outcome)))
    }

    async fn work(&self, claim: &Claim) -> Result<MediaResult, MediaError> {
        let limits = Limits {
            max_seconds: self.config.max_seconds,
            waveform_bars: self.config.waveform_bars,
        };
        let (path, temporary) = self.fetch(&claim.source).await?;
        let processed = process(&path, &self.captioning, &limits).await;
        if temporary {
            let _ = std::fs::remove_file(&path);
        }
        let (mut result, poster) = processed?;
        if let Some(jpeg) = poster {
            result.poster = Some(self.store_derivative(claim, "poster.jpg", jpeg).await?);
        }
        let conversation = self
            .store
            .message_conversation(&claim.message_id)
            .await
            .map_err(|e| MediaError::Transient(e.to_string()))?
            .flatten()
            .unwrap_or_default();
        if !result.transcript.is_empty() {
            let transcript = Message {
                id: format!("{}/transcript", claim.message_id),
                conversation_id: conversation,
                sender_id: self.bot_user.clone(),
                recipient_id: None,
                reply_to: Some(claim.message_id.clone()),
                kind: TRANSCRIPT_KIND.into(),
                text: result.transcript.clone(),
                created_at_ms: now_ms(),
            };
            self.store
                .post(&[transcript])
                .await
                .map_err(|e| MediaError::Transient(e.to_string()))?;
        }
        Ok(result)
    }

    async fn record(
        &self,
        claim: &Claim,
        result: Result<MediaResult, MediaError>,
    ) -> Result<Outcome, StoreError> {
        let now = now_ms();
        let (kept, outcome) = match result {
            Ok(done) => {
                let json = serde_json::to_string(&done).unwrap_or_default();
                let kept = self
                    .store
                    .finish_media(&claim.message_id, &self.id, &json, now)
                    .await?;
                if let (true, Some(events)) = (kept, &self.events) {
                    let mut data = serde_json::to_value(&done).unwrap_or_default();
                    data["message_id"] = claim.message_id.clone().into();
                    let event = crate::integrations::Event::new(
                        "media_message.transcribed",
                        None,
                        &claim.message_id,
                        now,
                        data,
                    );
                    if let Err(e) = events.emit(&event, now).await {
                        tracing::warn!(error = %e, "webhook event not written");
                    }
                }
                (kept, Outcome::Done(done))
            }
            Err(MediaError::Bad(reason)) => {
                let kept = self
                    .store
                    .fail_media(&claim.message_id, &self.id, &reason, None, now)
                    .await?;
                (kept, Outcome::Failed(reason))
            }
            Err(MediaError::Transient(reason)) => {
                if claim.attempt >= self.config.max_attempts {
                    let reason = format!("gave up after {} attempts: {reason}", claim.attempt);
                    let kept = self
                        .store
                        .fail_media(&claim.message_id, &self.id, &reason, None, now)
                        .await?;
                    (kept, Outcome::Failed(reason))
                } else {
                    let delay = retry_delay(self.config.retry_secs, claim.attempt);
                    let at = now + delay.as_millis() as i64;
                    let kept = self
                        .store
                        .fail_media(&claim.message_id, &self.id, &reason, Some(at), now)
                        .await?;
                    (kept, Outcome::Retry(reason))
                }
            }
        };
        Ok(if kept { outcome } else { Outcome::Lost })
    }

    /// The attachment as a local file (`true`: a temporary copy to remove afterwards).
    async fn fetch(&self, source: &str) -> Result<(PathBuf, bool), MediaError> {
        if let Some(relative) = source.strip_prefix("file:") {
            let path = inside(&self.dir, relative)?;
            let size = std::fs::metadata(&path)
                .map_err(|_| MediaError::Bad("the attachment is missing".into()))?
                .len();
            self.check_size(size)?;
            return Ok((path, false));
        }
        if let Some(key) = source.strip_prefix("s3:") {
            let s3 = self
                .s3
                .as_ref()
                .ok_or_else(|| MediaError::Bad("no S3 storage is configured".into()))?;
            let bytes = s3
                .get_object(key)
                .await
                .map_err(|e| MediaError::Transient(format!("cannot fetch {key}: {e}")))?;
            self.check_size(bytes.len() as u64)?;
            let scratch = self.dir.join(".work");
            std::fs::create_dir_all(&scratch)
                .map_err(|e| MediaError::Transient(format!("cannot write: {e}")))?;
            let path = scratch.join(format!("{}-{}", self.id, now_ms()));
            std::fs::write(&path, bytes)
                .map_err(|e| MediaError::Transient(format!("cannot write: {e}")))?;
            return Ok((path, true));
        }
        Err(MediaError::Bad(format!(
            "unknown attachment source {source:?}: file:PATH or s3:KEY"
        )))
    }

    /// Keeps a file made from the attachment where the attachment came from: beside it in the
    /// media folder (`derivatives/`), or in the bucket. Named by a hash of the message id, so
    /// no id can name a path. Returns where it is, as a source.
    async fn store_derivative(
        &self,
        claim: &Claim,
        what: &str,
        bytes: Vec<u8>,
    ) -> Result<String, MediaError> {
        let name = format!("{}-{what}", derivative_stem(&claim.message_id));
        let failed = |e: String| MediaError::Transient(format!("cannot store the {what}: {e}"));
        if claim.source.starts_with("s3:") {
            let s3 = self
                .s3
                .as_ref()
                .ok_or_else(|| failed("no S3 storage".into()))?;
            let key = format!("{DERIVATIVES}/{name}");
            s3.put_object(&key, bytes, "image/jpeg")
                .await
                .map_err(|e| failed(e.to_string()))?;
            return Ok(format!("s3:{key}"));
        }
        let dir = self.dir.join(DERIVATIVES);
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        std::fs::write(dir.join(&name), bytes).map_err(|e| failed(e.to_string()))?;
        Ok(format!("file:{DERIVATIVES}/{name}"))
    }

    fn check_size(&self, size: u64) -> Result<(), MediaError> {
        if size > self.config.max_bytes {
            return Err(MediaError::Bad(format!(
                "larger than {} bytes, the most read",
                self.config.max_bytes
            )));
        }
        Ok(())
    }
}

/// The start of a message's derivative files' names: a hash of its id.
pub fn derivative_stem(message_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(message_id.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `relative` under `dir`, refused when it would leave it (`..`, an absolute path, a link
/// out of it).
pub fn inside(dir: &Path, relative: &str) -> Result<PathBuf, MediaError> {
    let refused = || MediaError::Bad("the attachment path is not inside the media folder".into());
    if !super::plain_relative(relative) {
        return Err(refused());
    }
    let root = dir
        .canonicalize()
        .map_err(|_| MediaError::Bad("the media folder is missing".into()))?;
    let path = root
        .join(relative)
        .canonicalize()
        .map_err(|_| MediaError::Bad("the attachment is missing".into()))?;
    if !path.starts_with(&root) {
        return Err(refused());
    }
    Ok(path)
}

/// The delay before attempt `attempt + 1`: `first` doubled per attempt, at most an hour.
pub fn retry_delay(first_secs: u64, attempt: i64) -> Duration {
    let doublings = attempt.clamp(1, 20) as u32 - 1;
    Duration::from_secs(first_secs.saturating_mul(1 << doublings)).min(MAX_RETRY)
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done(_) => "done",
        Outcome::Failed(_) => "failed",
        Outcome::Retry(_) => "retry",
        Outcome::Lost => "lost",
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_and_stop_at_an_hour() {
        assert_eq!(retry_delay(5, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(5, 3), Duration::from_secs(20));
        assert_eq!(retry_delay(5, 30), MAX_RETRY);
    }

    #[test]
    fn attachment_paths_stay_inside_the_media_folder() {
        let dir = std::env::temp_dir().join(format!("media-inside-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("room")).unwrap();
        std::fs::write(dir.join("room/a.ogg"), b"OggS").unwrap();
        assert!(inside(&dir, "room/a.ogg").is_ok());
        for bad in ["", "/etc/passwd", "../x", "room/../../x", "./room/a.ogg"] {
            assert!(
                matches!(inside(&dir, bad), Err(MediaError::Bad(_))),
                "{bad}"
            );
        }
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        assert!(matches!(
            inside(&dir, "out/hostname"),
            Err(MediaError::Bad(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
