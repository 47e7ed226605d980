//! Noise suppression figures: throughput against stock nnnoiseless on the same audio in the same
//! run, and SNR gain on the project's fixtures.

use anyhow::{Context, Result};
use nnnoiseless::DenoiseState;

use super::{row, thread_cpu_seconds};
use crate::audio::Denoiser;
use crate::audio::quality::{mix_at_snr, snr_db};
use crate::audio::wav::read_i16;
use crate::media::AudioFrame;

fn fixture(name: &str) -> Result<Vec<i16>> {
    let dir = crate::config::cache_dir().join("fixtures");
    let status = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/make_fixtures.sh"
        ))
        .arg(&dir)
        .status()?;
    anyhow::ensure!(status.success(), "fixtures/make_fixtures.sh failed");
    Ok(read_i16(&dir.join(name))
        .with_context(|| format!("fixture {name}"))?
        .0)
}

/// Stock nnnoiseless as its documentation uses it: one `DenoiseState::new()` per stream, i16
/// converted into a reused f32 frame, `process_frame`.
fn stock(frames: &[AudioFrame], streams: usize) -> f64 {
    let mut states: Vec<_> = (0..streams).map(|_| DenoiseState::new()).collect();
    let (mut input, mut output) = ([0f32; 480], [0f32; 480]);
    let mut sink = 0f32;
    let t0 = thread_cpu_seconds();
    for frame in frames {
        for state in states.iter_mut() {
            for (i, &s) in input.iter_mut().zip(&frame.samples) {
                *i = s as f32;
            }
            state.process_frame(&mut output, &input);
            sink += output[0];
        }
    }
    std::hint::black_box(sink);
    thread_cpu_seconds() - t0
}

/// This project's per-participant denoiser, exactly as the live pipeline calls it.
fn ours(frames: &[AudioFrame], streams: usize) -> f64 {
    let mut denoisers: Vec<_> = (0..streams).map(|_| Denoiser::new(true)).collect();
    let mut sink = 0f32;
    let t0 = thread_cpu_seconds();
    for frame in frames {
        for d in denoisers.iter_mut() {
            d.process(frame, |out, _| sink += out[0])
                .expect("valid frames");
        }
    }
    std::hint::black_box(sink);
    thread_cpu_seconds() - t0
}

pub fn throughput(rounds: usize, streams: usize) -> Result<()> {
    let speech: Vec<f32> = fixture("speech.wav")?.into_iter().map(f32::from).collect();
    let noise: Vec<f32> = fixture("noise-white.wav")?
        .into_iter()
        .map(f32::from)
        .collect();
    let mix = mix_at_snr(&speech, &noise, 5.0);
    let frames: Vec<AudioFrame> = mix
        .chunks_exact(480)
        .map(|c| AudioFrame {
            samples: c
                .iter()
                .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
                .collect(),
            sample_rate: 48_000,
            channels: 1,
            timestamp_us: 0,
        })
        .collect();
    let audio_seconds = frames.len() as f64 * 0.01 * streams as f64;
    // Alternate the two and keep each one's best round, so both see the same machine state.
    let (mut best_stock, mut best_ours) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        best_stock = best_stock.min(stock(&frames, streams));
        best_ours = best_ours.min(ours(&frames, streams));
    }
    let (x_ours, x_stock) = (audio_seconds / best_ours, audio_seconds / best_stock);
    eprintln!(
        "{streams} stream(s), {audio_seconds:.0} s of audio: ours {x_ours:.0}x real time, stock nnnoiseless {x_stock:.0}x"
    );
    let cmd = format!("meeting-agent bench denoise --rounds {rounds} --streams {streams}");
    let suffix = if streams == 1 {
        String::new()
    } else {
        format!("_{streams}streams")
    };
    row(
        &format!("denoise_x_realtime{suffix}"),
        x_ours,
        "audio s per CPU s per stream",
        ">= 150",
        &cmd,
    );
    row(
        &format!("denoise_stock_x_realtime{suffix}"),
        x_stock,
        "audio s per CPU s per stream",
        "-",
        &cmd,
    );
    row(
        &format!("denoise_vs_stock_ratio{suffix}"),
        x_ours / x_stock,
        "ratio",
        ">= 1.0",
        &cmd,
    );
    Ok(())
}

/// SI-SNR gain on speech + stationary noise (white, pink, hum) at 0, 5 and 10 dB.
pub fn snr_gain() -> Result<()> {
    let speech: Vec<f32> = fixture("speech.wav")?.into_iter().map(f32::from).collect();
    let mut gains = Vec::new();
    for noise in ["noise-white.wav", "noise-pink.wav", "noise-hum.wav"] {
        let noise: Vec<f32> = fixture(noise)?.into_iter().map(f32::from).collect();
        for snr in [0.0, 5.0, 10.0] {
            let mix = mix_at_snr(&speech, &noise, snr);
            let mut d = Denoiser::new(true);
            let mut out = Vec::with_capacity(mix.len());
            for c in mix.chunks(480) {
                let frame = AudioFrame {
                    samples: c
                        .iter()
                        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
                        .collect(),
                    sample_rate: 48_000,
                    channels: 1,
                    timestamp_us: 0,
                };
                d.process(&frame, |f, _| out.extend_from_slice(f))?;
            }
            let gain = snr_db(&speech, &out, 960, 4800) - snr_db(&speech, &mix, 0, 4800);
            eprintln!("at {snr} dB input SNR: {gain:+.1} dB");
            gains.push(gain);
        }
    }
    let mean = gains.iter().sum::<f64>() / gains.len() as f64;
    row(
        "denoise_snr_gain_db",
        mean,
        "dB (SI-SNR, mean of 9)",
        ">= 10",
        "meeting-agent bench denoise-snr",
    );
    Ok(())
}
