//! End to end against a real livekit-server, with LiveKit's Python SDK as the other
//! participant: dispatch, media reception, restarts, several rooms, failures.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use livekit_protocol::JobStatus;
use meeting_agent::session::{MeetingSession, SessionReport};
use meeting_agent::worker::{JobContext, JobFuture, JobHandler, Shutdown, WorkerEvent};
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant, dispatch_cli};

const T: Duration = Duration::from_secs(30);

fn job_accepted_for(room: &str) -> impl Fn(&WorkerEvent) -> bool + '_ {
    move |e| matches!(e, WorkerEvent::JobAccepted { room: r, .. } if r == room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_dispatch_receives_the_tone_and_the_moving_video() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    let mut alice = PythonParticipant::spawn(
        &server,
        "tone-room",
        "alice",
        &["--tone-hz", "440", "--video", "640x360"],
    )
    .unwrap();

    wait_for(&mut worker.events, T, job_accepted_for("tone-room"))
        .await
        .expect("agent dispatched into the new room");
    let agent = alice
        .wait_for(T, |e| {
            e["event"] == "participant_connected" && e["kind"] == "agent"
        })
        .await
        .expect("alice sees the agent join");
    assert!(agent["identity"].as_str().unwrap().starts_with("agent-"));

    // Two consecutive one-second windows at the tone's frequency.
    for _ in 0..2 {
        let report = wait_for(&mut worker.reports, T, |r| {
            audio_in_room(r, "tone-room").is_some()
        })
        .await
        .expect("audio from alice");
        let hz = audio_in_room(&report, "tone-room").unwrap();
        assert!(
            (hz - 440.0).abs() < 5.0,
            "dominant frequency {hz} Hz, want 440"
        );
    }
    let video = wait_for(&mut worker.reports, T, |r| matches!(r, SessionReport::VideoStats { room, frames, .. } if room == "tone-room" && *frames >= 10))
        .await
        .expect("video from alice");
    let SessionReport::VideoStats {
        width,
        height,
        frames,
        distinct,
        participant,
        ..
    } = video
    else {
        unreachable!()
    };
    assert_eq!((width, height, participant.as_str()), (640, 360, "alice"));
    assert!(
        distinct * 10 >= frames * 9,
        "content must change frame to frame: {distinct} of {frames} distinct"
    );
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_agent_joins_only_when_dispatched_explicitly() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "notes-agent")).await;
    let mut bob = PythonParticipant::spawn(
        &server,
        "explicit-room",
        "bob",
        &["--tone-hz", "550", "--video", "none"],
    )
    .unwrap();
    bob.wait_for(T, |e| e["event"] == "published")
        .await
        .expect("bob publishes");

    assert!(
        wait_for(
            &mut worker.events,
            Duration::from_secs(4),
            job_accepted_for("explicit-room")
        )
        .await
        .is_none(),
        "a named agent must not be dispatched automatically"
    );
    let created = dispatch_cli(
        &server,
        &[
            "create",
            "--room",
            "explicit-room",
            "--agent-name",
            "notes-agent",
        ],
    )
    .await
    .unwrap();
    assert_eq!(created["agent_name"], "notes-agent");
    wait_for(&mut worker.events, T, job_accepted_for("explicit-room"))
        .await
        .expect("dispatched by name");
    let report = wait_for(&mut worker.reports, T, |r| {
        audio_in_room(r, "explicit-room").is_some()
    })
    .await
    .unwrap();
    assert!((audio_in_room(&report, "explicit-room").unwrap() - 550.0).abs() < 5.0);
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_re_registers_after_a_server_restart() {
    init();
    let mut server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    server.restart().await.unwrap();
    wait_for(&mut worker.events, T, |e| {
        matches!(e, WorkerEvent::ConnectionLost { .. })
    })
    .await
    .expect("the worker notices");
    wait_for(&mut worker.events, Duration::from_secs(60), |e| {
        matches!(e, WorkerEvent::Registered { .. })
    })
    .await
    .expect("and registers again");

    let carol = PythonParticipant::spawn(
        &server,
        "after-restart",
        "carol",
        &["--tone-hz", "330", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("after-restart"))
        .await
        .expect("dispatched after the restart");
    let report = wait_for(&mut worker.reports, T, |r| {
        audio_in_room(r, "after-restart").is_some()
    })
    .await
    .unwrap();
    assert!((audio_in_room(&report, "after-restart").unwrap() - 330.0).abs() < 5.0);
    carol.stop().await;
}

/// The server restarts in the middle of a meeting: the participant's SDK and the agent both
/// come back (the engine reconnects or the worker is dispatched again into the re-created
/// room) and the agent hears the participant again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_a_server_restart() {
    init();
    let mut server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    let mut dave = PythonParticipant::spawn(
        &server,
        "restart-room",
        "dave",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.reports, T, |r| {
        audio_in_room(r, "restart-room").is_some()
    })
    .await
    .expect("the agent hears dave before the restart");
    server.restart().await.unwrap();
    let restarted = std::time::Instant::now();
    // Reports from before the restart may still be queued: only those after it count.
    let report = wait_for(&mut worker.reports, Duration::from_secs(90), |r| {
        restarted.elapsed() > Duration::from_secs(2) && audio_in_room(r, "restart-room").is_some()
    })
    .await
    .expect("the agent hears dave again after the restart");
    assert!((audio_in_room(&report, "restart-room").unwrap() - 440.0).abs() < 5.0);
    eprintln!(
        "meeting media back {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    assert!(
        dave.wait_for(Duration::from_secs(1), |e| e["event"] == "disconnected")
            .await
            .is_none(),
        "the participant stayed in the meeting"
    );
    dave.stop().await;
    // Leave the room before the server goes, so no reconnect attempts outlive the test.
    let _ = worker.shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(15), worker.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_two_rooms_at_once() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    let dave = PythonParticipant::spawn(
        &server,
        "room-a",
        "dave",
        &["--tone-hz", "440", "--video", "320x240", "--fps", "15"],
    )
    .unwrap();
    let erin = PythonParticipant::spawn(
        &server,
        "room-b",
        "erin",
        &["--tone-hz", "880", "--video", "320x240", "--fps", "15"],
    )
    .unwrap();

    let (mut heard_a, mut heard_b, mut seen_a, mut seen_b) = (false, false, false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while !(heard_a && heard_b && seen_a && seen_b) && tokio::time::Instant::now() < deadline {
        let Some(report) = wait_for(&mut worker.reports, Duration::from_secs(5), |_| true).await
        else {
            continue;
        };
        match &report {
            SessionReport::AudioStats {
                room, frequency_hz, ..
            } => {
                let want = if room == "room-a" { 440.0 } else { 880.0 };
                assert!(
                    (frequency_hz - want).abs() < 8.0,
                    "{room}: {frequency_hz} Hz, want {want}"
                );
                heard_a |= room == "room-a";
                heard_b |= room == "room-b";
            }
            SessionReport::VideoStats {
                room,
                width: 320,
                height: 240,
                ..
            } => {
                seen_a |= room == "room-a";
                seen_b |= room == "room-b";
            }
            _ => {}
        }
    }
    assert!(
        heard_a && heard_b && seen_a && seen_b,
        "audio a/b {heard_a}/{heard_b}, video a/b {seen_a}/{seen_b}"
    );
    dave.stop().await;
    erin.stop().await;
}

/// Panics in rooms whose name starts with "panic" (in "panic-joined" once in the room), runs
/// the normal session elsewhere.
struct PanickyHandler(MeetingSession);

impl JobHandler for PanickyHandler {
    fn run(&self, ctx: JobContext) -> JobFuture {
        if ctx.room_name() == "panic-joined" {
            Box::pin(async move {
                let (_room, _events) =
                    meeting_agent::livekit::Room::connect(&ctx.url, &ctx.token, Default::default())
                        .await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                panic!("deliberate failure in this room's job, inside the room")
            })
        } else if ctx.room_name().starts_with("panic") {
            Box::pin(async { panic!("deliberate failure in this room's job") })
        } else {
            self.0.run(ctx)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_alone() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let session = meeting_agent::features::FeatureSet::default().session();
    let reports = session.subscribe();
    let mut worker = start_worker_with(
        config_for(&server, ""),
        Arc::new(PanickyHandler(session)),
        reports,
    )
    .await;

    let healthy = PythonParticipant::spawn(
        &server,
        "healthy-room",
        "frank",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("healthy-room"))
        .await
        .unwrap();
    let doomed = PythonParticipant::spawn(
        &server,
        "panic-room",
        "grace",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    let finished = wait_for(
        &mut worker.events,
        T,
        |e| matches!(e, WorkerEvent::JobFinished { room, .. } if room == "panic-room"),
    )
    .await
    .unwrap();
    let WorkerEvent::JobFinished { status, error, .. } = finished else {
        unreachable!()
    };
    assert_eq!(status, JobStatus::JsFailed);
    assert!(error.contains("deliberate failure"), "{error}");

    // The other room keeps flowing and the worker keeps taking jobs.
    wait_for(&mut worker.reports, T, |r| {
        audio_in_room(r, "healthy-room").is_some()
    })
    .await
    .expect("healthy room still served");
    let later = PythonParticipant::spawn(
        &server,
        "later-room",
        "heidi",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("later-room"))
        .await
        .expect("still accepting jobs");

    // A job failing once inside its room leaves it: no ghost agent stays behind.
    let witness = PythonParticipant::spawn(
        &server,
        "panic-joined",
        "ivy",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    let agent_present = || async {
        let listed = server
            .room_service(
                "ListParticipants",
                &serde_json::json!({"room": "panic-joined"}),
            )
            .await
            .unwrap_or_default();
        listed["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| {
                p["identity"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("agent-"))
            })
    };
    let deadline = tokio::time::Instant::now() + T;
    while !agent_present().await {
        assert!(tokio::time::Instant::now() < deadline, "the agent joins");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + T;
    while agent_present().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent whose job panicked leaves the room"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in [healthy, doomed, later, witness] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_running_jobs_and_accepts_no_new_ones() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    let ivan = PythonParticipant::spawn(
        &server,
        "running-room",
        "ivan",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("running-room"))
        .await
        .unwrap();

    worker.shutdown.send(Shutdown::Drain).unwrap();
    let judy = PythonParticipant::spawn(
        &server,
        "new-room",
        "judy",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    assert!(
        wait_for(
            &mut worker.events,
            Duration::from_secs(6),
            job_accepted_for("new-room")
        )
        .await
        .is_none(),
        "a draining worker takes no job"
    );
    // The running job still receives audio while draining.
    wait_for(&mut worker.reports, T, |r| {
        audio_in_room(r, "running-room").is_some()
    })
    .await
    .expect("running job keeps going");
    assert!(!worker.task.is_finished());

    // When the running job's room ends, the worker finishes.
    dispatch_cli(&server, &["delete-room", "--room", "running-room"])
        .await
        .unwrap();
    let finished = wait_for(
        &mut worker.events,
        T,
        |e| matches!(e, WorkerEvent::JobFinished { room, .. } if room == "running-room"),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            finished,
            WorkerEvent::JobFinished {
                status: JobStatus::JsSuccess,
                ..
            }
        ),
        "{finished:?}"
    );
    wait_for(&mut worker.events, T, |e| *e == WorkerEvent::Drained)
        .await
        .expect("drained");
    tokio::time::timeout(T, worker.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    ivan.stop().await;
    judy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_still_running_at_the_drain_timeout_are_terminated() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut config = config_for(&server, "");
    config.agent.drain_timeout_secs = 2;
    let mut worker = start_worker(config).await;
    let mallory = PythonParticipant::spawn(
        &server,
        "long-room",
        "mallory",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("long-room"))
        .await
        .unwrap();
    worker.shutdown.send(Shutdown::Drain).unwrap();
    let finished = wait_for(&mut worker.events, Duration::from_secs(15), |e| {
        matches!(e, WorkerEvent::JobFinished { .. })
    })
    .await
    .expect("terminated after the drain timeout");
    assert!(
        matches!(
            finished,
            WorkerEvent::JobFinished {
                status: JobStatus::JsSuccess,
                ..
            }
        ),
        "{finished:?}"
    );
    tokio::time::timeout(T, worker.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    mallory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_at_its_job_limit_reports_full_and_is_not_dispatched() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut config = config_for(&server, "");
    config.agent.max_jobs = 1;
    let mut worker = start_worker(config).await;
    let niaj = PythonParticipant::spawn(
        &server,
        "first-room",
        "niaj",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    wait_for(&mut worker.events, T, job_accepted_for("first-room"))
        .await
        .unwrap();
    let olivia = PythonParticipant::spawn(
        &server,
        "second-room",
        "olivia",
        &["--tone-hz", "440", "--video", "none"],
    )
    .unwrap();
    assert!(
        wait_for(
            &mut worker.events,
            Duration::from_secs(6),
            job_accepted_for("second-room")
        )
        .await
        .is_none(),
        "a full worker takes no second job"
    );
    niaj.stop().await;
    olivia.stop().await;
}
