//! The voice and video message queue across processes, on a real PostgreSQL: two `meeting-agent
//! media work` processes share a queue of fifty messages, and no job is done twice or missed; a
//! worker killed mid-job loses nothing: its claim runs out and the other worker finishes the job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meeting_agent::store::{JobStatus, Store};
use meeting_agent_devtools::LocalPostgres;

/// A configuration file for the workers: the store, the media folder, a short lease.
fn config(dir: &Path, store_url: &str, lease_secs: u64) -> PathBuf {
    let path = dir.join(format!("worker-{lease_secs}.toml"));
    std::fs::write(
        &path,
        format!(
            "data_dir = {dir:?}\n[store]\nurl = {store_url:?}\n[media_messages]\ndir = {media:?}\nlease_secs = {lease_secs}\npoll_ms = 100\nretry_secs = 1\n[log]\nformat = \"json\"\nfilter = \"meeting_agent=info\"\n",
            media = dir.join("media"),
        ),
    )
    .unwrap();
    path
}

fn worker(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meeting-agent"))
        .args(["--config", config.to_str().unwrap(), "media", "work"])
        .env_remove("MEETING_AGENT_CONFIG")
        .env_remove("MEETING_AGENT_DATABASE_URL")
        .env_remove("MEETING_AGENT_LOG_FORMAT")
        .env_remove("MEETING_AGENT_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until `log` says its worker is taking jobs.
fn started(log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains("media worker started")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// The messages whose jobs the worker logging to `log` claimed (its JSON log lines).
fn claims(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "media job claimed")
        .filter_map(|l| l["message_id"].as_str().map(str::to_string))
        .collect()
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn now_ms() -> i64 {
    meeting_agent::captions::journal::unix_ms() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_fifty_jobs_and_a_killed_one_loses_nothing() {
    let pg = LocalPostgres::start().unwrap();
    let dir = std::env::temp_dir().join(format!("media-queue-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    // Fifty short voice notes: a second of quiet hiss each (no speech: this is about the queue).
    for i in 0..50u32 {
        let hiss: Vec<i16> = (0..48_000u32)
            .map(|n| ((n.wrapping_mul(2_654_435_761).wrapping_add(i) >> 24) as i16 - 128) / 4)
            .collect();
        meeting_agent::audio::wav::write_i16(&media.join(format!("n{i}.wav")), &hiss, 48_000, 1)
            .unwrap();
    }
    let settings = config(&dir, &pg.url(), 30);
    let logs = [dir.join("a.log"), dir.join("b.log")];
    let workers: Vec<Child> = logs.iter().map(|log| worker(&settings, log)).collect();
    logs.iter().for_each(|log| started(log));
    for i in 0..50 {
        assert!(
            store
                .enqueue_media(&format!("note-{i}"), &format!("file:n{i}.wav"), now_ms())
                .await
                .unwrap()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.media_jobs(Some(JobStatus::Done)).await.unwrap().len() < 50 {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            store.media_jobs(None).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    workers.into_iter().for_each(stop);
    let (a, b) = (claims(&logs[0]), claims(&logs[1]));
    println!("worker a took {}, worker b took {}", a.len(), b.len());
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(a.len() + b.len(), 50, "no job claimed twice: {a:?} {b:?}");
    assert_eq!(all.len(), 50, "none missed");
    assert!(!a.is_empty() && !b.is_empty(), "both workers took jobs");
    for job in store.media_jobs(None).await.unwrap() {
        assert_eq!((job.status, job.attempts), (JobStatus::Done, 1), "{job:?}");
    }

    // A worker killed mid-job: its claim runs out (3 s lease) and the other finishes the job.
    let (samples, rate, _) = meeting_agent::audio::wav::read_i16(
        &meeting_agent_devtools::fixtures::dir()
            .unwrap()
            .join("captions.wav"),
    )
    .unwrap();
    let long: Vec<i16> = samples.iter().chain(&samples).copied().collect();
    meeting_agent::audio::wav::write_i16(&media.join("long.wav"), &long, rate, 1).unwrap();
    let short_lease = config(&dir, &pg.url(), 3);
    let (log_c, log_d) = (dir.join("c.log"), dir.join("d.log"));
    let c = worker(&short_lease, &log_c);
    started(&log_c);
    store
        .enqueue_media("long", "file:long.wav", now_ms())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.media_job("long").await.unwrap().unwrap().status != JobStatus::Running {
        assert!(Instant::now() < deadline, "worker c never took the job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken_by_c = store.media_job("long").await.unwrap().unwrap().claimed_by;
    let mut c = c;
    c.kill().unwrap(); // SIGKILL: no chance to give the job back
    c.wait().unwrap();
    let d = worker(&short_lease, &log_d);
    let deadline = Instant::now() + Duration::from_secs(180);
    let job = loop {
        let job = store.media_job("long").await.unwrap().unwrap();
        if job.status == JobStatus::Done {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop(d);
    assert_eq!(job.attempts, 2, "{job:?}");
    assert_ne!(job.claimed_by, taken_by_c, "finished by the other worker");
    let result: serde_json::Value = serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
    assert!(
        result["transcript"].as_str().unwrap().contains("quarterly"),
        "{result}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
