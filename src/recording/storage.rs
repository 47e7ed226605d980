//! Where recordings end up: a local folder, or an S3-compatible bucket that receives the
//! recording while the meeting runs (multipart upload, one part per `part_size_mib` of
//! spool). Delivery never drops data: S3 errors are retried for ever while the bytes stay in
//! the spool, and a journal (`upload.json`) lets a restarted agent resume the upload.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::meta::RecordingStatus;
use super::s3::{S3Error, S3ErrorKind, S3Store};
use super::spool::{self, SpoolFollower, SpoolState, spool_err, spool_root, write_atomic};
use super::{RecordingError, RecordingMeta, StorageKind};
use crate::config::RecordingConfig;

/// The multipart upload journal in a spool folder.
pub const JOURNAL_FILE: &str = "upload.json";

const MP4_TYPE: &str = "video/mp4";
const JSON_TYPE: &str = "application/json";

/// One uploaded part: its number, entity tag and the spool offset it ends at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPart {
    pub part_number: i32,
    pub etag: String,
    pub end: u64,
}

/// What has been uploaded of one spool, rewritten atomically after every part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadJournal {
    /// Key of the recording (without the store's prefix).
    pub key: String,
    pub upload_id: String,
    /// In order, contiguous from offset 0.
    pub parts: Vec<JournalPart>,
    /// The upload was completed (only the metadata object may be missing).
    #[serde(default)]
    pub completed: bool,
}

impl UploadJournal {
    /// The journal in `spool_dir`, if there is a readable one.
    pub fn load(spool_dir: &Path) -> Option<Self> {
        let path = spool_dir.join(JOURNAL_FILE);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable upload journal");
                None
            }
        }
    }

    pub fn save(&self, spool_dir: &Path) -> Result<(), RecordingError> {
        let path = spool_dir.join(JOURNAL_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| RecordingError::Metadata {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    /// Spool offset up to which parts are uploaded.
    pub fn done_end(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.end)
    }
}

const HLS_TYPE: &str = "application/vnd.apple.mpegurl";

/// The HLS playlist of the first `len` bytes of a recording; `None` (logged) when it cannot be
/// indexed: the recording itself is still delivered.
fn playlist_of(path: &Path, len: u64) -> Option<String> {
    match super::hls::index_file(path, len) {
        Ok(index) => Some(super::hls::playlist(&index, super::hls::MEDIA_PLACEHOLDER)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no HLS playlist for this recording");
            None
        }
    }
}

/// `room/rec-1.mp4` -> `room/rec-1.json`.
pub fn meta_key(key: &str) -> String {
    format!("{}.json", key.strip_suffix(".mp4").unwrap_or(key))
}

/// A key as a path under a folder: relative, no `..`.
pub(super) fn key_path(key: &str) -> Result<PathBuf, RecordingError> {
    let path = Path::new(key);
    let ok = !key.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(RecordingError::Metadata {
            path: path.to_path_buf(),
            message: format!("recording key {key:?} is not a relative path"),
        })
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Capped exponential backoff for retrying for ever.
pub(super) struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(super) fn new((initial, max): (Duration, Duration)) -> Self {
        Self {
            next: initial,
            initial,
            max,
            failures: 0,
        }
    }

    pub(super) async fn wait(&mut self, id: &str, error: &S3Error) {
        self.failures += 1;
        if self.failures == 1 || self.failures.is_multiple_of(10) {
            tracing::warn!(recording = id, error = %error, attempt = self.failures, retry_in = ?self.next, "S3 unavailable; the recording stays in the spool");
        } else {
            tracing::debug!(recording = id, error = %error, attempt = self.failures, "S3 retry");
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    pub(super) fn reset(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "S3 reachable again; upload resumed"
            );
        }
        self.failures = 0;
        self.next = self.initial;
    }
}

/// Where finished recordings are kept.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `<dir>/<key>` with `<key minus .mp4>.json` beside it.
    Local {
        dir: PathBuf,
    },
    S3(S3Store),
}

/// One upload in progress.
struct Upload<'a> {
    s3: &'a S3Store,
    id: String,
    dir: PathBuf,
    path: PathBuf,
    key: String,
    journal: Option<UploadJournal>,
    backoff: Backoff,
}

