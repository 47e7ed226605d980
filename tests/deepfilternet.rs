//! DeepFilterNet3 through the project's own signal path and streaming graph, compared with
//! libDF's own library (the same export run by tract) on the same noisy speech, and its
//! behaviour on odd input.

use std::sync::Arc;

use meeting_agent::audio::deepfilter::{DeepFilter, DeepFilterModel, deepfilter_clip};
use meeting_agent::audio::quality::{mix_at_snr, snr_db};
use meeting_agent_devtools::deepfilter_reference::reference_clip;
use meeting_agent_devtools::fixtures::load_f32;

fn model() -> Arc<DeepFilterModel> {
    let config = meeting_agent::config::Config::default();
    let env = meeting_agent::onnx::environment(&config.video.onnxruntime).unwrap();
    DeepFilterModel::load_dir(&env, &config.video.models_dir, 1).unwrap()
}

/// SNR (dB) of `b` measured against `a` as the truth.
fn agreement_db(a: &[f32], b: &[f32]) -> f64 {
    let (signal, error) = a.iter().zip(b).fold((0f64, 0f64), |(s, e), (&x, &y)| {
        (s + (x as f64).powi(2), e + (x as f64 - y as f64).powi(2))
    });
    10.0 * (signal / error.max(1e-9)).log10()
}

#[test]
fn the_signal_path_matches_libdf_on_noisy_speech() {
    let model = model();
    let speech = load_f32("real-speech.wav").unwrap();
    let speech = &speech[..speech.len().min(48_000 * 8)];
    for (noise, snr) in [
        ("noise-pink.wav", 5.0),
        ("noise-babble.wav", 5.0),
        ("noise-hum.wav", 10.0),
    ] {
        let noise = load_f32(noise).unwrap();
        let mix = mix_at_snr(speech, &noise, snr);
        let ours = deepfilter_clip(&model, &mix).unwrap();
        let reference = reference_clip(&mix, model.delay_samples()).unwrap();
        let agreement = agreement_db(&reference, &ours);
        let (gain_ours, gain_ref) = (
            snr_db(speech, &ours, 0, 4800) - snr_db(speech, &mix, 0, 4800),
            snr_db(speech, &reference, 0, 4800) - snr_db(speech, &mix, 0, 4800),
        );
        println!(
            "agreement with libDF {agreement:.1} dB; SI-SNR gain ours {gain_ours:+.2}, libDF {gain_ref:+.2}"
        );
        assert!(
            agreement > 20.0,
            "ours and libDF's outputs differ: {agreement:.1} dB"
        );
        assert!(
            (gain_ours - gain_ref).abs() < 1.0,
            "{gain_ours:.2} vs {gain_ref:.2}"
        );
    }
}

#[test]
fn silence_costs_nothing_and_odd_frames_are_refused() {
    let model = model();
    let mut df = DeepFilter::new(model.clone());
    let (input, mut output) = (vec![0f32; 480], vec![1f32; 480]);
    for _ in 0..50 {
        df.process_frame(&input, &mut output).unwrap();
    }
    assert!(output.iter().all(|&s| s == 0.0));
    assert!(
        df.frames <= 6,
        "the network ran {} times on silence",
        df.frames
    );
    assert!(df.process_frame(&input[..100], &mut output).is_err());
    // Full scale, NaN and infinity keep the output finite.
    let mut odd = vec![32767f32; 480];
    odd[3] = f32::NAN;
    odd[7] = f32::INFINITY;
    for _ in 0..20 {
        df.process_frame(&odd, &mut output).unwrap();
        assert!(output.iter().all(|s| s.is_finite()));
    }
}

#[test]
fn an_attenuation_limit_keeps_that_much_of_the_noise() {
    let model = model();
    let noise = load_f32("noise-white.wav").unwrap();
    let noise: Vec<f32> = noise[..48_000 * 2].iter().map(|s| s * 0.3).collect();
    let level = |x: &[f32]| {
        let tail = &x[x.len() / 2..];
        10.0 * (tail.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / tail.len() as f64).log10()
    };
    let input = level(&noise);
    let free =
        level(&meeting_agent::audio::deepfilter::deepfilter_clip(&model, &noise).unwrap()) - input;
    let limited = level(
        &meeting_agent::audio::deepfilter::deepfilter_clip_limited(&model, &noise, Some(6.0))
            .unwrap(),
    ) - input;
    println!("noise alone: {free:.1} dB without a limit, {limited:.1} dB with 6 dB");
    assert!(free < -15.0, "DeepFilterNet removes noise: {free:.1} dB");
    assert!(
        (-8.0..-4.0).contains(&limited),
        "at most 6 dB removed: {limited:.1} dB"
    );
}

/// Counts each thread's heap allocations (for the per-frame check below; other tests run on
/// other threads).
struct Counting;
thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
// SAFETY: forwards to the system allocator, only counting (a const thread-local Cell needs
// no allocation itself).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// Per frame, the signal path allocates nothing; the network run allocates the `ort` crate's
/// small wrappers around ONNX Runtime's call (11 with ort 2.0.0-rc.15), and silence (the
/// network skipped) allocates nothing at all.
#[test]
fn frames_allocate_only_the_network_calls_wrappers() {
    let model = model();
    let mut df = DeepFilter::new(model);
    let noise = load_f32("noise-white.wav").unwrap();
    let mut out = vec![0f32; 480];
    let count = |df: &mut DeepFilter, frames: &[f32], out: &mut [f32]| {
        let before = ALLOCATIONS.with(|c| c.get());
        for c in frames.chunks_exact(480) {
            df.process_frame(c, out).unwrap();
        }
        (ALLOCATIONS.with(|c| c.get()) - before) as f64 / (frames.len() / 480) as f64
    };
    count(&mut df, &noise[..4800], &mut out);
    let per_frame = count(&mut df, &noise[4800..4800 + 480 * 100], &mut out);
    println!("{per_frame} heap allocations per frame");
    assert!(per_frame <= 12.0, "{per_frame} allocations per frame");
    let silence = vec![0f32; 480 * 20];
    count(&mut df, &silence, &mut out);
    assert_eq!(
        count(&mut df, &silence, &mut out),
        0.0,
        "silence allocates nothing"
    );
}
