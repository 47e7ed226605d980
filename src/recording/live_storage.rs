//! Live HLS in storage: follows a spool while it is written, stores each segment the
//! [`Cutter`] closes as its own object and rewrites the playlist after it; reads them back
//! for the API (as links, or the bytes themselves for a browser on the API's origin).

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::live_hls::{self, Cut, Cutter, Listed};
use super::s3::S3ErrorKind;
use super::spool::{SpoolFollower, SpoolState, spool_err, write_atomic};
use super::storage::{Backoff, Storage, key_path};
use super::{RecordingError, RecordingMeta};

/// How the live playlist is cut and listed.
#[derive(Debug, Clone, Copy)]
pub struct LiveHlsSettings {
    /// A segment's length: the encoder's key-frame interval.
    pub segment_secs: f64,
    /// Segments the playlist lists while the meeting runs.
    pub window: usize,
}

pub static LIVE_SEGMENTS: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        crate::metrics::counter(
            "meeting_agent_live_hls_segments_total",
            "Live HLS segments stored while recordings were written.",
        )
    });

/// The most a stored object read back for the API may be (a segment is a few hundred KB).
const MAX_SERVED_OBJECT: u64 = 64 << 20;

impl Storage {
    /// Publishes the spool `follower` follows as live HLS until the writer is done, then
    /// leaves the VOD playlist. Storage errors are retried (S3: with the upload's backoff);
    /// the recording itself is delivered by [`Storage::deliver`] beside this, whatever
    /// happens here.
    pub async fn publish_live(
        &self,
        mut follower: SpoolFollower,
        settings: LiveHlsSettings,
    ) -> Result<usize, RecordingError> {
        let meta = follower.meta()?;
        let prefix = live_hls::live_prefix(&meta.key);
        key_path(&prefix)?;
        let path = follower.recording_path();
        // One handle for the whole recording: it still reads once delivery removed the spool.
        let mut file = std::fs::File::open(&path).map_err(|e| spool_err(&path, e))?;
        let mut cutter = Cutter::new(settings.segment_secs);
        let mut listed: Vec<Listed> = Vec::new();
        let mut init_stored = false;
        let mut backoff = self.live_backoff();
        loop {
            let progress = follower.progress();
            let done = progress.state != SpoolState::Writing;
            let cuts = match cutter.scan(&mut file, progress.written) {
                Ok(cuts) => cuts,
                // An abandoned spool is cut to its last complete fragment meanwhile.
                Err(e) if done => {
                    tracing::debug!(recording = %meta.id, error = %e, "live HLS: end of an abandoned spool");
                    Vec::new()
                }
                Err(e) => return Err(spool_err(&path, e)),
            };
            if !init_stored && let Some(init_len) = cutter.init_len() {
                let bytes = read_range(&mut file, 0, init_len).map_err(|e| spool_err(&path, e))?;
                self.put_live(&meta, &prefix, live_hls::INIT, bytes, &mut backoff)
                    .await?;
                init_stored = true;
            }
            let mut changed = false;
            let last = if done { cutter.finish() } else { None };
            for cut in cuts.into_iter().chain(last) {
                self.store_segment(&meta, &prefix, &mut file, &cut, &mut listed, &mut backoff)
                    .await?;
                changed = true;
            }
            if changed || (done && init_stored) {
                let text = live_hls::playlist(&listed, settings.window, done);
                self.put_live(
                    &meta,
                    &prefix,
                    live_hls::PLAYLIST,
                    text.into_bytes(),
                    &mut backoff,
                )
                .await?;
            }
            if done {
                tracing::info!(recording = %meta.id, segments = listed.len(), "live HLS finished as VOD");
                return Ok(listed.len());
            }
            follower.wait_for(progress.written + 1).await;
        }
    }

    async fn store_segment(
        &self,
        meta: &RecordingMeta,
        prefix: &str,
        file: &mut std::fs::File,
        cut: &Cut,
        listed: &mut Vec<Listed>,
        backoff: &mut Backoff,
    ) -> Result<(), RecordingError> {
        let number = listed.len() as u64;
        let bytes = read_range(file, cut.offset, cut.len).map_err(|e| RecordingError::Spool {
            path: prefix.into(),
            source: e,
        })?;
        let start_ms = listed
            .iter()
            .map(|s| (s.seconds * 1000.0).round() as i64)
            .sum::<i64>();
        self.put_live(
            meta,
            prefix,
            &live_hls::segment_name(number),
            bytes,
            backoff,
        )
        .await?;
        LIVE_SEGMENTS.inc();
        listed.push(Listed {
            number,
            seconds: cut.seconds,
            start_unix_ms: meta.started_unix_ms + start_ms,
            independent: cut.independent,
        });
        Ok(())
    }