impl Upload<'_> {
    fn done_end(&self) -> u64 {
        self.journal.as_ref().map_or(0, UploadJournal::done_end)
    }

    fn forget_upload(&mut self) {
        self.journal = None;
        let _ = std::fs::remove_file(self.dir.join(JOURNAL_FILE));
    }

    /// Whether a refusal of an upload-id call means the upload is gone: some servers
    /// (s3s-fs) answer AccessDenied rather than NoSuchUpload. Only when the same
    /// credentials can still see the bucket.
    async fn upload_lost(&self, e: &S3Error) -> bool {
        match e.kind {
            S3ErrorKind::NoSuchUpload => true,
            S3ErrorKind::Denied => self.s3.head_bucket().await.is_ok(),
            _ => false,
        }
    }

    async fn ensure_bucket(&mut self) {
        loop {
            match self.s3.ensure_bucket().await {
                Ok(()) => {
                    self.backoff.reset();
                    return;
                }
                Err(e) => self.backoff.wait(&self.id, &e).await,
            }
        }
    }

    /// Uploads the part `[done_end, end)`. `Ok(false)`: the server lost the upload; the
    /// journal was reset and the caller must start over from offset 0.
    async fn put_part(&mut self, end: u64) -> Result<bool, RecordingError> {
        loop {
            if self.journal.is_none() {
                match self.s3.create_multipart(&self.key, MP4_TYPE).await {
                    Ok(upload_id) => {
                        let journal = UploadJournal {
                            key: self.key.clone(),
                            upload_id,
                            parts: Vec::new(),
                            completed: false,
                        };
                        journal.save(&self.dir)?;
                        self.journal = Some(journal);
                        self.backoff.reset();
                    }
                    Err(e) => {
                        self.backoff.wait(&self.id, &e).await;
                        continue;
                    }
                }
            }
            let journal = self.journal.as_ref().expect("set above");
            let start = journal.done_end();
            let part_number = journal.parts.len() as i32 + 1;
            let upload_id = journal.upload_id.clone();
            match self
                .s3
                .upload_part(
                    &self.key,
                    &upload_id,
                    part_number,
                    &self.path,
                    start,
                    end - start,
                )
                .await
            {
                Ok(etag) => {
                    let journal = self.journal.as_mut().expect("set above");
                    journal.parts.push(JournalPart {
                        part_number,
                        etag,
                        end,
                    });
                    journal.save(&self.dir)?;
                    self.backoff.reset();
                    tracing::debug!(recording = %self.id, part_number, end, "uploaded part");
                    return Ok(true);
                }
                // The spool file itself is unreadable: retrying will not help.
                Err(e) if e.kind == S3ErrorKind::LocalIo => return Err(e.into()),
                Err(e) if self.upload_lost(&e).await => {
                    tracing::warn!(recording = %self.id, error = %e, "the server lost the multipart upload; starting it again");
                    self.forget_upload();
                    return Ok(false);
                }
                Err(e) => self.backoff.wait(&self.id, &e).await,
            }
        }
    }

    /// Uploads everything up to `len` and completes the upload.
    async fn finish(&mut self, len: u64) -> Result<(), RecordingError> {
        let part_size = self.s3.part_size();
        loop {
            if self.journal.as_ref().is_some_and(|j| j.completed) {
                return Ok(());
            }
            while self.done_end() < len {
                let end = (self.done_end() + part_size).min(len);
                self.put_part(end).await?;
            }
            let journal = self.journal.as_mut().expect("at least one part");
            let parts: Vec<(i32, String)> = journal
                .parts
                .iter()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect();
            let upload_id = journal.upload_id.clone();
            match self
                .s3
                .complete_multipart(&self.key, &upload_id, &parts)
                .await
            {
                Ok(()) => {
                    let journal = self.journal.as_mut().expect("present");
                    journal.completed = true;
                    journal.save(&self.dir)?;
                    self.backoff.reset();
                    return Ok(());
                }
                Err(e) if self.upload_lost(&e).await => {
                    // Completed by an earlier attempt whose answer was lost?
                    if let Ok(Some(head)) = self.s3.head(&self.key).await
                        && head.size == len
                    {
                        tracing::info!(recording = %self.id, "upload already completed");
                        return Ok(());
                    }
                    tracing::warn!(recording = %self.id, error = %e, "the server lost the multipart upload; starting it again");
                    self.forget_upload();
                }
                Err(e) => self.backoff.wait(&self.id, &e).await,
            }
        }
    }

    async fn put_playlist(&mut self, playlist: String) {
        let key = super::hls::playlist_key(&self.key);
        loop {
            match self
                .s3
                .put_object(&key, playlist.clone().into_bytes(), HLS_TYPE)
                .await
            {
                Ok(()) => return,
                Err(e) => self.backoff.wait(&self.id, &e).await,
            }
        }
    }

    async fn put_meta(&mut self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        let json = serde_json::to_vec_pretty(meta).map_err(|e| RecordingError::Metadata {
            path: PathBuf::from(meta_key(&self.key)),
            message: e.to_string(),
        })?;
        loop {
            match self
                .s3
                .put_object(&meta_key(&self.key), json.clone(), JSON_TYPE)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => self.backoff.wait(&self.id, &e).await,
            }
        }
    }
}

