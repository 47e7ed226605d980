// Own binary (not e2e): process-wide FFI handle counters; ends by disposing the engine.
//! Every FFI handle the engine hands over is released exactly once, never after the library
//! is disposed, and never before the library's own release of a room's track handles when it
//! closes the room (the library then warns "Attempted to drop unknown FFI handle", which the
//! engine counts). In its own test binary so the process-wide counters see only this test,
//! which ends by disposing the library as the agent does at exit.

#[path = "e2e/common.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use meeting_agent::livekit::{AudioStream, Engine, Room, RoomEvent, TrackKind};
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};
use tokio::sync::mpsc::UnboundedReceiver;

const T: Duration = Duration::from_secs(30);
const ROOM: &str = "handles-room";

/// Waits until `identity`'s audio track is subscribed and opens a stream on it.
async fn audio_of(
    room: &Room,
    events: &mut UnboundedReceiver<RoomEvent>,
    identity: &str,
) -> AudioStream {
    if let Some(t) = room
        .subscribed_tracks()
        .into_iter()
        .find(|t| t.participant == identity && t.kind == TrackKind::KindAudio)
    {
        return room.audio_stream(&t.sid, 48_000, 1, 10).unwrap();
    }
    loop {
        match tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::TrackSubscribed(t)
                if t.participant == identity && t.kind == TrackKind::KindAudio =>
            {
                return room.audio_stream(&t.sid, 48_000, 1, 10).unwrap();
            }
            _ => {}
        }
    }
}

/// Until every owned handle is released (rooms let go in the background), at most 15 s; then
/// a moment for the library's log records (batched) to arrive.
async fn settled(engine: &Engine) {
    for _ in 0..150 {
        if engine.live_handles() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn assert_released_once(engine: &Engine, when: &str) {
    assert_eq!(
        engine.live_handles(),
        0,
        "{when}: every owned handle is released"
    );
    assert_eq!(
        engine.stats.handles_drop_failed.load(Ordering::Relaxed),
        0,
        "{when}: no handle may be released twice"
    );
    assert_eq!(
        engine.stats.library_unknown_drops.load(Ordering::Relaxed),
        0,
        "{when}: the library released no handle this process had already released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_released_once_and_never_after_dispose() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let kate = PythonParticipant::spawn(
        &server,
        ROOM,
        "kate",
        &["--tone-hz", "440", "--video", "320x240"],
    )
    .unwrap();
    let engine = Engine::get().unwrap();

    // 1. A room left with disconnect: streams of both kinds, every frame buffer released.
    let (room, mut events) = join_room(&server, ROOM, "probe").await;
    let mut streams = (None, None);
    while streams.0.is_none() || streams.1.is_none() {
        match tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::TrackSubscribed(t) if t.kind == TrackKind::KindAudio => {
                streams.0 = Some(room.audio_stream(&t.sid, 16_000, 1, 10).unwrap())
            }
            RoomEvent::TrackSubscribed(t) if t.kind == TrackKind::KindVideo => {
                streams.1 = Some(room.video_stream(&t.sid, 2).unwrap())
            }
            _ => {}
        }
    }
    let (mut audio, mut video) = (streams.0.unwrap(), streams.1.unwrap());
    for _ in 0..50 {
        let frame = audio.recv().await.unwrap();
        assert_eq!(
            (frame.sample_rate, frame.channels, frame.samples.len()),
            (16_000, 1, 160)
        );
    }
    let frame = video.recv().await.unwrap();
    assert_eq!((frame.width, frame.height), (320, 240));
    drop((audio, video));
    room.disconnect().await.unwrap();
    drop(room);
    settled(engine).await;
    assert_released_once(engine, "after disconnect");
    assert!(
        engine.stats.handles_dropped.load(Ordering::Relaxed) > 50,
        "frame buffers are released"
    );

    // 2. A participant leaves mid-meeting (its tracks end before the room closes), then the
    // room is dropped without disconnect while a stream is still open (a job that panicked or
    // was aborted): the library closes the room in the background and releases the track
    // handles itself; ours go after that, never before.
    let (room, mut events) = join_room(&server, ROOM, "probe-2").await;
    let leo = PythonParticipant::spawn(
        &server,
        ROOM,
        "leo",
        &["--tone-hz", "660", "--video", "160x120"],
    )
    .unwrap();
    let mut from_kate = audio_of(&room, &mut events, "kate").await;
    let mut from_leo = audio_of(&room, &mut events, "leo").await;
    from_leo.recv().await.unwrap();
    leo.stop().await;
    loop {
        match tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::ParticipantDisconnected { identity, .. } if identity == "leo" => break,
            _ => {}
        }
    }
    drop(from_leo);
    from_kate.recv().await.unwrap();
    drop(room);
    drop(events);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(from_kate);
    settled(engine).await;
    assert_released_once(engine, "after a participant left and a room was dropped");

    // 3. At exit: the library is disposed with a room still joined and a stream open (a
    // process ending mid-meeting); the library closes the room itself. The room and the
    // stream dropped afterwards release nothing into the library.
    let (room, mut events) = join_room(&server, ROOM, "probe-3").await;
    let mut stream = audio_of(&room, &mut events, "kate").await;
    stream.recv().await.unwrap();
    assert!(engine.live_handles() > 0);
    Engine::shutdown(Duration::from_secs(10));
    assert!(Engine::is_disposed());
    let dropped = engine.stats.handles_dropped.load(Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(2), room.disconnect())
        .await
        .expect("disconnect after dispose returns at once")
        .unwrap();
    drop(stream);
    drop(room);
    drop(events);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        engine.stats.handles_dropped.load(Ordering::Relaxed),
        dropped,
        "nothing is released into the library after dispose"
    );
    assert!(
        engine.stats.handles_after_dispose.load(Ordering::Relaxed) > 0,
        "the handles let go after dispose are counted"
    );
    assert_released_once(engine, "after dispose");
    // Killed rather than stopped: a graceful stop has LiveKit's Python SDK in that process
    // print its own "Attempted to drop unknown FFI handle" on the shared stderr, which reads
    // like this process's (whose library warnings arrive as log records and are counted).
    drop(kate);
}
