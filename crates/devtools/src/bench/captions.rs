//! Live caption figures in a real room: end of speech -> final caption at a listener, speech
//! onset -> first interim, and streaming WER against offline WER on the same audio and model.

use std::time::Duration;

use anyhow::{Context, Result};

use super::row;
use crate::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::audio::wav::read_i16;
use meeting_agent::captions::recognizer::RecognizerOptions;
use meeting_agent::captions::wer::word_error_rate;
use meeting_agent::captions::{Recognizer, WhisperModel};
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::features::captions::Captioning;
use meeting_agent::livekit::engine::monotonic_us;
use meeting_agent::livekit::{Engine, RoomEvent, TrackKind};

/// Speech regions (start, end) in a received stream, from 10 ms frame levels: a region ends after
/// 300 ms below -45 dBFS.
fn speech_regions(frames: &[(i64, f64)]) -> Vec<(i64, i64)> {
    let mut regions = Vec::new();
    let mut current: Option<(i64, i64)> = None;
    for &(t, dbfs) in frames {
        let loud = dbfs > -45.0;
        current = match (current, loud) {
            (None, true) => Some((t, t + 10_000)),
            (Some((s, _)), true) => Some((s, t + 10_000)),
            (Some((s, e)), false) if t - e > 300_000 => {
                regions.push((s, e));
                None
            }
            (c, _) => c,
        };
    }
    regions.extend(current);
    regions
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// `fixture`: `wer-set` (twenty sentences, four voices) or `captions` (six). With
/// `load_room`, the same agent also captions and records a second room of four speaking,
/// camera-on participants meanwhile (the machine busy as in a real deployment).
pub async fn caption_latency(fixture: &str, load_room: bool) -> Result<()> {
    Engine::start(&meeting_agent::paths::engine_library())?;
    let dir = crate::fixtures::dir()?;
    let expected = std::fs::read_to_string(dir.join(format!("{fixture}.txt")))
        .with_context(|| format!("no fixture {fixture}"))?;
    let sentences = expected.lines().count();
    let server = LocalLiveKitServer::start().await?;
    let config = Config::default();

    // The agent, captioning with the default model.
    let captioning =
        Captioning::from_config(&config)?.context("captions are enabled by default")?;
    let features = FeatureSet::new(config.audio).with_captioning(Some(captioning));
    let session = features.session();
    let mut load = None;
    let scratch = std::env::temp_dir().join(format!("ma-bench-captions-{}", std::process::id()));
    if load_room {
        let mut recording = config.recording.clone();
        recording.dir = scratch.join("recordings");
        recording.auto = true;
        let mut with_dir = config.clone();
        with_dir.recording = recording;
        with_dir.data_dir = scratch.clone();
        let loaded = features
            .clone()
            .with_recorder(meeting_agent::features::recording::Recorder::from_config(
                &with_dir,
            )?)
            .session();
        let stop = super::meeting::join_with(&server, "bench-load", "agent-load", loaded)?;
        let speech = dir.join("wer-set.wav");
        let people = super::load::speaking_room(&server, "bench-load", &speech)?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        load = Some((stop, people));
    }
    let cpu_before = meeting_agent::captions::threads::read_cpu_times();
    let _stop = super::meeting::join_with(&server, "bench-captions", "agent-bench", session)?;
    // The listener: hears the speaker and reads what the agent publishes.
    let (room, mut events) = super::meeting::listen(&server, "bench-captions").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wav = dir.join(format!("{fixture}.wav"));
    let mut speaker = PythonParticipant::spawn(
        &server,
        "bench-captions",
        "sam",
        &[
            "--wav",
            wav.to_str().unwrap_or_default(),
            "--once",
            "--video",
            "none",
        ],
    )?;

    let mut audio: Option<meeting_agent::livekit::AudioStream> = None;
    let mut levels = Vec::new();
    let mut captions: Vec<(i64, bool, String, String)> = Vec::new(); // (arrival, final, segment, text)
    let mut finished_at = None;
    loop {
        if finished_at.is_some_and(|t: tokio::time::Instant| t.elapsed() > Duration::from_secs(6)) {
            break;
        }
        tokio::select! {
            event = events.recv() => match event.context("room closed")? {
                RoomEvent::TrackSubscribed(t) if t.kind == TrackKind::KindAudio && t.participant == "sam" => audio = Some(room.audio_stream(&t.sid, 48_000, 1, 10)?),
                RoomEvent::TextStream(reader) if reader.topic == "lk.transcription" => {
                    let arrival = monotonic_us();
                    let is_final = reader.attributes.get("lk.transcription_final").is_some_and(|v| v == "true");
                    let segment = reader.attributes.get("lk.segment_id").cloned().unwrap_or_default();
                    captions.push((arrival, is_final, segment, reader.read_all().await?));
                }
                _ => {}
            },
            frame = async { audio.as_mut().expect("guarded").recv().await }, if audio.is_some() => {
                let frame = frame.context("audio ended")?;
                let energy = frame.samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / frame.samples.len().max(1) as f64;
                levels.push((frame.timestamp_us, 10.0 * energy.max(1e-12).log10()));
            }
            done = speaker.wait_for(Duration::from_millis(50), |e| e["event"] == "wav_finished"), if finished_at.is_none() => {
                if done.is_some() {
                    finished_at = Some(tokio::time::Instant::now());
                }
            }
        }
    }
    let busy = match (
        cpu_before,
        meeting_agent::captions::threads::read_cpu_times(),
    ) {
        (Some(a), Some(b)) => b.busy_since(&a),
        _ => f64::NAN,
    };
    if let Some((_stop, people)) = load.take() {
        for p in people {
            p.stop().await;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let regions = speech_regions(&levels);
    let finals: Vec<_> = captions.iter().filter(|c| c.1).collect();
    anyhow::ensure!(!finals.is_empty(), "no final captions arrived");
    let mut final_latency = Vec::new();
    let mut interim_latency = Vec::new();
    // Each speech region's final is the first one to arrive after it ended (a region whisper
    // split in two still counts once, at its last part).
    let mut next_final = 0;
    for &(start, end) in &regions {
        while finals.get(next_final).is_some_and(|f| f.0 < end) {
            next_final += 1;
        }
        let Some(f) = finals.get(next_final) else {
            break;
        };
        next_final += 1;
        final_latency.push((f.0 - end) as f64 / 1e6);
        if let Some(first) = captions.iter().find(|c| !c.1 && c.2 == f.2) {
            interim_latency.push((first.0 - start) as f64 / 1e6);
        }
    }
    final_latency.sort_by(f64::total_cmp);
    interim_latency.sort_by(f64::total_cmp);
    let streaming: Vec<&str> = finals.iter().map(|f| f.3.as_str()).collect();
    let streaming_wer = word_error_rate(&expected, &streaming.join(" "));

    // Offline: the same fixture and model, no network.
    let (samples, _, _) = read_i16(&wav)?;
    let model = WhisperModel::load(&Config::default().captions.model, None)?;
    let recognizer = Recognizer::start(
        model,
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: 2,
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut offline = Vec::new();
    for utterance in super::asr::utterances(&samples) {
        offline.push(
            recognizer
                .final_(utterance)
                .await?
                .map_err(|e| anyhow::anyhow!(e))?
                .text,
        );
    }
    let offline_wer = word_error_rate(&expected, &offline.join(" "));
    eprintln!(
        "{} speech regions, {} finals, {} interims; final latency {final_latency:.2?} s; first interim {interim_latency:.2?} s; WER streaming {streaming_wer:.3} vs offline {offline_wer:.3}",
        regions.len(),
        finals.len(),
        captions.len() - finals.len()
    );
    eprintln!(
        "machine busy {:.0}% of all cores while the speaker spoke",
        busy * 100.0
    );
    let suffix = if load_room { "_loaded" } else { "" };
    let cmd = format!(
        "meeting-agent-dev bench caption-latency --fixture {fixture}{}",
        if load_room { " --load-room" } else { "" }
    );
    let cmd = cmd.as_str();
    row(
        &format!("caption_final_p50_s{suffix}"),
        percentile(&final_latency, 0.5),
        "s",
        "<= 1.0",
        cmd,
    );
    row(
        &format!("caption_final_p95_s{suffix}"),
        percentile(&final_latency, 0.95),
        "s",
        "<= 2.0",
        cmd,
    );
    if !interim_latency.is_empty() {
        row(
            &format!("caption_interim_s{suffix}"),
            percentile(&interim_latency, 0.5),
            "s (median)",
            "<= 1.0",
            cmd,
        );
    }
    let ratio = if offline_wer == 0.0 {
        if streaming_wer == 0.0 {
            1.0
        } else {
            f64::INFINITY
        }
    } else {
        streaming_wer / offline_wer
    };
    row(
        &format!("caption_wer_ratio{suffix}"),
        ratio,
        &format!("streaming WER / offline WER ({sentences} utterances)"),
        "<= 1.15",
        cmd,
    );
    drop(audio);
    room.disconnect().await?;
    speaker.stop().await;
    Ok(())
}
