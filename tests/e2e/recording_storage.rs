//! Recording storage against a real S3 server (s3s-fs, which checks SigV4 signatures) and a
//! local folder: parts uploaded while the meeting runs, outages, crash recovery, presigned
//! links. The recordings are synthetic fragmented-MP4-shaped bytes built here.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use meeting_agent::config::{RecordingConfig, S3Config};
use meeting_agent::recording::meta::RecordingStatus;
use meeting_agent::recording::s3::S3Store;
use meeting_agent::recording::spool::{
    RECORDING_FILE, SpoolWriter, complete_prefix_len, spool_root,
};
use meeting_agent::recording::storage::{
    JOURNAL_FILE, JournalPart, Storage, UploadJournal, meta_key,
};
use meeting_agent::recording::{RecordingError, RecordingMeta, StorageKind};
use meeting_agent_devtools::LocalS3;

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "recordings";

/// Deterministic, non-repeating filler.
fn filler(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

fn head() -> Vec<u8> {
    let mut v = mp4_box(b"ftyp", b"isomiso2avc1mp41");
    v.extend(mp4_box(b"moov", &filler(1, 700)));
    v
}

fn fragment(n: u32, mdat_len: usize) -> Vec<u8> {
    let mut v = mp4_box(b"moof", &filler(1000 + n, 96));
    v.extend(mp4_box(b"mdat", &filler(n, mdat_len)));
    v
}

/// ftyp + moov, then fragments until at least `len` bytes.
fn recording(len: usize, fragment_len: usize) -> Vec<u8> {
    let mut v = head();
    let mut n = 0;
    while v.len() < len {
        v.extend(fragment(n, fragment_len));
        n += 1;
    }
    v
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ma-recstore-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn s3_storage(cfg: &S3Config) -> (Storage, S3Store) {
    let store = S3Store::new(cfg)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(100), Duration::from_millis(400));
    (Storage::S3(store.clone()), store)
}

fn new_meta(room: &str) -> RecordingMeta {
    let mut meta = RecordingMeta::new(room, now_ms() - 60_000, "grid", "s3");
    meta.add_participant("alice");
    meta
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn journal_parts(spool: &Path) -> usize {
    UploadJournal::load(spool).map_or(0, |j| j.parts.len())
}

/// (a) Parts go up while the meeting runs; the object is the spool, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_upload_during_the_meeting() {
    let s3 = LocalS3::start().await.unwrap();
    let mut cfg = s3.config(BUCKET);
    cfg.prefix = "rec/".into();
    let rc = RecordingConfig {
        storage: StorageKind::S3,
        s3: cfg.clone(),
        ..Default::default()
    };
    let dir = temp_dir("during");
    let storage = Storage::from_config(&rc, &dir).unwrap();
    let store = S3Store::new(&cfg).unwrap();
    let bytes = recording(12 * MIB + 123_457, 700_001);
    let mut meta = new_meta("team room");
    let mut writer = SpoolWriter::create(&dir, &meta).unwrap();
    let spool = writer.dir().to_path_buf();
    let follower = writer.follow();
    let delivery = {
        let storage = storage.clone();
        tokio::spawn(async move { storage.deliver(follower).await })
    };

    // The muxer's thread: odd-sized chunks, then it waits to be told to finish.
    let (written_tx, written_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let writer_bytes = bytes.clone();
    let thread = std::thread::spawn(move || {
        let cut = 11 * MIB;
        let mut at = 0;
        let mut chunk = 1;
        while at < cut {
            let end = (at + 37_000 * chunk).min(cut);
            writer.append(&writer_bytes[at..end]).unwrap();
            at = end;
            chunk = chunk % 13 + 1;
        }
        written_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        writer.append(&writer_bytes[at..]).unwrap();
        meta.add_participant("bob");
        meta.ended_unix_ms = Some(now_ms());
        meta.duration_ms = Some(60_000);
        writer.finish(&meta).unwrap();
    });
    tokio::task::spawn_blocking(move || written_rx.recv().unwrap())
        .await
        .unwrap();
    // Two full 5 MiB parts are up before the writer finishes.
    wait_until("two parts in the journal", Duration::from_secs(10), || {
        journal_parts(&spool) >= 2
    })
    .await;
    assert!(!delivery.is_finished());
    let journal = UploadJournal::load(&spool).unwrap();
    assert_eq!(journal.parts.len(), 2);
    assert_eq!(journal.parts[1].end, 10 * MIB as u64);
    let listed = store
        .list_parts(&journal.key, &journal.upload_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|p| p.size == 5 * MIB as u64));
    go_tx.send(()).unwrap();
    thread.join().unwrap();

    let meta = tokio::time::timeout(Duration::from_secs(20), delivery)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(meta.status, RecordingStatus::Complete);
    assert_eq!(meta.size_bytes, Some(bytes.len() as u64));
    assert_eq!(meta.participants, vec!["alice", "bob"]);
    assert_eq!(store.get_object(&meta.key).await.unwrap(), bytes);
    // Stored under the prefix, with its metadata object beside it.
    let raw = std::fs::read(s3.dir.join(BUCKET).join("rec").join(&meta.key)).unwrap();
    assert_eq!(raw.len(), bytes.len());
    let stored: RecordingMeta =
        serde_json::from_slice(&store.get_object(&meta_key(&meta.key)).await.unwrap()).unwrap();
    assert_eq!(stored, meta);
    assert!(!spool.exists(), "spool folder removed");
    std::fs::remove_dir_all(&dir).ok();
}

/// (b) A wrong secret is refused by the server's signature check, and the secret is never
/// in the error.
#[tokio::test]
async fn wrong_secret_is_a_clear_error() {
    let s3 = LocalS3::start().await.unwrap();
    let mut cfg = s3.config(BUCKET);
    cfg.secret_key = "not-the-secret-0123456789-SENTINEL".into();
    let (storage, store) = s3_storage(&cfg);
    let started = Instant::now();
    let e = storage.check().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = e.to_string();
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("secret_key"), "{text}");
    let debug = format!("{e:?} {storage:?} {store:?} {cfg:?}");
    for shown in [&text, &debug] {
        assert!(!shown.contains(&cfg.secret_key), "{shown}");
        assert!(!shown.contains(&s3.secret_key), "{shown}");
    }
    // The right key works, and an unreachable endpoint fails fast.
    let (good, _) = s3_storage(&s3.config(BUCKET));
    good.check().await.unwrap();
    let mut down = s3.config(BUCKET);
    down.endpoint = "http://127.0.0.1:9".into();
    let (down, _) = s3_storage(&down);
    let started = Instant::now();
    let e = down.check().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8), "{e}");
    assert!(matches!(e, RecordingError::S3 { .. }));
}