impl Storage {
    pub fn from_config(
        cfg: &RecordingConfig,
        recordings_dir: &Path,
    ) -> Result<Storage, RecordingError> {
        match cfg.storage {
            StorageKind::Local => Ok(Storage::Local {
                dir: recordings_dir.to_path_buf(),
            }),
            StorageKind::S3 => Ok(Storage::S3(S3Store::new(&cfg.s3)?)),
        }
    }

    pub fn kind(&self) -> StorageKind {
        match self {
            Storage::Local { .. } => StorageKind::Local,
            Storage::S3(_) => StorageKind::S3,
        }
    }

    /// Checks once that the storage is usable (S3: reachable, keys accepted, bucket made if
    /// missing; local: the folder can be made). For start-up diagnostics: delivery does not
    /// need it.
    pub async fn check(&self) -> Result<(), RecordingError> {
        match self {
            Storage::Local { dir } => std::fs::create_dir_all(dir).map_err(|e| spool_err(dir, e)),
            Storage::S3(s3) => Ok(s3.ensure_bucket().await?),
        }
    }

    /// Follows one spool while it is written and stores it once the writer is done. S3
    /// errors are retried for ever; the spool folder is removed only once the recording and
    /// its metadata are stored. A writer that went away without finishing leaves the
    /// recording cut to its last complete fragment, with status `Partial`.
    pub async fn deliver(&self, follower: SpoolFollower) -> Result<RecordingMeta, RecordingError> {
        match self {
            Storage::Local { dir } => self.deliver_local(dir, follower).await,
            Storage::S3(s3) => self.deliver_s3(s3, follower).await,
        }
    }

