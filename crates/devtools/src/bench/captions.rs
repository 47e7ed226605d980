//! Live caption figures in a real room: end of speech -> final caption at a listener, speech
//! onset -> first interim, streaming WER against offline whisper on the whole clip (same
//! model), and what recognition cost per second of speech, speculation's waste included.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

use super::alignment::{FinalSeen, final_latencies, speech_regions, utterance_onsets};
use super::{percentile, row};
use crate::{LocalLiveKitServer, PythonParticipant};
use meeting_agent::audio::wav::read_i16;
use meeting_agent::captions::WhisperModel;
use meeting_agent::captions::wer::word_error_rate;
use meeting_agent::config::Config;
use meeting_agent::features::FeatureSet;
use meeting_agent::features::captions::Captioning;
use meeting_agent::livekit::engine::monotonic_us;
use meeting_agent::livekit::{Engine, RoomEvent, TrackKind};

/// An agent that only captions (the default model, `threads` for whisper), and its recognizer.
pub(crate) fn captioning_session(
    threads: usize,
) -> Result<(
    meeting_agent::session::MeetingSession,
    std::sync::Arc<meeting_agent::captions::Recognizer>,
)> {
    let mut config = Config::default();
    config.captions.threads = threads;
    let captioning =
        Captioning::from_config(&config)?.context("captions are enabled by default")?;
    let recognizer = captioning.recognizer.clone();
    let session = FeatureSet::new(config.audio)
        .with_captioning(Some(captioning))
        .session();
    Ok((session, recognizer))
}