/// (c) The server goes away mid-recording and comes back: the whole recording arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_recording() {
    let mut s3 = LocalS3::start().await.unwrap();
    let (storage, store) = s3_storage(&s3.config(BUCKET));
    let dir = temp_dir("outage");
    let bytes = recording(13 * MIB, 512_000);
    let meta = new_meta("outage");
    let mut writer = SpoolWriter::create(&dir, &meta).unwrap();
    let spool = writer.dir().to_path_buf();
    let follower = writer.follow();
    let delivery = {
        let storage = storage.clone();
        tokio::spawn(async move { storage.deliver(follower).await })
    };
    let first = 6 * MIB;
    writer.append(&bytes[..first]).unwrap();
    wait_until("the first part", Duration::from_secs(10), || {
        journal_parts(&spool) >= 1
    })
    .await;
    s3.stop().await;
    for chunk in bytes[first..].chunks(300_000) {
        writer.append(chunk).unwrap();
    }
    writer.finish(&meta).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!delivery.is_finished(), "nothing to deliver to");
    assert!(
        spool.join(RECORDING_FILE).exists(),
        "the data stays in the spool"
    );
    assert_eq!(journal_parts(&spool), 1);
    s3.resume().await.unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(20), delivery)
        .await
        .expect("delivered after the server came back")
        .unwrap()
        .unwrap();
    assert_eq!(meta.status, RecordingStatus::Complete);
    assert_eq!(store.get_object(&meta.key).await.unwrap(), bytes);
    assert!(store.head(&meta_key(&meta.key)).await.unwrap().is_some());
    assert!(!spool.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// (d) The agent died mid-recording: the spool ends in a half-written fragment and the
/// journal has a part beyond the last complete fragment. Recovery uploads exactly the
/// complete prefix, as Partial; it leaves a live writer's spool alone and removes a spool
/// with nothing playable.
#[tokio::test]
async fn crash_recovery_uploads_the_complete_prefix() {
    let s3 = LocalS3::start().await.unwrap();
    let (storage, store) = s3_storage(&s3.config(BUCKET));
    storage.check().await.unwrap();
    let dir = temp_dir("crash");

    let mut complete = recording(9 * MIB, 600_000);
    let cut = complete.len();
    let mut bytes = std::mem::take(&mut complete);
    let torn = fragment(999, 4 * MIB);
    bytes.extend_from_slice(&torn[..torn.len() - MIB]);
    assert_eq!(complete_prefix_len(&bytes), cut as u64);
    assert!(bytes.len() > 10 * MIB);

    let meta = new_meta("crashed");
    let mut writer = SpoolWriter::create(&dir, &meta).unwrap();
    let spool = writer.dir().to_path_buf();
    writer.append(&bytes).unwrap();
    // What the dead process had uploaded: parts [0, 5 MiB) and [5 MiB, 10 MiB).
    let upload_id = store
        .create_multipart(&meta.key, "video/mp4")
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (n, (start, end)) in [(0, 5 * MIB), (5 * MIB, 10 * MIB)].into_iter().enumerate() {
        let etag = store
            .upload_part(
                &meta.key,
                &upload_id,
                n as i32 + 1,
                &spool.join(RECORDING_FILE),
                start as u64,
                (end - start) as u64,
            )
            .await
            .unwrap();
        parts.push(JournalPart {
            part_number: n as i32 + 1,
            etag,
            end: end as u64,
        });
    }
    UploadJournal {
        key: meta.key.clone(),
        upload_id,
        parts,
        completed: false,
    }
    .save(&spool)
    .unwrap();
    assert!(spool.join(JOURNAL_FILE).exists());
    drop(writer); // the crash: no finish, lock gone

    // Nothing playable: a spool with only part of its moov.
    let empty_meta = new_meta("empty");
    let mut empty = SpoolWriter::create(&dir, &empty_meta).unwrap();
    let empty_spool = empty.dir().to_path_buf();
    empty.append(&head()[..300]).unwrap();
    drop(empty);

    // A recording in progress in this process.
    let live_meta = new_meta("live");
    let mut live = SpoolWriter::create(&dir, &live_meta).unwrap();
    live.append(&head()).unwrap();

    let results = storage.recover(&dir).await;
    assert_eq!(results.len(), 2, "{results:?}");
    let recovered: Vec<&RecordingMeta> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(recovered.len(), 1, "{results:?}");
    let got = recovered[0];
    assert_eq!(got.id, meta.id);
    assert_eq!(got.status, RecordingStatus::Partial);
    assert_eq!(got.size_bytes, Some(cut as u64));
    let ended = got.ended_unix_ms.expect("end estimated");
    assert!(ended >= got.started_unix_ms);
    assert_eq!(got.duration_ms, Some(ended - got.started_unix_ms));
    let object = store.get_object(&meta.key).await.unwrap();
    assert_eq!(object.len(), cut);
    assert!(object == bytes[..cut], "exactly the complete prefix");
    let stored: RecordingMeta =
        serde_json::from_slice(&store.get_object(&meta_key(&meta.key)).await.unwrap()).unwrap();
    assert_eq!(stored.status, RecordingStatus::Partial);
    assert!(!spool.exists());
    assert!(!empty_spool.exists(), "nothing playable: removed");
    assert!(live.dir().exists(), "a live writer's spool is left alone");
    assert_eq!(spool_root(&dir).read_dir().unwrap().count(), 1);
    drop(live);
    std::fs::remove_dir_all(&dir).ok();
}

/// A small recording finished and delivered to `storage`.
async fn deliver_small(storage: &Storage, dir: &Path, room: &str, bytes: &[u8]) -> RecordingMeta {
    let meta = new_meta(room);
    let mut writer = SpoolWriter::create(dir, &meta).unwrap();
    let follower = writer.follow();
    for chunk in bytes.chunks(100_000) {
        writer.append(chunk).unwrap();
    }
    writer.finish(&meta).unwrap();
    tokio::time::timeout(Duration::from_secs(20), storage.deliver(follower))
        .await
        .unwrap()
        .unwrap()
}

/// (e) Presigned links: GET, Range, expiry. List and delete on S3.
#[tokio::test]
async fn presigned_links_list_and_delete() {
    let s3 = LocalS3::start().await.unwrap();
    let (storage, store) = s3_storage(&s3.config(BUCKET));
    let dir = temp_dir("links");
    let bytes = recording(MIB, 100_000);
    let meta = deliver_small(&storage, &dir, "links", &bytes).await;
    let other = deliver_small(&storage, &dir, "links", &bytes[..5000]).await;

    let http = reqwest::Client::new();
    let link = storage.link(&meta, Duration::from_secs(60)).await.unwrap();
    assert!(link.contains("X-Amz-Signature="), "{link}");
    assert!(!link.contains(&s3.secret_key));
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), bytes);
    let r = http
        .get(&link)
        .header("Range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), bytes[100..1100]);
    // A tampered link is refused.
    let tampered = link.replace(&meta.id, &other.id);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let short = storage.link(&meta, Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(http.get(&short).send().await.unwrap().status(), 403);

    let listed = storage.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&meta) && listed.contains(&other));
    storage.delete(&meta).await.unwrap();
    assert!(store.head(&meta.key).await.unwrap().is_none());
    assert!(store.head(&meta_key(&meta.key)).await.unwrap().is_none());
    assert_eq!(storage.list().await.unwrap(), vec![other.clone()]);
    assert!(matches!(
        storage.link(&meta, Duration::from_secs(60)).await,
        Err(RecordingError::NotFound(_))
    ));
    std::fs::remove_dir_all(&dir).ok();
}

