//! caption_speakers_realtime: how many people can speak at once, each captioned live, before
//! the process falls behind. Every speaker runs the microphone's caption path (RNNoise ->
//! segmenter -> the process's one recognizer -> stabiliser and filter -> publisher), fed from the
//! twenty-sentence fixture at real-time pace in 10 ms frames, speakers starting staggered. A
//! count keeps up when every sentence gets its final caption and the p95 delay from the end of
//! speech to the final stays within 3 s (one speaker alone: about 2 s, see BENCHMARKS.md), so
//! finals wait at most about a second behind other speakers' and do not pile up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::row;
use super::vad::speech_labels;
use meeting_agent::audio::Denoiser;
use meeting_agent::audio::denoise::FRAME;
use meeting_agent::captions::publisher::{Caption, CaptionPublisher};
use meeting_agent::captions::recognizer::RecognizerOptions;
use meeting_agent::captions::segmenter::SegmenterConfig;
use meeting_agent::captions::speaker::{CaptionContext, SpeakerCaptions};
use meeting_agent::captions::{Recognizer, WhisperModel};
use meeting_agent::config::Config;
use meeting_agent::media::AudioFrame;

const STAGGER: Duration = Duration::from_millis(1300);
const P95_LIMIT_S: f64 = 3.0;
/// Interims at least every 4 s per speaker, for the stricter figure.
const MIN_INTERIMS_PER_S: f64 = 0.25;

/// Ends of the sentences (ms from the start) in clean speech: speech followed by >= 700 ms of
/// non-speech.
fn sentence_ends(clean: &[f32]) -> Vec<u64> {
    let labels = speech_labels(clean);
    let mut ends = Vec::new();
    let mut last_speech = None;
    for (i, &speech) in labels.iter().enumerate() {
        if speech {
            last_speech = Some(i);
        } else if let Some(s) = last_speech
            && i - s >= 70
        {
            ends.push(s as u64 * 10 + 10);
            last_speech = None;
        }
    }
    ends.extend(last_speech.map(|s| s as u64 * 10 + 10));
    ends
}

/// One speaker: the fixture at real-time pace through the caption path.
async fn speak(ctx: CaptionContext, identity: String, samples: std::sync::Arc<Vec<i16>>) {
    let mut captions = SpeakerCaptions::new(
        ctx,
        &identity,
        &format!("TR_{identity}"),
        0,
        Default::default(),
    );
    let mut denoiser = Denoiser::new(true);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut frames = samples.chunks_exact(FRAME);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Some(chunk) = frames.next() else { break };
                let frame = AudioFrame { samples: chunk.to_vec(), sample_rate: 48_000, channels: 1, timestamp_us: 0 };
                let _ = denoiser.process(&frame, |clean, p| captions.push(clean, p));
            }
            ready = captions.next_result(), if captions.awaits_result() => {
                captions.on_result(ready);
            }
        }
    }
    captions.finish();
}

struct Round {
    finals: usize,
    expected: usize,
    p50: f64,
    p95: f64,
    interims_per_speaker_s: f64,
    superseded: u64,
    finals_fitted: u64,
    /// Share of the round's wall time the recognizer was busy.
    whisper_busy: f64,
}

