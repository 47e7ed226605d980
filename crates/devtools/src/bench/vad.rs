//! vad_*: the voice activity detectors the caption pipeline could use, on the same audio: the
//! twenty-sentence fixture, clean and with white, pink and babble noise at 5 dB SNR. A 10 ms
//! frame is speech when the clean reference is within 35 dB of its loudest frames; a detector
//! says speech at probability >= 0.5. Cost is thread CPU time per 10 ms frame, one thread.

use std::path::Path;

use anyhow::{Context, Result};

use super::{row, thread_cpu_seconds};
use crate::fixtures::load_f32;
use meeting_agent::audio::denoise::FRAME;
use meeting_agent::audio::quality::mix_at_snr;
use meeting_agent::audio::vad::{RnnoiseVad, SileroVad, VoiceDetector, WebRtcVad};

type MakeDetector<'a> = Box<dyn Fn() -> Result<Box<dyn VoiceDetector>> + 'a>;

/// Frame-level agreement with the labels.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scores {
    pub accuracy: f64,
    /// Speech frames detected as speech.
    pub recall: f64,
    /// Non-speech frames detected as speech.
    pub false_alarms: f64,
}

/// Labels per 10 ms frame of the clean speech.
pub fn speech_labels(clean: &[f32]) -> Vec<bool> {
    let energy: Vec<f64> = clean
        .chunks_exact(FRAME)
        .map(|f| f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>())
        .collect();
    let mut sorted = energy.clone();
    sorted.sort_by(f64::total_cmp);
    // The 95th percentile stands for "loudest" without letting one click set the scale.
    let loud = sorted[sorted.len() * 95 / 100];
    energy
        .iter()
        .map(|&e| e > loud * 10f64.powf(-3.5))
        .collect()
}

pub fn score(labels: &[bool], probabilities: &[f32]) -> Scores {
    let (mut tp, mut fp, mut tn, mut fn_) = (0f64, 0f64, 0f64, 0f64);
    for (&speech, &p) in labels.iter().zip(probabilities) {
        match (speech, p >= 0.5) {
            (true, true) => tp += 1.0,
            (true, false) => fn_ += 1.0,
            (false, true) => fp += 1.0,
            (false, false) => tn += 1.0,
        }
    }
    Scores {
        accuracy: (tp + tn) / (tp + tn + fp + fn_).max(1.0),
        recall: tp / (tp + fn_).max(1.0),
        false_alarms: fp / (fp + tn).max(1.0),
    }
}

/// Runs `detector` over `audio` (48 kHz mono, i16 scale): per-frame probabilities and CPU
/// seconds spent.
pub fn run(detector: &mut dyn VoiceDetector, audio: &[f32]) -> Result<(Vec<f32>, f64)> {
    let mut probabilities = Vec::with_capacity(audio.len() / FRAME);
    let started = thread_cpu_seconds();
    for chunk in audio.chunks_exact(FRAME) {
        let frame: &[f32; FRAME] = chunk.try_into().expect("chunks_exact");
        probabilities.push(detector.frame(frame)?);
    }
    Ok((probabilities, thread_cpu_seconds() - started))
}

pub fn compare(onnxruntime: &Path, silero_model: &Path) -> Result<()> {
    let clean = load_f32("wer-set.wav")?;
    let labels = speech_labels(&clean);
    let noisy = |name: &str| -> Result<Vec<f32>> {
        let noise: Vec<f32> = load_f32(name)?
            .into_iter()
            .cycle()
            .take(clean.len())
            .collect();
        Ok(mix_at_snr(&clean, &noise, 5.0))
    };
    let conditions = [
        ("clean", clean.clone()),
        ("white 5 dB", noisy("noise-white.wav")?),
        ("pink 5 dB", noisy("noise-pink.wav")?),
        ("babble 5 dB", noisy("noise-babble.wav")?),
    ];
    let environment = meeting_agent::onnx::environment(onnxruntime)?;
    let make: [(&str, MakeDetector); 3] = [
        ("rnnoise", Box::new(|| Ok(Box::new(RnnoiseVad::default())))),
        ("webrtc", Box::new(|| Ok(Box::new(WebRtcVad::new(3))))),
        (
            "silero",
            Box::new(|| {
                Ok(Box::new(
                    SileroVad::new(&environment, silero_model).context("loading Silero")?,
                ))
            }),
        ),
    ];
    let speech_share = labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64;
    println!(
        "{} frames of 10 ms, {:.0}% speech by the clean reference",
        labels.len(),
        speech_share * 100.0
    );
    let command = "meeting-agent-dev bench vad";
    for (name, make) in &make {
        let (mut sum, mut cpu, mut frames) = (Scores::default(), 0.0, 0usize);
        for (condition, audio) in &conditions {
            let mut detector = make()?;
            let (probabilities, seconds) = run(detector.as_mut(), audio)?;
            let s = score(&labels, &probabilities);
            println!(
                "{name:8} {condition:12} accuracy {:.3}  recall {:.3}  false alarms {:.3}",
                s.accuracy, s.recall, s.false_alarms
            );
            sum.accuracy += s.accuracy / conditions.len() as f64;
            sum.recall += s.recall / conditions.len() as f64;
            sum.false_alarms += s.false_alarms / conditions.len() as f64;
            cpu += seconds;
            frames += probabilities.len();
        }
        let us = cpu / frames as f64 * 1e6;
        row(
            &format!("vad_{name}_accuracy"),
            sum.accuracy,
            "frame accuracy (mean of 4)",
            "-",
            command,
        );
        row(
            &format!("vad_{name}_recall"),
            sum.recall,
            "speech frames found",
            "-",
            command,
        );
        row(
            &format!("vad_{name}_false_alarms"),
            sum.false_alarms,
            "non-speech frames flagged",
            "-",
            command,
        );
        row(
            &format!("vad_{name}_us_per_frame"),
            us,
            "us CPU per 10 ms frame",
            "-",
            command,
        );
    }
    Ok(())
}
