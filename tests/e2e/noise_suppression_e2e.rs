//! End to end: a participant (LiveKit's Python SDK) publishes noisy speech and asks for a clean
//! track; the agent publishes `<identity>-clean`; another real participant subscribes to both
//! and finds the clean one's noise floor far lower while the speech is still there.

use std::time::Duration;

use crate::common::*;
use meeting_agent::audio::quality::noise_floor_dbfs;
use meeting_agent::session::SessionReport;
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_clean_track_has_a_much_lower_noise_floor() {
    init();
    let server = LocalLiveKitServer::start().await.unwrap();
    let mut worker = start_worker(config_for(&server, "")).await;
    let wav = std::env::temp_dir().join(format!("noisy-speech-{}.wav", std::process::id()));
    noisy_speech_wav(&wav);
    let speaker = PythonParticipant::spawn(
        &server,
        "ns-room",
        "pat",
        &[
            "--wav",
            wav.to_str().unwrap(),
            "--video",
            "none",
            "--attributes",
            "ns.clean_track=true",
        ],
    )
    .unwrap();
    let published = wait_for(&mut worker.reports, T, |r| matches!(r, SessionReport::CleanTrackPublished { participant, .. } if participant == "pat"))
        .await
        .expect("the agent publishes pat's clean track");
    let SessionReport::CleanTrackPublished { sid: clean_sid, .. } = published else {
        unreachable!()
    };

    let (room, mut events) = join_room(&server, "ns-room", "listener").await;
    let (mut raw, mut clean) = raw_and_clean_streams(&room, &mut events, "pat", &clean_sid).await;
    // Both streams over the same stretch of the looping clip (it has pauses between sentences).
    let (raw_audio, clean_audio) =
        tokio::join!(record_audio(&mut raw, 8.0), record_audio(&mut clean, 8.0));
    let (raw_floor, clean_floor) = (noise_floor_dbfs(&raw_audio), noise_floor_dbfs(&clean_audio));
    let clean_level = level_dbfs(&clean_audio);
    println!(
        "noise floor: raw {raw_floor:.1} dBFS, clean {clean_floor:.1} dBFS; clean level {clean_level:.1} dBFS"
    );
    assert!(
        raw_floor > -45.0,
        "the raw microphone carries the noise: {raw_floor:.1} dBFS"
    );
    assert!(
        clean_floor <= raw_floor - 15.0,
        "noise floor raw {raw_floor:.1} vs clean {clean_floor:.1} dBFS"
    );
    assert!(
        clean_level > -40.0,
        "the speech is still there: {clean_level:.1} dBFS"
    );
    drop((raw, clean));
    room.disconnect().await.unwrap();
    speaker.stop().await;
    std::fs::remove_file(wav).ok();
}