    async fn deliver_local(
        &self,
        dir: &Path,
        mut follower: SpoolFollower,
    ) -> Result<RecordingMeta, RecordingError> {
        let progress = follower.wait_done().await;
        let Some((meta, len)) = settle(&follower, progress, None)? else {
            return Err(nothing_playable(&follower));
        };
        if let Some(playlist) = playlist_of(&follower.recording_path(), len) {
            let path = dir.join(key_path(&super::hls::playlist_key(&meta.key))?);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| spool_err(parent, e))?;
            }
            write_atomic(&path, playlist.as_bytes())?;
        }
        let rel = key_path(&meta.key)?;
        let dest = dir.join(&rel);
        let json_dest = dir.join(key_path(&meta_key(&meta.key))?);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| spool_err(parent, e))?;
        }
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| RecordingError::Metadata {
            path: json_dest.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&json_dest, &json)?;
        let src = follower.recording_path();
        if let Err(e) = std::fs::rename(&src, &dest) {
            if e.raw_os_error() != Some(libc::EXDEV) {
                return Err(spool_err(&src, e));
            }
            // Another file system: copy, then drop the spool.
            let mut tmp = dest.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::copy(&src, &tmp).map_err(|e| spool_err(&tmp, e))?;
            std::fs::rename(&tmp, &dest).map_err(|e| spool_err(&dest, e))?;
        }
        remove_spool(follower.dir());
        tracing::info!(recording = %meta.id, path = %dest.display(), status = ?meta.status, "recording stored");
        Ok(meta)
    }

    async fn deliver_s3(
        &self,
        s3: &S3Store,
        mut follower: SpoolFollower,
    ) -> Result<RecordingMeta, RecordingError> {
        let dir = follower.dir().to_path_buf();
        let first = follower.meta()?;
        let key = first.key.clone();
        key_path(&key)?;
        let journal = match UploadJournal::load(&dir) {
            Some(j) if j.key == key => Some(j),
            Some(j) => {
                let _ = s3.abort_multipart(&j.key, &j.upload_id).await;
                None
            }
            None => None,
        };
        let mut upload = Upload {
            s3,
            id: first.id.clone(),
            path: follower.recording_path(),
            dir: dir.clone(),
            key,
            journal,
            backoff: Backoff::new(s3.retry_backoff()),
        };
        upload.ensure_bucket().await;
        let part_size = s3.part_size();
        // Full parts while the meeting runs.
        let progress = loop {
            let progress = follower.progress();
            if progress.state != SpoolState::Writing {
                break progress;
            }
            let next_end = upload.done_end() + part_size;
            if progress.written >= next_end {
                upload.put_part(next_end).await?;
            } else {
                follower.wait_for(next_end).await;
            }
        };
        let Some((mut meta, len)) = settle(&follower, progress, upload.journal.as_mut())? else {
            if let Some(j) = &upload.journal {
                let _ = s3.abort_multipart(&j.key, &j.upload_id).await;
            }
            return Err(nothing_playable(&follower));
        };
        upload.finish(len).await?;
        meta.storage = StorageKind::S3.as_str().into();
        if let Some(playlist) = playlist_of(&follower.recording_path(), len) {
            upload.put_playlist(playlist).await;
        }
        upload.put_meta(&meta).await?;
        remove_spool(&dir);
        tracing::info!(recording = %meta.id, key = %s3.full_key(&meta.key), bytes = len, status = ?meta.status, "recording uploaded");
        Ok(meta)
    }

    /// Delivers every spool folder a previous process left behind (finished ones as they
    /// are, unfinished ones cut to their last complete fragment and marked `Partial`);
    /// folders held by a live writer or delivery (here or in another process) are left
    /// alone. Deliveries run concurrently; like [`Storage::deliver`], this waits for S3 as
    /// long as it takes, so spawn it.
    pub async fn recover(
        &self,
        recordings_dir: &Path,
    ) -> Vec<Result<RecordingMeta, RecordingError>> {
        self.recover_with_live(recordings_dir, None).await
    }

    /// [`Storage::recover`], finishing each recording's live HLS too (its playlist becomes
    /// the VOD one) when `live` is given.
    pub async fn recover_with_live(
        &self,
        recordings_dir: &Path,
        live: Option<super::live_storage::LiveHlsSettings>,
    ) -> Vec<Result<RecordingMeta, RecordingError>> {
        let root = spool_root(recordings_dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Vec::new();
        };
        let mut followers = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with('.') {
                // A spool being made, or (if old) one whose making a crash cut short:
                // nothing is in it yet.
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60));
                if stale && let Ok(Some(f)) = SpoolFollower::open(&dir) {
                    remove_spool(f.dir());
                }
                continue;
            }
            match SpoolFollower::open(&dir) {
                Ok(Some(follower)) => {
                    if let Err(e) = follower.meta() {
                        let has_bytes =
                            std::fs::metadata(follower.recording_path()).is_ok_and(|m| m.len() > 0);
                        if has_bytes {
                            tracing::warn!(spool = %dir.display(), error = %e, "spool without readable metadata left in place");
                        } else {
                            tracing::warn!(spool = %dir.display(), error = %e, "removing an empty spool without metadata");
                            remove_spool(&dir);
                        }
                        continue;
                    }
                    tracing::info!(spool = %dir.display(), state = ?follower.progress().state, "recovering a recording left by an earlier run");
                    followers.push(follower);
                }
                Ok(None) => {
                    tracing::debug!(spool = %dir.display(), "spool in use; not recovering it")
                }
                Err(e) => tracing::warn!(spool = %dir.display(), error = %e, "cannot open spool"),
            }
        }
        futures_util::future::join_all(
            followers
                .into_iter()
                .map(|f| self.deliver_with_live(f, live)),
        )
        .await
    }

    /// [`Storage::deliver`] with the recording's live HLS published beside it (when `live`
    /// is given); the delivery's result, whatever became of the live side.
    pub async fn deliver_with_live(
        &self,
        follower: SpoolFollower,
        live: Option<super::live_storage::LiveHlsSettings>,
    ) -> Result<RecordingMeta, RecordingError> {
        let composite = follower
            .meta()
            .is_ok_and(|m| m.kind == super::meta::RecordingKind::Composite);
        let Some(settings) = live.filter(|_| composite) else {
            return self.deliver(follower).await;
        };
        let id = follower.meta().map(|m| m.id).unwrap_or_default();
        let (delivered, published) = tokio::join!(
            self.deliver(follower.clone()),
            self.publish_live(follower, settings)
        );
        if let Err(e) = published {
            tracing::warn!(recording = %id, error = %e, "live HLS stopped; the recording itself is delivered");
        }
        delivered
    }

    /// A playback link: presigned GET (S3) or `file://` path (local).
    pub async fn link(
        &self,
        meta: &RecordingMeta,
        expiry: Duration,
    ) -> Result<String, RecordingError> {
        self.link_to(meta, &meta.key, expiry).await
    }

    /// A link to `key`, one of `meta`'s objects (NotFound as the recording's when absent).
    async fn link_to(
        &self,
        meta: &RecordingMeta,
        key: &str,
        expiry: Duration,
    ) -> Result<String, RecordingError> {
        match self {
            Storage::Local { dir } => {
                let path = dir.join(key_path(key)?);
                let path = std::fs::canonicalize(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        RecordingError::NotFound(meta.id.clone())
                    } else {
                        spool_err(&path, e)
                    }
                })?;
                Ok(format!("file://{}", percent_encode_path(&path)))
            }
            Storage::S3(s3) => {
                if s3.head(key).await?.is_none() {
                    return Err(RecordingError::NotFound(meta.id.clone()));
                }
                Ok(s3.presign_get(key, expiry).await?)
            }
        }
    }

    /// The text of `key`, one of `meta`'s objects (NotFound as the recording's when absent).
    async fn read_text(&self, meta: &RecordingMeta, key: &str) -> Result<String, RecordingError> {
        match self {
            Storage::Local { dir } => {
                let path = dir.join(key_path(key)?);
                std::fs::read_to_string(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        RecordingError::NotFound(meta.id.clone())
                    } else {
                        spool_err(&path, e)
                    }
                })
            }
            Storage::S3(s3) => {
                if s3.head(key).await?.is_none() {
                    return Err(RecordingError::NotFound(meta.id.clone()));
                }
                Ok(String::from_utf8_lossy(&s3.get_object(key).await?).into_owned())
            }
        }
    }

    /// The recording's HLS playlist, its segments pointing into a fresh [`Storage::link`]
    /// (presigned for S3: the link's own expiry applies).
    pub async fn hls_playlist(
        &self,
        meta: &RecordingMeta,
        expiry: Duration,
    ) -> Result<String, RecordingError> {
        let stored = self
            .read_text(meta, &super::hls::playlist_key(&meta.key))
            .await?;
        let media = self.link(meta, expiry).await?;
        Ok(super::hls::with_media(&stored, &media))
    }

    /// Stores a recording's poster, thumbnail sprite and track beside it (files 0600 here, or
    /// objects in the bucket).
    pub async fn put_thumbnails(
        &self,
        meta: &RecordingMeta,
        rendered: &super::thumbnails::Rendered,
    ) -> Result<(), RecordingError> {
        let [poster, sprite, vtt] = super::thumbnails::keys(&meta.key);
        let items = [
            (poster, rendered.poster_jpeg.clone(), "image/jpeg"),
            (sprite, rendered.sprite_jpeg.clone(), "image/jpeg"),
            (vtt, rendered.vtt.clone().into_bytes(), "text/vtt"),
        ];
        for (key, bytes, content_type) in items {
            match self {
                Storage::Local { dir } => {
                    let path = dir.join(key_path(&key)?);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| spool_err(parent, e))?;
                    }
                    write_atomic(&path, &bytes)?;
                }
                Storage::S3(s3) => s3.put_object(&key, bytes, content_type).await?,
            }
        }
        Ok(())
    }

    /// A stored derivative (`poster`, `sprite` or `vtt`: 0, 1, 2) of the recording: a link to
    /// it (presigned for S3, like [`Storage::link`]).
    pub async fn thumbnail_link(
        &self,
        meta: &RecordingMeta,
        which: usize,
        expiry: Duration,
    ) -> Result<String, RecordingError> {
        let key = super::thumbnails::keys(&meta.key)[which.min(2)].clone();
        self.link_to(meta, &key, expiry).await
    }

    /// The thumbnail track with its sprite named by a fresh link (presigned for S3), as a
    /// player fetches it.
    pub async fn thumbnail_track(
        &self,
        meta: &RecordingMeta,
        expiry: Duration,
    ) -> Result<String, RecordingError> {
        let [_, _, vtt] = super::thumbnails::keys(&meta.key);
        let stored = self.read_text(meta, &vtt).await?;
        let sprite = self.thumbnail_link(meta, 1, expiry).await?;
        let name = super::thumbnails::sprite_name(&meta.key);
        Ok(stored.replace(&format!("{name}#"), &format!("{sprite}#")))
    }

    /// Deletes the recording and its metadata.
    pub async fn delete(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        self.delete_live(meta).await?;
        match self {
            Storage::Local { dir } => {
                let mut found = false;
                let derivatives = super::thumbnails::keys(&meta.key);
                for (i, key) in [
                    meta.key.clone(),
                    meta_key(&meta.key),
                    super::hls::playlist_key(&meta.key),
                ]
                .into_iter()
                .chain(derivatives)
                .enumerate()
                {
                    let path = dir.join(key_path(&key)?);
                    match std::fs::remove_file(&path) {
                        // The poster and thumbnails alone do not make a recording.
                        Ok(()) => found |= i < 3,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(spool_err(&path, e)),
                    }
                }
                if found {
                    Ok(())
                } else {
                    Err(RecordingError::NotFound(meta.id.clone()))
                }
            }
            Storage::S3(s3) => {
                s3.delete_object(&meta.key).await?;
                s3.delete_object(&meta_key(&meta.key)).await?;
                s3.delete_object(&super::hls::playlist_key(&meta.key))
                    .await?;
                for key in super::thumbnails::keys(&meta.key) {
                    s3.delete_object(&key).await?;
                }
                Ok(())
            }
        }
    }

    /// Every stored recording, from the metadata beside each, oldest first.
    pub async fn list(&self) -> Result<Vec<RecordingMeta>, RecordingError> {
        let mut out = match self {
            Storage::Local { dir } => {
                let mut out = Vec::new();
                list_local(dir, &mut out);
                out
            }
            Storage::S3(s3) => {
                let mut out = Vec::new();
                for entry in s3.list("").await? {
                    if !entry.key.ends_with(".json") {
                        continue;
                    }
                    let bytes = match s3.get_object(&entry.key).await {
                        Ok(b) => b,
                        Err(e) if e.kind == S3ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    match serde_json::from_slice::<RecordingMeta>(&bytes) {
                        Ok(meta) => out.push(meta),
                        Err(e) => {
                            tracing::debug!(key = %entry.key, error = %e, "not recording metadata")
                        }
                    }
                }
                out
            }
        };
        out.sort_by(|a, b| (a.started_unix_ms, &a.id).cmp(&(b.started_unix_ms, &b.id)));
        Ok(out)
    }
}

