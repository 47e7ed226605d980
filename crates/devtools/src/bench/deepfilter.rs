//! DeepFilterNet3 beside RNNoise: quality on the same noisy sets (SI-SNR, segmental SNR,
//! wide-band PESQ), speed per stream (one thread, beside libDF's own library in the same run,
//! and under load), and what each does to captions' word error rate on noisy speech.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use super::{row, thread_cpu_seconds};
use crate::deepfilter_reference::{ReferenceDeepFilter, reference_clip};
use meeting_agent::audio::deepfilter::{DeepFilter, DeepFilterModel, deepfilter_clip};
use meeting_agent::audio::denoise::denoise_clip;
use meeting_agent::audio::quality::{mix_at_snr, segmental_snr_db, snr_db};
use meeting_agent::audio::resample::MonoResampler;

fn fixture(name: &str) -> Result<Vec<f32>> {
    crate::fixtures::load_f32(name).with_context(|| format!("fixture {name}"))
}

/// The model as the worker loads it (one session: one stream at a time here).
pub fn load_model() -> Result<Arc<DeepFilterModel>> {
    let config = meeting_agent::config::Config::default();
    let env = meeting_agent::onnx::environment(&config.video.onnxruntime)?;
    Ok(DeepFilterModel::load_dir(
        &env,
        &config.video.models_dir,
        1,
    )?)
}

/// RNNoise's output lags its input by one frame; this takes it off (the SNR measures find the
/// lag themselves, PESQ and captions want aligned audio).
fn rnnoise_aligned(mix: &[f32]) -> Vec<f32> {
    let mut out = denoise_clip(mix);
    out.drain(..480.min(out.len()));
    out.resize(mix.len(), 0.0);
    out
}

fn to_16k_i16(samples: &[f32]) -> Vec<i16> {
    let mut resampler = MonoResampler::new(48_000, 16_000).expect("48 to 16 kHz");
    let pcm: Vec<i16> = samples
        .iter()
        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let mut out = Vec::with_capacity(pcm.len() / 3);
    for chunk in pcm.chunks(480) {
        resampler.push(chunk, 1, |o| {
            out.extend(o.iter().map(|&s| s.round().clamp(-32768.0, 32767.0) as i16))
        });
    }
    out
}

