// Own binary (not e2e): asserts the process-wide engine counter handles_drop_failed.
//! This project's engine as a publisher: audio and video tracks, data packets, `lk.transcription`
//! text streams and legacy transcriptions, received by LiveKit's Python SDK and by a second
//! connection of the engine.

#[path = "e2e/common.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use meeting_agent::livekit::proto::TranscriptionSegment;
use meeting_agent::livekit::{RoomEvent, TrackKind, TrackSource};
use meeting_agent::media::analysis::ToneMeter;
use meeting_agent::media::{AudioFrame, VideoFrame};
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};

const T: Duration = Duration::from_secs(30);

fn sine_frame(freq: f64, rate: u32, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            ((2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() * 12_000.0) as i16
        })
        .collect()
}

/// A gradient with a bright column that moves with `n`.
fn pattern(width: u32, height: u32, n: u32) -> VideoFrame {
    let mut frame = VideoFrame::from_i420(
        width,
        height,
        vec![128; VideoFrame::i420_len(width, height)],
        0,
    )
    .unwrap();
    let (y, _, _) = frame.planes_mut();
    for row in 0..height {
        for col in 0..width {
            y[(row * width + col) as usize] = if (col + width - (n * 8) % width) % width < 16 {
                235
            } else {
                (16 + col * 100 / width) as u8
            };
        }
    }
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_publishes_media_data_text_and_transcriptions() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut listener = PythonParticipant::spawn(
        &server,
        "pub-room",
        "listener",
        &["--tone-hz", "0", "--video", "none"],
    )
    .unwrap();
    listener
        .wait_for(T, |e| e["event"] == "connected")
        .await
        .expect("python listener joins");

    let (speaker, _speaker_events) = join_room(&server, "pub-room", "speaker").await;
    let (observer, mut observer_events) = join_room(&server, "pub-room", "observer").await;
    let audio = speaker
        .publish_audio("tone", TrackSource::SourceMicrophone, 48_000, 1)
        .await
        .unwrap();
    let video = speaker
        .publish_video("pattern", TrackSource::SourceCamera, 320, 240)
        .await
        .unwrap();
    assert!(audio.sid.starts_with("TR_") && video.sid.starts_with("TR_"));
    let audio_sid = audio.sid.clone();

    // Feed 1 kHz in real time and the moving pattern at 15 fps in the background.
    let feeder = tokio::spawn(async move {
        let mut n = 0usize;
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            audio
                .capture(sine_frame(1000.0, 48_000, n * 480, 480))
                .await
                .unwrap();
            if n.is_multiple_of(7) {
                let mut frame = pattern(320, 240, (n / 7) as u32);
                frame.timestamp_us = started.elapsed().as_micros() as i64;
                video.capture(&frame).unwrap();
            }
            n += 1;
        }
        (audio, video)
    });

    // The observer (a second connection of the engine) hears 1 kHz and sees 320x240 frames that change.
    let (mut audio_in, mut video_in) = (None, None);
    while audio_in.is_none() || video_in.is_none() {
        match tokio::time::timeout(T, observer_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::TrackSubscribed(t)
                if t.participant == "speaker" && t.kind == TrackKind::KindAudio =>
            {
                audio_in = Some(observer.audio_stream(&t.sid, 16_000, 1, 10).unwrap())
            }
            RoomEvent::TrackSubscribed(t)
                if t.participant == "speaker" && t.kind == TrackKind::KindVideo =>
            {
                video_in = Some(observer.video_stream(&t.sid, 2).unwrap())
            }
            _ => {}
        }
    }
    let (mut audio_in, mut video_in) = (audio_in.unwrap(), video_in.unwrap());
    let mut meter = ToneMeter::default();
    while meter.seconds() < 1.5 {
        let frame: AudioFrame = tokio::time::timeout(T, audio_in.recv())
            .await
            .unwrap()
            .unwrap();
        meter.push(&frame);
    }
    assert!(
        (meter.frequency_hz() - 1000.0).abs() < 5.0,
        "observer hears {} Hz",
        meter.frequency_hz()
    );
    let first = tokio::time::timeout(T, video_in.recv())
        .await
        .unwrap()
        .unwrap();
    let mut changed = false;
    for _ in 0..10 {
        let next = tokio::time::timeout(T, video_in.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((next.width, next.height), (320, 240));
        changed |= next.planes().0 != first.planes().0;
    }
    assert!(changed, "published video content changes");

    // Data packet: to the Python SDK and back into the engine.
    speaker
        .publish_data(b"hello from rust", Some("agent.test"), true, &[])
        .await
        .unwrap();
    let got = listener
        .wait_for(T, |e| e["event"] == "data_received")
        .await
        .expect("python receives data");
    assert_eq!(
        (
            got["topic"].as_str(),
            got["payload"].as_str(),
            got["identity"].as_str()
        ),
        (Some("agent.test"), Some("hello from rust"), Some("speaker"))
    );

    // Text stream on lk.transcription with the attributes LiveKit's clients read.
    let attributes: HashMap<String, String> = [
        ("lk.transcribed_track_id", audio_sid.clone()),
        ("lk.segment_id", "SG_test1".to_string()),
        ("lk.transcription_final", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    speaker
        .send_text(
            "lk.transcription",
            "the quick brown fox",
            &attributes,
            None,
            None,
        )
        .await
        .unwrap();
    let got = listener
        .wait_for(T, |e| e["event"] == "text_stream")
        .await
        .expect("python receives the text stream");
    assert_eq!(got["topic"], "lk.transcription");
    assert_eq!(got["text"], "the quick brown fox");
    assert_eq!(got["attributes"]["lk.segment_id"], "SG_test1");
    assert_eq!(got["attributes"]["lk.transcription_final"], "true");

    // The engine's receive side: the observer gets the data packet and reads the text stream.
    speaker
        .publish_data(b"ping", Some("agent.test"), true, &[])
        .await
        .unwrap();
    speaker
        .send_text("lk.chat", "hi observer", &HashMap::new(), None, None)
        .await
        .unwrap();
    let (mut data_seen, mut text_seen) = (false, false);
    while !(data_seen && text_seen) {
        match tokio::time::timeout(T, observer_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::DataReceived {
                participant,
                payload,
                topic,
                ..
            } if payload == b"ping" => {
                assert_eq!(
                    (participant.as_str(), topic.as_deref()),
                    ("speaker", Some("agent.test"))
                );
                data_seen = true;
            }
            RoomEvent::TextStream(reader) if reader.topic == "lk.chat" => {
                assert_eq!(reader.participant, "speaker");
                assert_eq!(reader.read_all().await.unwrap(), "hi observer");
                text_seen = true;
            }
            _ => {}
        }
    }

    // Legacy transcription packet, attributed to the speaker's audio track.
    let segment = TranscriptionSegment {
        id: "SG_legacy".into(),
        text: "legacy caption".into(),
        start_time: 0,
        end_time: 1000,
        r#final: true,
        language: "en".into(),
    };
    speaker
        .publish_transcription("speaker", &audio_sid, vec![segment])
        .await
        .unwrap();
    let got = listener
        .wait_for(T, |e| e["event"] == "transcription")
        .await
        .expect("python receives the transcription");
    assert_eq!(got["segments"][0]["text"], "legacy caption");
    assert_eq!(got["identity"], "speaker");

    let (_audio, _video) = feeder.await.unwrap();
    drop((audio_in, video_in));
    speaker.disconnect().await.unwrap();
    observer.disconnect().await.unwrap();
    let engine = meeting_agent::livekit::Engine::get().unwrap();
    assert_eq!(
        engine
            .stats
            .handles_drop_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no handle released twice (read text streams consume theirs)"
    );
    listener.stop().await;
}