/// (f) Local storage: the finished spool is moved into place with its JSON beside it.
#[tokio::test]
async fn local_storage_moves_lists_and_deletes() {
    let dir = temp_dir("local");
    let storage = Storage::from_config(&RecordingConfig::default(), &dir).unwrap();
    assert_eq!(storage.kind(), StorageKind::Local);
    storage.check().await.unwrap();
    let bytes = recording(300_000, 50_000);
    let meta = deliver_small(&storage, &dir, "spool", &bytes).await;
    assert_eq!(meta.status, RecordingStatus::Complete);
    assert_eq!(meta.size_bytes, Some(bytes.len() as u64));
    let file = dir.join(&meta.key);
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let json = dir.join(meta_key(&meta.key));
    let stored: RecordingMeta = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(stored, meta);
    assert!(!spool_root(&dir).join(&meta.id).exists());

    // An unfinished spool left behind is cut and stored as Partial.
    let crashed = new_meta("other room");
    let mut writer = SpoolWriter::create(&dir, &crashed).unwrap();
    writer.append(&bytes).unwrap();
    writer.append(&fragment(77, 1000)[..500]).unwrap();
    drop(writer);
    let results = storage.recover(&dir).await;
    assert_eq!(results.len(), 1);
    let partial = results.into_iter().next().unwrap().unwrap();
    assert_eq!(partial.status, RecordingStatus::Partial);
    assert_eq!(std::fs::read(dir.join(&partial.key)).unwrap(), bytes);

    assert_eq!(
        storage.list().await.unwrap(),
        vec![meta.clone(), partial.clone()]
    );
    let link = storage.link(&meta, Duration::from_secs(60)).await.unwrap();
    assert!(
        link.starts_with("file:///") && link.ends_with(".mp4"),
        "{link}"
    );
    storage.delete(&meta).await.unwrap();
    assert!(!file.exists() && !json.exists());
    assert_eq!(storage.list().await.unwrap(), vec![partial]);
    assert!(matches!(
        storage.delete(&meta).await,
        Err(RecordingError::NotFound(_))
    ));
    std::fs::remove_dir_all(&dir).ok();
}