/// Wide-band PESQ of each (clean, processed) pair at 16 kHz, through the `pesq` package in
/// the project's venv (installed on first use).
fn pesq_scores(pairs: &[(&[f32], Vec<f32>)]) -> Result<Vec<f64>> {
    let cache = meeting_agent::paths::cache_dir();
    let python = cache.join("venv").join("bin").join("python");
    let has = std::process::Command::new(&python)
        .args(["-c", "import pesq"])
        .status()?;
    if !has.success() {
        let ok = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "pesq==0.0.4",
            ])
            .status()?;
        anyhow::ensure!(
            ok.success(),
            "cannot install pesq==0.0.4 into {}",
            python.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("bench-pesq-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut args = Vec::new();
    for (i, (clean, processed)) in pairs.iter().enumerate() {
        for (tag, audio) in [("ref", *clean), ("deg", processed.as_slice())] {
            let path = dir.join(format!("{i}-{tag}.wav"));
            meeting_agent::audio::wav::write_i16(&path, &to_16k_i16(audio), 16_000, 1)?;
            args.push(path);
        }
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pesq_score.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(&args)
        .output()?;
    std::fs::remove_dir_all(&dir).ok();
    anyhow::ensure!(
        out.status.success(),
        "pesq_score.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse::<f64>().context("a PESQ score"))
        .collect()
}

struct Case {
    label: String,
    clean: Vec<f32>,
    mix: Vec<f32>,
}

fn cases(speech_file: &str, noises: &[&str]) -> Result<Vec<Case>> {
    let speech = fixture(speech_file)?;
    let mut out = Vec::new();
    for noise_file in noises {
        let noise = fixture(noise_file)?;
        for snr in [0.0, 5.0, 10.0] {
            let mix = mix_at_snr(&speech, &noise, snr);
            let clean = speech[..mix.len()].to_vec();
            let label = format!("{} at {snr} dB", noise_file.trim_end_matches(".wav"));
            out.push(Case { label, clean, mix });
        }
    }
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// `bench denoise-models`: both models on the project's synthetic set (espeak-ng speech with
/// white, pink and hum noise at 0/5/10 dB) and on recorded human speech with the same noises
/// and babble; PESQ on the recorded speech.
pub fn quality() -> Result<()> {
    let model = load_model()?;
    let command = "meeting-agent-dev bench denoise-models";
    for (set, speech, noises) in [
        (
            "",
            "speech.wav",
            &["noise-white.wav", "noise-pink.wav", "noise-hum.wav"][..],
        ),
        (
            "_real",
            "real-speech.wav",
            &[
                "noise-white.wav",
                "noise-pink.wav",
                "noise-hum.wav",
                "noise-babble.wav",
            ][..],
        ),
    ] {
        let cases = cases(speech, noises)?;
        let (mut si, mut seg) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        let mut pesq_pairs: Vec<(&[f32], Vec<f32>)> = Vec::new();
        for case in &cases {
            let outputs = [
                rnnoise_aligned(&case.mix),
                deepfilter_clip(&model, &case.mix)?,
            ];
            let si_in = snr_db(&case.clean, &case.mix, 0, 4800);
            let seg_in = segmental_snr_db(&case.clean, &case.mix, 0, 4800);
            let mut line = format!("{:>24}:", case.label);
            for (m, out) in outputs.iter().enumerate() {
                let g = snr_db(&case.clean, out, 960, 4800) - si_in;
                let s = segmental_snr_db(&case.clean, out, 960, 4800) - seg_in;
                line += &format!("  {} SI-SNR {g:+.1} seg {s:+.1}", ["rnnoise", "dfn"][m]);
                si[m].push(g);
                seg[m].push(s);
            }
            eprintln!("{line}");
            if set == "_real" && case.label == "noise-pink at 5 dB" {
                eprintln!(
                    "{:>24}: ours against libDF's library {:.1} dB",
                    "",
                    agreement_db(&case.mix, &model)?
                );
            }
            if set == "_real" {
                pesq_pairs.push((&case.clean, case.mix.clone()));
                for out in outputs {
                    pesq_pairs.push((&case.clean, out));
                }
            }
        }
        let n = cases.len();
        for (m, name) in ["rnnoise", "dfn"].iter().enumerate() {
            let figure = match (set, *name) {
                ("", "rnnoise") => "denoise_snr_gain_db".to_string(),
                ("", "dfn") => "denoise_snr_gain_db_dfn".to_string(),
                (s, n) => format!("denoise_snr_gain_db{s}_{n}"),
            };
            let target = if figure == "denoise_snr_gain_db_dfn" {
                ">= 10"
            } else {
                "-"
            };
            row(
                &figure,
                mean(&si[m]),
                &format!("dB (SI-SNR, mean of {n})"),
                target,
                command,
            );
            row(
                &format!("denoise_segsnr_gain_db{set}_{name}"),
                mean(&seg[m]),
                &format!("dB (segmental SNR, mean of {n})"),
                "-",
                command,
            );
        }
        if !pesq_pairs.is_empty() {
            let scores = pesq_scores(&pesq_pairs)?;
            let (mut noisy, mut gains) = (Vec::new(), [Vec::new(), Vec::new()]);
            for (case, s) in cases.iter().zip(scores.chunks(3)) {
                eprintln!(
                    "{:>24}: PESQ noisy {:.2}, rnnoise {:.2}, dfn {:.2}",
                    case.label, s[0], s[1], s[2]
                );
                noisy.push(s[0]);
                gains[0].push(s[1] - s[0]);
                gains[1].push(s[2] - s[0]);
            }
            eprintln!("mean PESQ of the noisy input {:.2}", mean(&noisy));
            for (m, name) in ["rnnoise", "dfn"].iter().enumerate() {
                row(
                    &format!("denoise_pesq_gain_{name}"),
                    mean(&gains[m]),
                    &format!("PESQ (P.862.2 wide band) gain, mean of {n}"),
                    "-",
                    command,
                );
            }
        }
    }
    Ok(())
}

/// Busy loops on every core while `f` runs: the figure under load.
fn with_busy_loops<T>(threads: usize, f: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let out = f();
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.join();
    }
    out
}

/// Seconds (thread CPU, wall) one stream of ours takes for `frames`.
fn time_ours(model: &Arc<DeepFilterModel>, frames: &[Vec<f32>]) -> Result<(f64, f64)> {
    let mut df = DeepFilter::new(model.clone());
    let mut out = vec![0f32; 480];
    let (cpu, wall) = (thread_cpu_seconds(), std::time::Instant::now());
    for f in frames {
        df.process_frame(f, &mut out)?;
    }
    Ok((thread_cpu_seconds() - cpu, wall.elapsed().as_secs_f64()))
}

fn time_reference(frames: &[Vec<f32>]) -> Result<f64> {
    let mut df = ReferenceDeepFilter::new()?;
    let scaled: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| f.iter().map(|s| s / 32768.0).collect())
        .collect();
    let (mut input, mut out) = (vec![0f32; 480], vec![0f32; 480]);
    let cpu = thread_cpu_seconds();
    for f in &scaled {
        input.copy_from_slice(f);
        df.process(&mut input, &mut out);
    }
    Ok(thread_cpu_seconds() - cpu)
}

/// `bench dfn`: audio seconds per CPU second for one stream on one thread (ours, libDF's own
/// library alternating with it, each its best round), then ours with busy loops on every core.
pub fn throughput(rounds: usize) -> Result<()> {
    let model = load_model()?;
    let speech = fixture("speech.wav")?;
    let noise = fixture("noise-white.wav")?;
    let mix = mix_at_snr(&speech, &noise, 5.0);
    let frames: Vec<Vec<f32>> = mix.chunks_exact(480).map(|c| c.to_vec()).collect();
    let audio = frames.len() as f64 * 0.01;
    let (mut ours, mut reference) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        ours = ours.min(time_ours(&model, &frames)?.0);
        reference = reference.min(time_reference(&frames)?);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (_, busy_wall) = with_busy_loops(cores, || time_ours(&model, &frames))?;
    eprintln!(
        "{audio:.0} s of audio: ours {:.1}x real time, libDF {:.1}x; with {cores} busy loops {:.1}x (wall clock)",
        audio / ours,
        audio / reference,
        audio / busy_wall
    );
    let cmd = format!("meeting-agent-dev bench dfn --rounds {rounds}");
    let unit = "audio s per CPU s per stream";
    row("dfn_x_realtime", audio / ours, unit, ">= 6", &cmd);
    row(
        "dfn_reference_x_realtime",
        audio / reference,
        unit,
        "-",
        &cmd,
    );
    row(
        "dfn_vs_reference_ratio",
        reference / ours,
        "ratio",
        ">= 1.0",
        &cmd,
    );
    row(
        "dfn_x_realtime_busy",
        audio / busy_wall,
        &format!("audio s per wall s, {cores} busy loops"),
        ">= 1",
        &cmd,
    );
    Ok(())
}

/// How closely ours follows libDF's own library on `mix`: SNR of ours against its output.
fn agreement_db(mix: &[f32], model: &Arc<DeepFilterModel>) -> Result<f64> {
    let ours = deepfilter_clip(model, mix)?;
    let reference = reference_clip(mix, model.delay_samples())?;
    let (s, e) = reference
        .iter()
        .zip(&ours)
        .fold((0f64, 0f64), |(s, e), (&r, &o)| {
            (s + (r as f64).powi(2), e + (r as f64 - o as f64).powi(2))
        });
    Ok(10.0 * (s / e.max(1e-9)).log10())
}

/// `bench caption-wer-noisy`: captions of `fixture` with `noise` mixed in at `snr` dB, as the
/// live pipeline cuts them (RNNoise's voice probability on the noisy microphone) with whisper
/// hearing the clean speech, the noisy microphone, RNNoise's output or DeepFilterNet's.
pub async fn caption_wer(
    model_path: &std::path::Path,
    fixture_name: &str,
    noise: &str,
    snr: f64,
) -> Result<()> {
    let dir = crate::fixtures::dir_for(fixture_name)?;
    let speech = fixture(&format!("{fixture_name}.wav"))?;
    let expected = std::fs::read_to_string(dir.join(format!("{fixture_name}.txt")))?;
    let noise_samples = fixture(&format!("noise-{noise}.wav"))?;
    // The noise loops to cover the speech.
    let looped: Vec<f32> = noise_samples
        .iter()
        .copied()
        .cycle()
        .take(speech.len())
        .collect();
    let mix = mix_at_snr(&speech, &looped, snr);
    let model = load_model()?;
    let variants = [
        ("clean", speech[..mix.len()].to_vec()),
        ("raw", mix.clone()),
        ("rnnoise", rnnoise_aligned(&mix)),
        ("dfn", deepfilter_clip(&model, &mix)?),
        (
            "dfn_limit12db",
            meeting_agent::audio::deepfilter::deepfilter_clip_limited(&model, &mix, Some(12.0))?,
        ),
        (
            "dfn_limit20db",
            meeting_agent::audio::deepfilter::deepfilter_clip_limited(&model, &mix, Some(20.0))?,
        ),
    ];
    let only = std::env::var("BENCH_VARIANTS").ok();
    let variants: Vec<_> = variants
        .into_iter()
        .filter(|(n, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|v| v == *n))
        })
        .collect();
    let cmd = format!(
        "meeting-agent-dev bench caption-wer-noisy --fixture {fixture_name} --noise {noise} --snr {snr}"
    );
    for (name, heard) in &variants {
        let pieces = utterances_heard(&mix, heard);
        let text = transcribe(model_path, pieces).await?;
        let wer = meeting_agent::captions::wer::word_error_rate(&expected, &text);
        eprintln!("{name:>8}: WER {:.1} %: {text}", wer * 100.0);
        let figure = if *name == "clean" {
            "caption_wer_clean_pct".to_string()
        } else {
            format!("caption_wer_noisy_{}db_pct_{name}", snr as i64)
        };
        row(
            &figure,
            wer * 100.0,
            &format!("% WER, {fixture_name} + {noise} noise"),
            "-",
            &cmd,
        );
    }
    Ok(())
}

