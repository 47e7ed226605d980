//! Speech recognition figures offline on the caption fixture: real-time factor (processing
//! time / audio time) and word error rate, through the same denoiser, segmenter and recognizer
//! the live pipeline uses.

use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use super::row;
use meeting_agent::audio::Denoiser;
use meeting_agent::audio::wav::read_i16;
use meeting_agent::captions::recognizer::RecognizerOptions;
use meeting_agent::captions::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use meeting_agent::captions::wer::word_error_rate;
use meeting_agent::captions::{Recognizer, WhisperModel};
use meeting_agent::media::AudioFrame;

/// Utterances of a 48 kHz mono clip, as the live pipeline would cut them (denoised audio).
pub fn utterances(samples: &[i16]) -> Vec<Vec<f32>> {
    utterances_from(samples, true)
}

/// Utterances as the live pipeline cuts them; `denoised` chooses what whisper hears, as the
/// `ns.enabled` switch does (the voice probability always comes from RNNoise).
pub fn utterances_from(samples: &[i16], denoised: bool) -> Vec<Vec<f32>> {
    let mut denoiser = Denoiser::new(true);
    let mut segmenter = Segmenter::new(SegmenterConfig {
        interim_every_ms: u32::MAX,
        ..Default::default()
    });
    let mut out = Vec::new();
    for chunk in samples.chunks(480) {
        let frame = AudioFrame {
            samples: chunk.to_vec(),
            sample_rate: 48_000,
            channels: 1,
            timestamp_us: 0,
        };
        let raw: Vec<f32> = frame.samples.iter().map(|&s| s as f32).collect();
        let _ = denoiser.process(&frame, |clean, p| {
            let heard = if denoised { &clean[..] } else { &raw[..] };
            if let Some(SegmentEvent::Final { audio, .. }) = segmenter.push(heard, p) {
                out.push(audio);
            }
        });
    }
    if let Some(SegmentEvent::Final { audio, .. }) = segmenter.finish() {
        out.push(audio);
    }
    out
}

/// `fixture`: `wer-set` (twenty sentences) or `captions` (six).
pub async fn asr(model_path: &Path, name: &str, threads: usize, fixture: &str) -> Result<()> {
    let dir = crate::fixtures::dir()?;
    let (samples, rate, channels) = read_i16(&dir.join(format!("{fixture}.wav")))?;
    anyhow::ensure!(
        rate == 48_000 && channels == 1,
        "{fixture}.wav must be 48 kHz mono"
    );
    let expected = std::fs::read_to_string(dir.join(format!("{fixture}.txt")))?;

    let model = WhisperModel::load(model_path, None)?;
    let recognizer = Recognizer::start(
        model,
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads,
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let pieces = utterances(&samples);
    let mut texts = Vec::new();
    for audio in pieces {
        let hypothesis = recognizer
            .final_(audio)
            .await
            .context("recognizer stopped")?
            .map_err(|e| anyhow::anyhow!(e))?;
        texts.push(hypothesis.text);
    }
    let heard = texts.join(" ");
    let wer = word_error_rate(&expected, &heard);
    let busy = recognizer.stats.busy_ms.load(Ordering::Relaxed) as f64;
    let audio = recognizer.stats.audio_ms.load(Ordering::Relaxed) as f64;
    eprintln!(
        "{} utterances, {:.1} s of speech in {:.1} s, WER {wer:.3}: {heard}",
        texts.len(),
        audio / 1000.0,
        busy / 1000.0
    );
    let cmd = format!(
        "meeting-agent-dev bench asr --model {} --threads {threads} --fixture {fixture}",
        model_path.display()
    );
    row(
        &format!("asr_rtf_{name}"),
        busy / audio,
        "processing s / audio s",
        "-",
        &cmd,
    );
    row(
        &format!("asr_wer_{name}"),
        wer * 100.0,
        &format!("% WER, {} utterances", expected.lines().count()),
        "-",
        &cmd,
    );
    Ok(())
}