/// The writer is done: for an abandoned spool, cuts the file to its last complete fragment
/// (dropping journal parts beyond the cut) and marks the metadata `Partial`, with the end
/// estimated from the file's modification time. `None` when nothing playable is there.
/// Returns the final metadata and the recording's length.
fn settle(
    follower: &SpoolFollower,
    progress: spool::SpoolProgress,
    journal: Option<&mut UploadJournal>,
) -> Result<Option<(RecordingMeta, u64)>, RecordingError> {
    let path = follower.recording_path();
    let mut meta = follower.meta()?;
    let len = match progress.state {
        SpoolState::Abandoned => {
            let file_meta = std::fs::metadata(&path).map_err(|e| spool_err(&path, e));
            let (file_len, mtime) = match file_meta {
                Ok(m) => (m.len(), m.modified().ok()),
                Err(_) => (0, None),
            };
            let cut = if file_len == 0 {
                0
            } else {
                spool::complete_prefix_len_of_file(&path).map_err(|e| spool_err(&path, e))?
            };
            if cut == 0 {
                return Ok(None);
            }
            if cut < file_len {
                tracing::warn!(recording = %meta.id, kept = cut, dropped = file_len - cut, "cutting an unfinished recording to its last complete fragment");
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| spool_err(&path, e))?;
                file.set_len(cut).map_err(|e| spool_err(&path, e))?;
                file.sync_all().map_err(|e| spool_err(&path, e))?;
            }
            meta.status = RecordingStatus::Partial;
            if meta.ended_unix_ms.is_none() {
                let ended = mtime
                    .map(unix_ms)
                    .unwrap_or_else(|| unix_ms(SystemTime::now()));
                meta.ended_unix_ms = Some(ended.max(meta.started_unix_ms));
            }
            if meta.duration_ms.is_none() {
                meta.duration_ms = meta.ended_unix_ms.map(|e| e - meta.started_unix_ms);
            }
            cut
        }
        _ => {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                return Ok(None);
            }
            if meta.status != RecordingStatus::Partial {
                meta.status = RecordingStatus::Complete;
            }
            len
        }
    };
    if let Some(journal) = journal {
        let before = journal.parts.len();
        journal.parts.retain(|p| p.end <= len);
        if journal.parts.len() != before {
            journal.completed = false;
            journal.save(follower.dir())?;
        }
    }
    meta.size_bytes = Some(len);
    follower.write_meta(&meta)?;
    Ok(Some((meta, len)))
}

