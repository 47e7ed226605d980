//! Several workers (three `meeting-agent worker` processes) against one livekit-server with a
//! shared PostgreSQL store and S3: rooms spread over them, a SIGKILLed worker's meeting gets
//! an agent again from another worker (captions resume, the transcript goes on in the same
//! thread, the recording goes on as a second part of the same meeting) and its spool is
//! uploaded when a worker starts again on its disk; a SIGTERMed worker finishes its meeting,
//! takes no new one and exits.

use std::time::{Duration, Instant};

use meeting_agent::config::S3Config;
use meeting_agent::store::Store;
use meeting_agent_devtools::fleet::{FleetWorker, SharedServices, caption_session};
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};

use crate::common::init;

const T: Duration = Duration::from_secs(90);

async fn next_caption(p: &mut PythonParticipant, within: Duration) -> Option<String> {
    p.wait_for(within, |e| caption_session(e).is_some())
        .await
        .and_then(|e| caption_session(&e))
}

fn speaker(server: &LocalLiveKitServer, room: &str, identity: &str) -> PythonParticipant {
    let wav = meeting_agent_devtools::fixtures::dir()
        .unwrap()
        .join("speech.wav");
    PythonParticipant::spawn(
        server,
        room,
        identity,
        &["--wav", wav.to_str().unwrap(), "--video", "none"],
    )
    .unwrap()
}