/// Utterances as the live pipeline cuts them from the microphone `mic` (RNNoise's voice
/// probability), each holding what whisper hears: the same span of `heard`.
fn utterances_heard(mic: &[f32], heard: &[f32]) -> Vec<Vec<f32>> {
    use meeting_agent::captions::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
    let mut denoiser = meeting_agent::audio::Denoiser::new(true);
    let mut segmenter = Segmenter::new(SegmenterConfig {
        interim_every_ms: u32::MAX,
        ..Default::default()
    });
    let mut out = Vec::new();
    for (i, chunk) in mic.chunks_exact(480).enumerate() {
        let frame = meeting_agent::media::AudioFrame::mono_48k(chunk);
        let span = &heard[i * 480..(i + 1) * 480];
        let _ = denoiser.process(&frame, |_, p| {
            if let Some(SegmentEvent::Final { audio, .. }) = segmenter.push(span, p) {
                out.push(audio);
            }
        });
    }
    if let Some(SegmentEvent::Final { audio, .. }) = segmenter.finish() {
        out.push(audio);
    }
    out
}

/// Each utterance's final through whisper (English, two threads), the finals before it as
/// its prompt, as the live captions do.
async fn transcribe(model_path: &std::path::Path, pieces: Vec<Vec<f32>>) -> Result<String> {
    use meeting_agent::captions::recognizer::RecognizerOptions;
    let model = meeting_agent::captions::WhisperModel::load(model_path, None)?;
    let recognizer = meeting_agent::captions::Recognizer::start(
        model,
        RecognizerOptions {
            language: Some("en".into()),
            translate: false,
            threads: 2,
            final_window: Default::default(),
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(super::asr::finals(&recognizer, pieces, true)
        .await?
        .join(" "))
}
