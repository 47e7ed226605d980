//! Every FFI handle the engine hands over is released exactly once. In its own test binary so
//! the process-wide counters see only this test.

mod common;

use std::time::Duration;

use common::*;
use meeting_agent::devtools::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::livekit::TrackKind;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_released_when_a_room_ends() {
    use meeting_agent::livekit::{ConnectOptions, Engine, Room, RoomEvent, token};
    use std::sync::atomic::Ordering;
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let kate = PythonParticipant::spawn(
        &server,
        "handles-room",
        "kate",
        &["--tone-hz", "440", "--video", "320x240"],
    )
    .unwrap();
    let engine = Engine::get().unwrap();
    let jwt = token::room_token(
        &server.api_key,
        &server.api_secret,
        "handles-room",
        "probe",
        "probe",
    )
    .unwrap();
    let (room, mut events) = Room::connect(&server.ws_url(), &jwt, ConnectOptions::default())
        .await
        .unwrap();
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
    // Room tasks release what they hold as they wind down.
    for _ in 0..50 {
        if engine.live_handles() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(engine.live_handles(), 0, "every owned handle is released");
    assert_eq!(
        engine.stats.handles_drop_failed.load(Ordering::Relaxed),
        0,
        "no handle may be released twice"
    );
    assert!(
        engine.stats.handles_dropped.load(Ordering::Relaxed) > 50,
        "frame buffers are released"
    );
    kate.stop().await;
}