    fn live_backoff(&self) -> Backoff {
        match self {
            Storage::S3(s3) => Backoff::new(s3.retry_backoff()),
            Storage::Local { .. } => {
                Backoff::new((Duration::from_millis(500), Duration::from_secs(5)))
            }
        }
    }

    /// Stores one live object, retrying S3 until it takes it.
    async fn put_live(
        &self,
        meta: &RecordingMeta,
        prefix: &str,
        name: &str,
        bytes: Vec<u8>,
        backoff: &mut Backoff,
    ) -> Result<(), RecordingError> {
        let key = format!("{prefix}{name}");
        match self {
            Storage::Local { dir } => {
                let path = dir.join(key_path(&key)?);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| spool_err(parent, e))?;
                }
                write_atomic(&path, &bytes)
            }
            Storage::S3(s3) => loop {
                match s3
                    .put_object(&key, bytes.clone(), live_hls::content_type(name))
                    .await
                {
                    Ok(()) => {
                        backoff.reset();
                        return Ok(());
                    }
                    Err(e) if e.kind == S3ErrorKind::LocalIo => return Err(e.into()),
                    Err(e) => backoff.wait(&meta.id, &e).await,
                }
            },
        }
    }

    /// The live playlist of `meta` as stored, each object named by `link(name)`.
    pub async fn live_playlist_text(&self, meta: &RecordingMeta) -> Result<String, RecordingError> {
        let bytes = self.live_object(meta, live_hls::PLAYLIST).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A presigned link to one live object (S3 only; `None` for local storage, whose files
    /// only the API serves).
    pub async fn live_link(
        &self,
        meta: &RecordingMeta,
        name: &str,
        expiry: Duration,
    ) -> Result<Option<String>, RecordingError> {
        match self {
            Storage::Local { .. } => Ok(None),
            Storage::S3(s3) => {
                let key = format!("{}{name}", live_hls::live_prefix(&meta.key));
                Ok(Some(s3.presign_get(&key, expiry).await?))
            }
        }
    }

    /// The bytes of one live object (`name` as [`live_hls::valid_name`] allows).
    pub async fn live_object(
        &self,
        meta: &RecordingMeta,
        name: &str,
    ) -> Result<Vec<u8>, RecordingError> {
        if !live_hls::valid_name(name) {
            return Err(RecordingError::NotFound(meta.id.clone()));
        }
        let key = format!("{}{name}", live_hls::live_prefix(&meta.key));
        let missing = || RecordingError::NotFound(meta.id.clone());
        match self {
            Storage::Local { dir } => {
                let path = dir.join(key_path(&key)?);
                let mut file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                    Err(e) => return Err(spool_err(&path, e)),
                };
                let mut out = Vec::new();
                (&mut file)
                    .take(MAX_SERVED_OBJECT)
                    .read_to_end(&mut out)
                    .map_err(|e| spool_err(&path, e))?;
                Ok(out)
            }
            Storage::S3(s3) => match s3.head(&key).await? {
                None => Err(missing()),
                Some(head) if head.size > MAX_SERVED_OBJECT => Err(RecordingError::Metadata {
                    path: key.into(),
                    message: "live object too large to serve".into(),
                }),
                Some(_) => match s3.get_object(&key).await {
                    Ok(bytes) => Ok(bytes),
                    Err(e) if e.kind == S3ErrorKind::NotFound => Err(missing()),
                    Err(e) => Err(e.into()),
                },
            },
        }
    }

    /// Deletes the live objects of `meta` (none is fine).
    pub(super) async fn delete_live(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        let prefix = live_hls::live_prefix(&meta.key);
        match self {
            Storage::Local { dir } => {
                let path = dir.join(key_path(&prefix)?);
                match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(spool_err(&path, e)),
                    _ => Ok(()),
                }
            }
            Storage::S3(s3) => {
                for entry in s3.list(&prefix).await? {
                    s3.delete_object(&entry.key).await?;
                }
                Ok(())
            }
        }
    }
}

fn read_range(file: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}