fn nothing_playable(follower: &SpoolFollower) -> RecordingError {
    let id = follower
        .meta()
        .map(|m| m.id)
        .unwrap_or_else(|_| follower.dir().display().to_string());
    tracing::warn!(recording = %id, spool = %follower.dir().display(), "nothing playable was recorded; removing the spool");
    remove_spool(follower.dir());
    RecordingError::NotFound(format!("{id}: nothing playable was recorded"))
}

fn remove_spool(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(spool = %dir.display(), error = %e, "cannot remove spool folder");
    }
}

/// `*.json` recording metadata under `dir`, skipping spool folders.
fn list_local(dir: &Path, out: &mut Vec<RecordingMeta>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !path.join(spool::META_FILE).exists() {
                list_local(&path, out);
            }
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
            match spool::read_meta(&path) {
                Ok(meta) => out.push(meta),
                Err(e) => tracing::debug!(error = %e, "not recording metadata"),
            }
        }
    }
}

fn percent_encode_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Spool folders and the bytes in them not yet in storage (the journal's uploaded parts
/// excluded): the upload backlog.
pub fn backlog(recordings_dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(spool_root(recordings_dir)) else {
        return (0, 0);
    };
    let (mut spools, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        spools += 1;
        let size = std::fs::metadata(dir.join(super::spool::RECORDING_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        let done = UploadJournal::load(&dir).map(|j| j.done_end()).unwrap_or(0);
        bytes += size.saturating_sub(done);
    }
    (spools, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_paths() {
        assert_eq!(meta_key("room/rec-1.mp4"), "room/rec-1.json");
        assert_eq!(meta_key("x"), "x.json");
        assert!(key_path("room/rec-1.mp4").is_ok());
        assert!(key_path("../x.mp4").is_err());
        assert!(key_path("/etc/x.mp4").is_err());
        assert!(key_path("").is_err());
        assert_eq!(
            percent_encode_path(Path::new("/a b/c%.mp4")),
            "/a%20b/c%25.mp4"
        );
    }

    #[test]
    fn journal_round_trip() {
        let dir = std::env::temp_dir().join(format!("ma-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(UploadJournal::load(&dir).is_none());
        let j = UploadJournal {
            key: "r/a.mp4".into(),
            upload_id: "u".into(),
            parts: vec![JournalPart {
                part_number: 1,
                etag: "\"e\"".into(),
                end: 5,
            }],
            completed: false,
        };
        j.save(&dir).unwrap();
        assert_eq!(UploadJournal::load(&dir), Some(j.clone()));
        assert_eq!(j.done_end(), 5);
        std::fs::remove_dir_all(&dir).ok();
    }
}
