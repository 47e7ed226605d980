//! The local spool: one folder per recording, `<recordings_dir>/spool/<id>/`, holding
//! `recording.mp4` (the muxer's bytes, appended as they come), `meta.json` (rewritten
//! atomically) and, once the pipeline ended cleanly, a `finished` marker. The storage side
//! follows the spool ([`SpoolFollower`]) and removes the folder once the recording is stored.
//!
//! A spool folder is locked (`flock` on `lock`) by whoever owns it in a live process: the
//! writer, then whoever delivers it. The kernel drops the lock when the process dies, so
//! recovery after a crash takes over exactly the folders nobody holds any more.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use super::{RecordingError, RecordingMeta};

/// The spooled bytes.
pub const RECORDING_FILE: &str = "recording.mp4";
/// [`RecordingMeta`] as JSON.
pub const META_FILE: &str = "meta.json";
/// Present once the pipeline ended cleanly.
pub const FINISHED_MARKER: &str = "finished";
/// Held (flock) by the process that owns the spool.
pub const LOCK_FILE: &str = "lock";

/// `<recordings_dir>/spool`.
pub fn spool_root(recordings_dir: &Path) -> PathBuf {
    recordings_dir.join("spool")
}

pub(crate) fn spool_err(path: &Path, source: std::io::Error) -> RecordingError {
    RecordingError::Spool {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the old
/// or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordingError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| spool_err(path, e))
}

pub(crate) fn write_meta(dir: &Path, meta: &RecordingMeta) -> Result<(), RecordingError> {
    let path = dir.join(META_FILE);
    let json = serde_json::to_vec_pretty(meta).map_err(|e| RecordingError::Metadata {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, &json)
}

/// Reads a spool's (or a stored recording's) metadata.
pub fn read_meta(path: &Path) -> Result<RecordingMeta, RecordingError> {
    let bytes = std::fs::read(path).map_err(|e| spool_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RecordingError::Metadata {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// An exclusive `flock` on a spool's lock file, held while this object lives.
#[derive(Debug)]
pub(crate) struct SpoolLock {
    _file: File,
}

impl SpoolLock {
    /// `Ok(None)` when another owner (in this process or another live one) holds it.
    fn try_acquire(dir: &Path) -> Result<Option<Self>, RecordingError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| spool_err(&path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(Self { _file: file }));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(spool_err(&path, e))
        }
    }
}

/// How far the writer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolState {
    /// Bytes may still come.
    Writing,
    /// The pipeline ended cleanly: the file is whole.
    Finished,
    /// The writer went away without finishing (pipeline failure, or a previous process
    /// died): the file may end in the middle of a fragment.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolProgress {
    /// Bytes in `recording.mp4`.
    pub written: u64,
    pub state: SpoolState,
}

/// Writes one recording's spool. Used from the pipeline's own (non-tokio) thread: nothing
/// here needs a runtime.
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    file: File,
    written: u64,
    progress: watch::Sender<SpoolProgress>,
    lock: Arc<SpoolLock>,
    done: bool,
}

impl SpoolWriter {
    /// Creates `<recordings_dir>/spool/<meta.id>/` with `meta.json` and an empty recording.
    pub fn create(recordings_dir: &Path, meta: &RecordingMeta) -> Result<Self, RecordingError> {
        let root = spool_root(recordings_dir);
        std::fs::create_dir_all(&root).map_err(|e| spool_err(&root, e))?;
        if meta.id.is_empty() || meta.id.contains(['/', '\\']) || meta.id.starts_with('.') {
            return Err(RecordingError::Metadata {
                path: root,
                message: format!("recording id {:?} cannot name a folder", meta.id),
            });
        }
        let dir = root.join(&meta.id);
        if dir.exists() {
            return Err(spool_err(
                &dir,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "spool exists"),
            ));
        }
        // Made under a hidden name and renamed once locked and complete, so recovery never
        // sees a half-made spool.
        let staging = root.join(format!(".{}.new", meta.id));
        std::fs::create_dir(&staging).map_err(|e| spool_err(&staging, e))?;
        let made = (|| {
            let lock = SpoolLock::try_acquire(&staging)?.ok_or_else(|| {
                spool_err(
                    &staging,
                    std::io::Error::new(std::io::ErrorKind::WouldBlock, "spool is locked"),
                )
            })?;
            write_meta(&staging, meta)?;
            let path = staging.join(RECORDING_FILE);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| spool_err(&path, e))?;
            std::fs::rename(&staging, &dir).map_err(|e| spool_err(&dir, e))?;
            Ok((lock, file))
        })();
        let (lock, file) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let (progress, _) = watch::channel(SpoolProgress {
            written: 0,
            state: SpoolState::Writing,
        });
        Ok(Self {
            dir,
            file,
            written: 0,
            progress,
            lock: Arc::new(lock),
            done: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the muxer's next bytes. A plain write: what the OS got survives a crash of
    /// this process.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .map_err(|e| spool_err(&self.dir.join(RECORDING_FILE), e))?;
        self.written += bytes.len() as u64;
        self.progress.send_replace(SpoolProgress {
            written: self.written,
            state: SpoolState::Writing,
        });
        Ok(())
    }

    /// Rewrites `meta.json` (participants joined, and so on).
    pub fn update_meta(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        write_meta(&self.dir, meta)
    }

    /// The pipeline ended cleanly: flushes the file, writes the final metadata (status
    /// `Uploading` unless it says otherwise, `size_bytes` set) and the `finished` marker.
    pub fn finish(mut self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        let path = self.dir.join(RECORDING_FILE);
        self.file.sync_all().map_err(|e| spool_err(&path, e))?;
        let mut meta = meta.clone();
        if meta.status == super::meta::RecordingStatus::Recording {
            meta.status = super::meta::RecordingStatus::Uploading;
        }
        meta.size_bytes = Some(self.written);
        write_meta(&self.dir, &meta)?;
        write_atomic(&self.dir.join(FINISHED_MARKER), b"")?;
        self.done = true;
        self.progress.send_replace(SpoolProgress {
            written: self.written,
            state: SpoolState::Finished,
        });
        Ok(())
    }

    /// A follower for the storage side: learns the byte count as it grows and when the
    /// writer finished (or went away). It shares the spool's lock, so recovery leaves the
    /// folder alone until the writer and all followers are gone.
    pub fn follow(&self) -> SpoolFollower {
        SpoolFollower {
            dir: self.dir.clone(),
            progress: self.progress.subscribe(),
            _lock: self.lock.clone(),
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if !self.done {
            self.progress.send_replace(SpoolProgress {
                written: self.written,
                state: SpoolState::Abandoned,
            });
        }
    }
}

/// Follows one spool folder: the live writer's progress, or the state a previous process
/// left on disk. Clones follow the same spool (the upload and the live HLS side by side)
/// and share its lock.
#[derive(Debug, Clone)]
pub struct SpoolFollower {
    dir: PathBuf,
    progress: watch::Receiver<SpoolProgress>,
    _lock: Arc<SpoolLock>,
}

impl SpoolFollower {
    /// Takes over a spool folder nobody holds (left behind by a process that is gone):
    /// `Finished` when it has the marker, `Abandoned` otherwise. `Ok(None)` when a live
    /// writer or delivery (in this process or another) holds it.
    pub fn open(dir: &Path) -> Result<Option<Self>, RecordingError> {
        let Some(lock) = SpoolLock::try_acquire(dir)? else {
            return Ok(None);
        };
        let path = dir.join(RECORDING_FILE);
        let written = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(spool_err(&path, e)),
        };
        let state = if dir.join(FINISHED_MARKER).exists() {
            SpoolState::Finished
        } else {
            SpoolState::Abandoned
        };
        let (_tx, progress) = watch::channel(SpoolProgress { written, state });
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            progress,
            _lock: Arc::new(lock),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn recording_path(&self) -> PathBuf {
        self.dir.join(RECORDING_FILE)
    }

    pub fn progress(&self) -> SpoolProgress {
        *self.progress.borrow()
    }

    /// Waits until at least `bytes` are written or the writer stopped (finished or gone).
    pub async fn wait_for(&mut self, bytes: u64) -> SpoolProgress {
        let result = self
            .progress
            .wait_for(|p| p.written >= bytes || p.state != SpoolState::Writing)
            .await
            .map(|p| *p);
        match result {
            Ok(p) => p,
            // The sender is gone: a writer always says Finished or Abandoned before that,
            // and a follower opened from disk never writes.
            Err(_) => {
                let p = self.progress();
                if p.state == SpoolState::Writing {
                    SpoolProgress {
                        state: SpoolState::Abandoned,
                        ..p
                    }
                } else {
                    p
                }
            }
        }
    }

    /// Waits until the writer stopped.
    pub async fn wait_done(&mut self) -> SpoolProgress {
        self.wait_for(u64::MAX).await
    }

    /// The spool's metadata as last written.
    pub fn meta(&self) -> Result<RecordingMeta, RecordingError> {
        read_meta(&self.dir.join(META_FILE))
    }

    pub(crate) fn write_meta(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        write_meta(&self.dir, meta)
    }
}

/// Top-level MP4 box scan: the length of the longest prefix that ends on a complete box,
/// with `moov` complete and no `moof` missing its `mdat`. 0 when no `moov` is complete.
pub fn complete_prefix_len(bytes: &[u8]) -> u64 {
    scan_boxes(bytes.len() as u64, |offset, buf| {
        let start = offset as usize;
        if start >= bytes.len() {
            return 0;
        }
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        n
    })
}

/// [`complete_prefix_len`] of a file, reading only box headers.
pub fn complete_prefix_len_of_file(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut error = None;
    let result = scan_boxes(len, |offset, buf| {
        let read = (|| -> std::io::Result<usize> {
            file.seek(SeekFrom::Start(offset))?;
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            Ok(n)
        })();
        match read {
            Ok(n) => n,
            Err(e) => {
                error = Some(e);
                0
            }
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// `read(offset, buf)` fills as much of `buf` as there is at `offset` and returns how much.
fn scan_boxes(total: u64, mut read: impl FnMut(u64, &mut [u8]) -> usize) -> u64 {
    let mut offset = 0u64;
    let mut good = 0u64;
    let mut moov = false;
    // Start of a `moof` still waiting for its `mdat`.
    let mut pending_moof: Option<u64> = None;
    loop {
        let mut header = [0u8; 16];
        if read(offset, &mut header[..8]) < 8 {
            break;
        }
        let size32 = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
        let (size, header_len) = match size32 {
            // Extends to the end of the file: never known to be complete.
            0 => break,
            1 => {
                if read(offset + 8, &mut header[8..16]) < 8 {
                    break;
                }
                (
                    u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")),
                    16,
                )
            }
            n => (u64::from(n), 8),
        };
        if size < header_len {
            break; // malformed
        }
        let Some(end) = offset.checked_add(size) else {
            break;
        };
        if end > total {
            break;
        }
        match &kind {
            b"moov" => moov = true,
            b"moof" => pending_moof = Some(offset),
            b"mdat" => pending_moof = None,
            _ => {}
        }
        if moov && pending_moof.is_none() {
            good = end;
        }
        offset = end;
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload_len: usize) -> Vec<u8> {
        let mut b = ((payload_len + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(std::iter::repeat_n(0xab, payload_len));
        b
    }

    fn large_box(kind: &[u8; 4], payload_len: usize) -> Vec<u8> {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(&((payload_len + 16) as u64).to_be_bytes());
        b.extend(std::iter::repeat_n(0xcd, payload_len));
        b
    }

    fn head() -> Vec<u8> {
        let mut v = mp4_box(b"ftyp", 16);
        v.extend(mp4_box(b"moov", 100));
        v
    }

    #[test]
    fn prefix_needs_a_complete_moov() {
        assert_eq!(complete_prefix_len(&[]), 0);
        let ftyp = mp4_box(b"ftyp", 16);
        assert_eq!(complete_prefix_len(&ftyp), 0);
        let h = head();
        assert_eq!(complete_prefix_len(&h[..h.len() - 1]), 0);
        assert_eq!(complete_prefix_len(&h), h.len() as u64);
    }

    #[test]
    fn fragments_count_only_with_their_mdat() {
        let mut v = head();
        let head_len = v.len() as u64;
        v.extend(mp4_box(b"moof", 40));
        assert_eq!(complete_prefix_len(&v), head_len, "moof without mdat");
        v.extend(mp4_box(b"mdat", 1000));
        let one = v.len() as u64;
        assert_eq!(complete_prefix_len(&v), one);
        // Partial mdat of the next fragment.
        v.extend(mp4_box(b"moof", 40));
        let mdat = mp4_box(b"mdat", 1000);
        v.extend_from_slice(&mdat[..500]);
        assert_eq!(complete_prefix_len(&v), one);
        // Truncated box headers at every length.
        let mut w = head();
        w.extend(mp4_box(b"moof", 40));
        w.extend(mp4_box(b"mdat", 10));
        let whole = w.len() as u64;
        for cut in 1..8 {
            let mut t = w.clone();
            t.extend_from_slice(&mp4_box(b"moof", 40)[..cut]);
            assert_eq!(complete_prefix_len(&t), whole, "cut {cut}");
        }
        // A clean end with mfra.
        w.extend(mp4_box(b"mfra", 30));
        assert_eq!(complete_prefix_len(&w), w.len() as u64);
    }

    #[test]
    fn largesize_and_size_zero() {
        let mut v = head();
        v.extend(mp4_box(b"moof", 40));
        v.extend(large_box(b"mdat", 3000));
        let whole = v.len() as u64;
        assert_eq!(complete_prefix_len(&v), whole);
        // A largesize header cut inside its 64-bit size.
        let mut t = v.clone();
        t.extend_from_slice(&large_box(b"moof", 10)[..12]);
        assert_eq!(complete_prefix_len(&t), whole);
        // A largesize box whose payload is not all there.
        let mut t = v.clone();
        t.extend(mp4_box(b"moof", 40));
        t.extend_from_slice(&large_box(b"mdat", 3000)[..2000]);
        assert_eq!(complete_prefix_len(&t), whole);
        // size 0: "to the end of the file" is never complete.
        let mut t = v.clone();
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(b"mdat");
        t.extend_from_slice(&[0; 100]);
        assert_eq!(complete_prefix_len(&t), whole);
        // A malformed size (smaller than its header) stops the scan.
        let mut t = v.clone();
        t.extend_from_slice(&4u32.to_be_bytes());
        t.extend_from_slice(b"free");
        assert_eq!(complete_prefix_len(&t), whole);
    }

    #[test]
    fn file_scan_matches_slice_scan() {
        let dir = std::env::temp_dir().join(format!("ma-spool-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = head();
        v.extend(mp4_box(b"moof", 40));
        v.extend(large_box(b"mdat", 70_000));
        v.extend(mp4_box(b"moof", 40));
        v.extend_from_slice(&mp4_box(b"mdat", 5000)[..100]);
        let path = dir.join("x.mp4");
        std::fs::write(&path, &v).unwrap();
        let expected = complete_prefix_len(&v);
        assert!(expected > 70_000);
        assert_eq!(complete_prefix_len_of_file(&path).unwrap(), expected);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn writer_follower_and_lock() {
        let dir = std::env::temp_dir().join(format!("ma-spool-w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut meta = RecordingMeta::new("room", 1_700_000_000_000, "grid", "local");
        let mut writer = SpoolWriter::create(&dir, &meta).unwrap();
        let spool = writer.dir().to_path_buf();
        assert!(SpoolWriter::create(&dir, &meta).is_err(), "same id twice");
        assert!(
            SpoolFollower::open(&spool).unwrap().is_none(),
            "a live writer holds the lock"
        );
        let mut follower = writer.follow();
        writer.append(b"hello").unwrap();
        writer.append(b" world").unwrap();
        assert_eq!(
            follower.progress(),
            SpoolProgress {
                written: 11,
                state: SpoolState::Writing
            }
        );
        meta.add_participant("alice");
        writer.update_meta(&meta).unwrap();
        assert_eq!(follower.meta().unwrap().participants, vec!["alice"]);
        writer.finish(&meta).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = rt.block_on(follower.wait_done());
        assert_eq!(p.state, SpoolState::Finished);
        assert_eq!(p.written, 11);
        assert_eq!(follower.meta().unwrap().size_bytes, Some(11));
        assert!(SpoolFollower::open(&spool).unwrap().is_none());
        drop(follower);
        let reopened = SpoolFollower::open(&spool).unwrap().unwrap();
        assert_eq!(reopened.progress().state, SpoolState::Finished);
        assert_eq!(reopened.progress().written, 11);
        drop(reopened);

        // A writer dropped without finishing: abandoned.
        let meta2 = RecordingMeta::new("room", 1_700_000_000_000, "grid", "local");
        let mut w2 = SpoolWriter::create(&dir, &meta2).unwrap();
        let mut f2 = w2.follow();
        w2.append(&[1, 2, 3]).unwrap();
        let spool2 = w2.dir().to_path_buf();
        drop(w2);
        let p = rt.block_on(f2.wait_for(100));
        assert_eq!(p.state, SpoolState::Abandoned);
        drop(f2);
        let reopened = SpoolFollower::open(&spool2).unwrap().unwrap();
        assert_eq!(reopened.progress().state, SpoolState::Abandoned);
        assert_eq!(reopened.progress().written, 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