async fn round(
    recognizer: &std::sync::Arc<Recognizer>,
    segmenter: &SegmenterConfig,
    samples: &std::sync::Arc<Vec<i16>>,
    ends: &[u64],
    speakers: usize,
) -> Result<Round> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Caption>();
    let ctx = CaptionContext {
        recognizer: recognizer.clone(),
        publisher: CaptionPublisher::Channel(tx),
        journal: None,
        segmenter: segmenter.clone(),
        finals: None,
    };
    let superseded_before = recognizer.stats.interims_superseded.load(Ordering::Relaxed);
    let busy_before = recognizer.stats.busy_ms.load(Ordering::Relaxed);
    let fitted_before = recognizer.stats.finals_fitted.load(Ordering::Relaxed);
    let began = Instant::now();
    let mut starts = HashMap::new();
    let mut tasks = Vec::new();
    for i in 0..speakers {
        let identity = format!("speaker-{i}");
        let start = Instant::now() + STAGGER * i as u32;
        starts.insert(identity.clone(), start);
        let (ctx, samples) = (ctx.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            speak(ctx, identity, samples).await
        }));
    }
    drop(ctx);
    let mut latencies = Vec::new();
    let mut interims = 0usize;
    let audio_s = samples.len() as f64 / 48_000.0;
    let deadline =
        Instant::now() + STAGGER * speakers as u32 + Duration::from_secs_f64(audio_s + 15.0);
    // The channel closes when every speaker and every final in flight is done.
    while let Ok(Some(caption)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if !caption.is_final {
            interims += 1;
            continue;
        }
        if caption.text.is_empty() {
            continue;
        }
        let start = starts[&caption.participant];
        // The sentence this final closes: the last that ended before the utterance did.
        let Some(&end) = ends.iter().rev().find(|&&e| e <= caption.end_ms + 100) else {
            continue;
        };
        latencies.push((Instant::now() - (start + Duration::from_millis(end))).as_secs_f64());
    }
    for task in tasks {
        task.await.context("speaker task")?;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::INFINITY)
    };
    Ok(Round {
        finals: latencies.len(),
        expected: ends.len() * speakers,
        p50: pct(0.5),
        p95: pct(0.95),
        interims_per_speaker_s: interims as f64 / (audio_s * speakers as f64),
        superseded: recognizer.stats.interims_superseded.load(Ordering::Relaxed)
            - superseded_before,
        finals_fitted: recognizer.stats.finals_fitted.load(Ordering::Relaxed) - fitted_before,
        whisper_busy: (recognizer.stats.busy_ms.load(Ordering::Relaxed) - busy_before) as f64
            / began.elapsed().as_millis().max(1) as f64,
    })
}

pub async fn speakers_realtime(max: usize, seconds: f64) -> Result<()> {
    let config = Config::default();
    let dir = crate::fixtures::dir()?;
    let (mut samples, _, _) = meeting_agent::audio::wav::read_i16(&dir.join("wer-set.wav"))?;
    samples.truncate((seconds * 48_000.0) as usize);
    let clean: Vec<f32> = samples.iter().map(|&s| s as f32).collect();
    let ends = sentence_ends(&clean);
    let samples = std::sync::Arc::new(samples);
    let model = WhisperModel::load(&config.captions.model, config.captions.expected_sha256())?;
    let recognizer = Recognizer::start(
        model,
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: config.captions.threads,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let segmenter = SegmenterConfig {
        interim_every_ms: config.captions.interim_ms,
        ..Default::default()
    };
    println!(
        "{} sentences in {seconds:.0} s of speech per speaker; speakers start {} ms apart",
        ends.len(),
        STAGGER.as_millis()
    );
    let (mut keeps_up, mut with_interims) = (0, 0);
    for speakers in 1..=max {
        let r = round(&recognizer, &segmenter, &samples, &ends, speakers).await?;
        let ok = r.finals >= r.expected && r.p95 <= P95_LIMIT_S;
        println!(
            "{speakers} speakers: {}/{} finals, end of speech -> final p50 {:.2} s p95 {:.2} s, {:.2} interims per speaker-second, {} interims superseded, {} finals fitted, whisper busy {:.0}%: {}",
            r.finals,
            r.expected,
            r.p50,
            r.p95,
            r.interims_per_speaker_s,
            r.superseded,
            r.finals_fitted,
            r.whisper_busy * 100.0,
            if ok { "keeps up" } else { "falls behind" }
        );
        if !ok {
            break;
        }
        keeps_up = speakers;
        if r.interims_per_speaker_s >= MIN_INTERIMS_PER_S && with_interims == speakers - 1 {
            with_interims = speakers;
        }
    }
    row(
        "caption_speakers_realtime",
        keeps_up as f64,
        &format!("speakers at once (every final, p95 <= {P95_LIMIT_S} s)"),
        ">= 3",
        &format!("meeting-agent-dev bench caption-speakers --max {max}"),
    );
    row(
        "caption_speakers_with_interims",
        with_interims as f64,
        &format!("speakers at once, also >= {MIN_INTERIMS_PER_S} interims/s each"),
        "-",
        &format!("meeting-agent-dev bench caption-speakers --max {max}"),
    );
    Ok(())
}