/// Which worker took `room` (its log says so), waiting up to `within`.
async fn worker_of(workers: &[&FleetWorker], room: &str, within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(i) = workers
            .iter()
            .position(|w| w.rooms_accepted().iter().any(|r| r == room))
        {
            return Some(i);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn tails(workers: &[&FleetWorker]) -> String {
    workers.iter().map(|w| w.tail(15)).collect()
}

async fn recordings_of(s3: &S3Config, room: &str) -> Vec<meeting_agent::recording::RecordingMeta> {
    let mut config = meeting_agent::config::Config::default();
    config.recording.storage = meeting_agent::recording::StorageKind::S3;
    config.recording.s3 = s3.clone();
    let recorder = meeting_agent::features::recording::Recorder::from_config(&config).unwrap();
    recorder
        .storage
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.room == room
                && m.kind == meeting_agent::recording::meta::RecordingKind::Composite
                && matches!(
                    m.status,
                    meeting_agent::recording::meta::RecordingStatus::Complete
                        | meeting_agent::recording::meta::RecordingStatus::Partial
                )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_meeting_continues_on_another_and_a_drained_one_finishes() {
    init();
    let shared = SharedServices::start("failover").await.unwrap();
    let (server, pg, dir) = (&shared.server, &shared.postgres, shared.dir.clone());
    let fleet = shared.fleet(1, 120);
    let disk = |i: usize| dir.join(format!("worker-{i}"));
    let w0 = FleetWorker::spawn("w0", &fleet, &disk(0)).unwrap();
    let w1 = FleetWorker::spawn("w1", &fleet, &disk(1)).unwrap();
    let w2 = FleetWorker::spawn("w2", &fleet, &disk(2)).unwrap();
    for w in [&w0, &w1, &w2] {
        assert!(
            w.wait_log("worker registered", T).await,
            "{} registers:\n{}",
            w.name,
            w.tail(30)
        );
    }

    // Two meetings: each worker takes one room at most (`max_jobs` = 1), so they spread.
    let mut ann = speaker(server, "fo-a", "ann");
    let first_agent = next_caption(&mut ann, T)
        .await
        .unwrap_or_else(|| panic!("captions in fo-a:\n{}", tails(&[&w0, &w1, &w2])));
    let mut bob = speaker(server, "fo-b", "bob");
    assert!(
        next_caption(&mut bob, T).await.is_some(),
        "captions in fo-b"
    );
    let a_at = worker_of(&[&w0, &w1, &w2], "fo-a", T).await.unwrap();
    let b_at = worker_of(&[&w0, &w1, &w2], "fo-b", T).await.unwrap();
    assert_ne!(a_at, b_at, "one worker took both rooms");
    // Name them: `killed` serves fo-a, `drained` fo-b, `spare` nothing yet.
    let spare_at = 3 - a_at - b_at;
    let mut all = [Some(w0), Some(w1), Some(w2)];
    let mut killed = all[a_at].take().unwrap();
    let mut drained = all[b_at].take().unwrap();
    let spare = all[spare_at].take().unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    let meeting_id = store.meetings(Some("fo-a")).await.unwrap()[0].id.clone();
    // Some transcript before the crash.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // SIGKILL mid-meeting: another worker's agent captions fo-a.
    killed.kill();
    let crashed = Instant::now();
    killed.wait_exit(T).await.expect("killed");
    let deadline = Instant::now() + T;
    let second_agent = loop {
        let agent = next_caption(&mut ann, deadline - Instant::now())
            .await
            .unwrap_or_else(|| {
                panic!(
                    "captions resume in fo-a:\n{}",
                    tails(&[&killed, &drained, &spare])
                )
            });
        if agent != first_agent {
            break agent;
        }
    };
    let failover_s = crashed.elapsed().as_secs_f64();
    println!("failover_s = {failover_s:.2} ({first_agent} -> {second_agent})");
    assert!(
        spare.rooms_accepted().contains(&"fo-a".to_string()),
        "the spare worker took fo-a:\n{}",
        tails(&[&drained, &spare])
    );
    // One live agent in the room: the store's lease is the spare worker's.
    let room_sid = store.meetings(Some("fo-a")).await.unwrap()[0]
        .room_sid
        .clone()
        .expect("the meeting knows its room instance");
    let holder = store
        .room_worker(&room_sid)
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        holder.contains(&format!("-{}-", spare.pid)),
        "fo-a is held by {holder}, not the spare worker (pid {})",
        spare.pid
    );
    assert!(
        failover_s < 20.0,
        "captions came back {failover_s:.1} s after the crash"
    );

    // The dead worker's disk: a worker started on it uploads the spooled first part.
    let restarted = FleetWorker::spawn("w-restarted", &fleet, &killed.data_dir).unwrap();
    assert!(restarted.wait_log("worker registered", T).await);

    // SIGTERM: the drained worker keeps its meeting and takes no new one.
    drained.terminate();
    assert!(
        drained.wait_log("draining", T).await,
        "{}",
        drained.tail(20)
    );
    let bob_agent = next_caption(&mut bob, T).await;
    assert!(bob_agent.is_some(), "fo-b still captioned while draining");
    let mut cid = speaker(server, "fo-c", "cid");
    assert!(
        next_caption(&mut cid, T).await.is_some(),
        "captions in fo-c"
    );
    assert!(
        restarted.rooms_accepted().contains(&"fo-c".to_string()),
        "fo-c went to the free worker:\n{}",
        tails(&[&drained, &restarted, &spare])
    );
    assert!(!drained.rooms_accepted().contains(&"fo-c".to_string()));
    // Its meeting ends: the worker exits cleanly.
    bob.stop().await;
    server.close_room("fo-b").await.unwrap();
    let status = drained
        .wait_exit(T)
        .await
        .expect("the drained worker exits");
    assert!(status.success(), "{status:?}\n{}", drained.tail(20));

    // The rest of fo-a, then it ends.
    tokio::time::sleep(Duration::from_secs(4)).await;
    ann.stop().await;
    server.close_room("fo-a").await.unwrap();
    cid.stop().await;
    server.close_room("fo-c").await.unwrap();

    // One meeting, one thread: segments from both agents, the summary covering both.
    let deadline = Instant::now() + T;
    let meeting = loop {
        let meetings = store.meetings(Some("fo-a")).await.unwrap();
        assert_eq!(meetings.len(), 1, "{meetings:?}");
        if meetings[0].ended_at_ms.is_some() {
            break meetings[0].clone();
        }
        assert!(Instant::now() < deadline, "fo-a's meeting ends");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(meeting.id, meeting_id);
    let segments = store.segments(&meeting.id).await.unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    let keys: std::collections::HashSet<_> = segments.iter().map(|s| s.key.clone()).collect();
    assert_eq!(keys.len(), segments.len(), "segment keys are unique");
    let thread = store.thread(&meeting.id).await.unwrap();
    let transcripts = thread.iter().filter(|m| m.kind == "transcript").count();
    assert!(transcripts >= 2, "{thread:?}");
    let ids: std::collections::HashSet<_> = thread.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), thread.len());
    assert!(
        thread.iter().any(|m| m.kind == "summary"),
        "the summary is in the thread: {thread:?}"
    );

    // Two recordings of fo-a: the first part (spooled by the killed worker, uploaded by the
    // restarted one) and the second, both posted into the meeting's thread.
    let deadline = Instant::now() + T;
    loop {
        let parts = recordings_of(&fleet.s3, "fo-a").await;
        let posted = store
            .thread(&meeting.id)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.kind == "recording")
            .count();
        if parts.len() >= 2 && posted >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two parts of fo-a's recording ({} stored, {posted} posted):\n{}",
            parts.len(),
            tails(&[&restarted, &spare])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop((restarted, spare));
    let _ = std::fs::remove_dir_all(&dir);
}