/// `fixture`: `wer-set` (twenty sentences, four voices), `captions` (six) or `real-speech`
/// (human speakers). With `load_room`, the agent is the whole product (captions, noise
/// suppression, recording of every room, virtual backgrounds: `Services`), and it also
/// captions and records a second room of four speaking, camera-on participants, one of them
/// with a blurred background (the machine busy as in a real deployment).
pub async fn caption_latency(fixture: &str, load_room: bool, threads: usize) -> Result<()> {
    Engine::start(&meeting_agent::paths::engine_library())?;
    let dir = crate::fixtures::dir_for(fixture)?;
    let expected = std::fs::read_to_string(dir.join(format!("{fixture}.txt")))
        .with_context(|| format!("no fixture {fixture}"))?;
    let sentences = expected.lines().count();
    let mut load = None;
    let (server, session, recognizer, scratch) = if load_room {
        let (server, mut config, scratch) = super::load::recording_agent_setup("captions").await?;
        config.captions.threads = threads;
        let services = meeting_agent::services::Services::build(&config).await?;
        anyhow::ensure!(
            services.backgrounds.is_some(),
            "virtual backgrounds did not start"
        );
        let recognizer = services
            .captioning
            .as_ref()
            .context("captions are enabled by default")?
            .recognizer
            .clone();
        let session = services.session();
        let stop = super::meeting::join_with(&server, "bench-load", "agent-load", session.clone())?;
        let speech = dir.join("wer-set.wav");
        let people =
            super::load::speaking_room_with_backgrounds(&server, "bench-load", &speech, 1)?;
        load = Some((stop, people));
        (server, session, recognizer, Some(scratch))
    } else {
        let server = LocalLiveKitServer::start().await?;
        let (session, recognizer) = captioning_session(threads)?;
        (server, session, recognizer, None)
    };
    if load.is_some() {
        tokio::time::sleep(Duration::from_secs(5)).await;
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
    // Segment id -> where its audio ended in the agent's stream (legacy packets).
    let mut segment_ends = std::collections::HashMap::new();
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
                RoomEvent::TranscriptionReceived { segments, .. } => {
                    for s in segments.into_iter().filter(|s| s.r#final) {
                        segment_ends.insert(s.id, s.end_time as i64);
                    }
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
    if let Some(scratch) = scratch {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let regions = speech_regions(&levels, -45.0, 150);
    let finals: Vec<_> = captions
        .iter()
        .filter(|c| c.1 && !c.3.trim().is_empty())
        .collect();
    anyhow::ensure!(!finals.is_empty(), "no final captions arrived");
    let seen: Vec<FinalSeen> = finals
        .iter()
        .filter_map(|f| {
            let &end_ms = segment_ends.get(&f.2)?;
            Some(FinalSeen {
                arrival_us: f.0,
                end_ms,
            })
        })
        .collect();
    anyhow::ensure!(
        seen.len() == finals.len(),
        "{} of {} finals came without a transcription segment",
        finals.len() - seen.len(),
        finals.len()
    );
    let ends: Vec<i64> = regions.iter().map(|r| r.1).collect();
    let lined_up = final_latencies(&seen, &ends);
    let onsets = utterance_onsets(
        &regions,
        &lined_up.iter().map(|l| l.map(|l| l.0)).collect::<Vec<_>>(),
    );
    let mut final_latency: Vec<f64> = lined_up.iter().flatten().map(|l| l.1).collect();
    let mut interim_latency = Vec::new();
    for (f, onset) in finals.iter().zip(&onsets) {
        if let (Some(onset), Some(first)) = (onset, captions.iter().find(|c| !c.1 && c.2 == f.2)) {
            interim_latency.push((first.0 - onset) as f64 / 1e6);
        }
    }
    final_latency.sort_by(f64::total_cmp);
    interim_latency.sort_by(f64::total_cmp);
    anyhow::ensure!(
        !final_latency.is_empty(),
        "no final lined up with an end of speech"
    );
    let streaming: Vec<&str> = finals.iter().map(|f| f.3.as_str()).collect();
    let streaming_wer = word_error_rate(&expected, &streaming.join(" "));
    let stats = &recognizer.stats;
    let cpu_ms = stats.cpu_ms.load(Ordering::Relaxed) as f64;
    let wasted_ms = stats.speculative_wasted_cpu_ms.load(Ordering::Relaxed) as f64;
    let speech_s = regions
        .iter()
        .map(|r| (r.1 - r.0) as f64 / 1e6)
        .sum::<f64>();
    let speculative = stats.speculative.load(Ordering::Relaxed);
    let cancelled = stats.speculative_cancelled.load(Ordering::Relaxed);
    drop(recognizer);

    // Offline: whisper on the whole clip, same model, no network.
    let (samples, _, _) = read_i16(&wav)?;
    let model = WhisperModel::load(&Config::default().captions.model, None)?;
    let offline = tokio::task::spawn_blocking(move || {
        model.transcribe_whole(&super::asr::to_16k(&samples), "en", 2)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let offline_wer = word_error_rate(&expected, &offline);
    eprintln!(
        "{} speech regions, {} finals ({} lined up), {} interims; final latency {final_latency:.2?} s; first interim {interim_latency:.2?} s; WER streaming {streaming_wer:.3} vs offline whole clip {offline_wer:.3}",
        regions.len(),
        finals.len(),
        final_latency.len(),
        captions.iter().filter(|c| !c.1).count()
    );
    eprintln!("streaming: {}", streaming.join(" | "));
    eprintln!("offline:   {offline}");
    eprintln!(
        "machine busy {:.0}% of all cores while the speaker spoke; recognition {:.1} CPU s for {speech_s:.1} s of speech; {speculative} speculative finals, {cancelled} dropped before running, {:.1} CPU s wasted",
        busy * 100.0,
        cpu_ms / 1000.0,
        wasted_ms / 1000.0
    );
    let suffix = if load_room { "_loaded" } else { "" };
    let cmd = format!(
        "meeting-agent-dev bench caption-latency --fixture {fixture}{}{}",
        if load_room { " --load-room" } else { "" },
        if threads == 2 {
            String::new()
        } else {
            format!(" --threads {threads}")
        }
    );
    let cmd = cmd.as_str();
    row(
        &format!("caption_final_p50_s{suffix}"),
        percentile(&final_latency, 0.5),
        "s",
        if load_room { "<= 1.2" } else { "<= 0.7" },
        cmd,
    );
    row(
        &format!("caption_final_p95_s{suffix}"),
        percentile(&final_latency, 0.95),
        "s",
        "<= 1.2",
        cmd,
    );
    if !interim_latency.is_empty() {
        row(
            &format!("caption_interim_s{suffix}"),
            percentile(&interim_latency, 0.5),
            "s (median)",
            "<= 0.6",
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
        &format!(
            "streaming WER {:.1} % / offline whole-clip WER {:.1} % ({sentences} lines of {fixture})",
            streaming_wer * 100.0,
            offline_wer * 100.0
        ),
        "<= 1.05",
        cmd,
    );
    // The recognizer serves the load room too: its cost is not this speaker's.
    if !load_room {
        row(
            &format!("caption_cost_cpu_s_per_speech_s{suffix}"),
            cpu_ms / 1000.0 / speech_s,
            "CPU s of recognition (wall x threads, speculation included) / s of speech",
            "<= 0.3",
            cmd,
        );
        row(
            &format!("caption_wasted_inference_pct{suffix}"),
            100.0 * wasted_ms / cpu_ms.max(1.0),
            &format!(
                "% of recognition CPU spent on speculative finals thrown away ({speculative} speculative, {cancelled} dropped before they ran)"
            ),
            "-",
            cmd,
        );
    }
    drop(audio);
    room.disconnect().await?;
    speaker.stop().await;
    Ok(())
}
