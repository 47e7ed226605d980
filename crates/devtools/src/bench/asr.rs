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

/// A 48 kHz mono clip at 16 kHz in [-1, 1], as whisper takes it.
pub fn to_16k(samples: &[i16]) -> Vec<f32> {
    let mut resampler = meeting_agent::audio::resample::MonoResampler::new(48_000, 16_000)
        .expect("48 kHz to 16 kHz is supported");
    let mut out = Vec::with_capacity(samples.len() / 3);
    for chunk in samples.chunks(480) {
        resampler.push(chunk, 1, |o| out.extend(o.iter().map(|s| s / 32768.0)));
    }
    out
}

/// Each utterance's final, in order; with `prompt`, the finals before it as whisper's prompt,
/// as the live captions do.
pub async fn finals(
    recognizer: &Recognizer,
    pieces: Vec<Vec<f32>>,
    prompt: bool,
) -> Result<Vec<String>> {
    let mut texts: Vec<String> = Vec::new();
    for audio in pieces {
        let context = texts.join(" ");
        let request = meeting_agent::captions::recognizer::Request {
            prompt: (prompt && !context.is_empty()).then_some(context),
            ..meeting_agent::captions::recognizer::Request::new(audio, Default::default())
        };
        let hypothesis = recognizer
            .final_request("", request)
            .await
            .context("recognizer stopped")?
            .map_err(|e| anyhow::anyhow!(e))?;
        texts.push(hypothesis.text);
    }
    Ok(texts)
}

/// How `bench asr` transcribes each utterance.
pub struct AsrOptions {
    pub threads: usize,
    pub final_window: meeting_agent::config::FinalWindow,
    /// Each utterance gets the finals before it as whisper's prompt, as the live captions do.
    pub prompt: bool,
}

/// `fixture`: `wer-set` (twenty sentences), `captions` (six) or `real-speech` (a human
/// speaker, `fixtures/fetch_real_speech.sh`).
pub async fn asr(model_path: &Path, name: &str, fixture: &str, options: AsrOptions) -> Result<()> {
    let AsrOptions {
        threads,
        final_window,
        prompt,
    } = options;
    let dir = crate::fixtures::dir_for(fixture)?;
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
            final_window,
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let texts = finals(&recognizer, utterances(&samples), prompt).await?;
    let heard = texts.join(" ");
    let wer = word_error_rate(&expected, &heard);
    let busy = recognizer.stats.busy_ms.load(Ordering::Relaxed) as f64;
    let cpu = recognizer.stats.cpu_ms.load(Ordering::Relaxed) as f64;
    let audio = recognizer.stats.audio_ms.load(Ordering::Relaxed) as f64;
    eprintln!(
        "{} utterances, {:.1} s of speech in {:.1} s ({:.1} CPU s), WER {wer:.3}: {heard}",
        texts.len(),
        audio / 1000.0,
        busy / 1000.0,
        cpu / 1000.0
    );
    drop(recognizer);
    // Offline whisper on the whole clip, same model: the reference streaming is held to.
    let whole = WhisperModel::load(model_path, None)?
        .transcribe_whole(&to_16k(&samples), "en", threads)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let whole_wer = word_error_rate(&expected, &whole);
    eprintln!("whole clip offline: WER {whole_wer:.3}: {whole}");
    let window = match final_window {
        meeting_agent::config::FinalWindow::Full => "full",
        meeting_agent::config::FinalWindow::Fitted => "fitted",
    };
    let cmd = format!(
        "meeting-agent-dev bench asr --model {} --threads {threads} --fixture {fixture} --final-window {window}{}",
        model_path.display(),
        if prompt { " --prompt" } else { "" }
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
    row(
        &format!("asr_wer_ratio_{name}"),
        if whole_wer == 0.0 {
            wer / 0.01
        } else {
            wer / whole_wer
        },
        "utterance by utterance WER / offline whole-clip WER",
        "<= 1.05",
        &cmd,
    );
    row(
        &format!("asr_cost_{name}"),
        cpu / audio,
        "CPU s (wall x threads) / speech s",
        "-",
        &cmd,
    );
    Ok(())
}
