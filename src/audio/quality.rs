//! Objective audio quality figures: SNR against a clean reference (with the processing delay
//! found by cross-correlation), mixing at a chosen SNR, and noise floor.

/// Energy ratio in dB.
fn db(num: f64, den: f64) -> f64 {
    10.0 * (num.max(1e-20) / den.max(1e-20)).log10()
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// `speech + noise * g` with `g` chosen so the mix has exactly `snr_db`.
pub fn mix_at_snr(speech: &[f32], noise: &[f32], snr_db: f64) -> Vec<f32> {
    let n = speech.len().min(noise.len());
    let gain =
        (energy(&speech[..n]) / energy(&noise[..n]) / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    speech[..n]
        .iter()
        .zip(&noise[..n])
        .map(|(&s, &v)| s + gain * v)
        .collect()
}

/// The lag (in samples, 0..=max_lag) by which `processed` trails `reference`, from the peak of
/// their cross-correlation.
pub fn best_lag(reference: &[f32], processed: &[f32], max_lag: usize) -> usize {
    let n = reference.len().min(processed.len()).saturating_sub(max_lag);
    (0..=max_lag)
        .max_by(|&a, &b| {
            let c = |lag: usize| {
                (0..n)
                    .step_by(2)
                    .map(|i| reference[i] as f64 * processed[i + lag] as f64)
                    .sum::<f64>()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0)
}

/// Scale-invariant SNR of `processed` against the clean `reference`: the delay (searched up to
/// `max_lag`) is removed and the reference scaled to its projection on the output, so only
/// added noise and distortion count as error. The first `skip` samples (start-up) are ignored.
pub fn snr_db(reference: &[f32], processed: &[f32], max_lag: usize, skip: usize) -> f64 {
    let lag = best_lag(reference, processed, max_lag);
    let n = reference.len().min(processed.len().saturating_sub(lag));
    let (r, p) = (
        &reference[skip.min(n)..n],
        &processed[lag + skip.min(n)..lag + n],
    );
    let dot: f64 = r.iter().zip(p).map(|(&a, &b)| a as f64 * b as f64).sum();
    let alpha = dot / energy(r).max(1e-20);
    let err: f64 = r
        .iter()
        .zip(p)
        .map(|(&a, &b)| (b as f64 - alpha * a as f64).powi(2))
        .sum();
    db(alpha * alpha * energy(r), err)
}

/// Segmental SNR (the speech-enhancement standard): the mean over 20 ms frames of each frame's
/// SNR against the delay-aligned clean reference, each clamped to [-10, 35] dB, over frames
/// where the reference carries speech (within 40 dB of its loudest frame).
pub fn segmental_snr_db(reference: &[f32], processed: &[f32], max_lag: usize, skip: usize) -> f64 {
    const W: usize = 960;
    let lag = best_lag(reference, processed, max_lag);
    let n = reference.len().min(processed.len().saturating_sub(lag));
    let (r, p) = (
        &reference[skip.min(n)..n],
        &processed[lag + skip.min(n)..lag + n],
    );
    let frames: Vec<(f64, f64)> = r
        .chunks_exact(W)
        .zip(p.chunks_exact(W))
        .map(|(rw, pw)| {
            (
                energy(rw),
                rw.iter()
                    .zip(pw)
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum::<f64>(),
            )
        })
        .collect();
    let loudest = frames.iter().map(|f| f.0).fold(0.0, f64::max);
    let active: Vec<f64> = frames
        .iter()
        .filter(|f| f.0 > loudest * 1e-4)
        .map(|&(s, e)| db(s, e).clamp(-10.0, 35.0))
        .collect();
    active.iter().sum::<f64>() / active.len().max(1) as f64
}

/// Noise floor in dBFS: the RMS of the quietest tenth of 10 ms windows (at 48 kHz).
pub fn noise_floor_dbfs(samples: &[f32]) -> f64 {
    let mut levels: Vec<f64> = samples
        .chunks_exact(480)
        .map(|w| energy(w) / w.len() as f64)
        .collect();
    if levels.is_empty() {
        return f64::NEG_INFINITY;
    }
    levels.sort_by(f64::total_cmp);
    let tenth = &levels[..(levels.len() / 10).max(1)];
    let mean = tenth.iter().sum::<f64>() / tenth.len() as f64;
    db(mean, 32768.0 * 32768.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.03).sin() * 5000.0 + ((i as f32) * 0.11).sin() * 2000.0)
            .collect()
    }

    fn lcg_noise(n: usize) -> Vec<f32> {
        let mut x = 12345u32;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as f32 / 32768.0 - 1.0) * 3000.0
            })
            .collect()
    }

    #[test]
    fn mixing_hits_the_requested_snr() {
        let (s, n) = (tone(48_000), lcg_noise(48_000));
        for target in [0.0, 5.0, 10.0] {
            let mix = mix_at_snr(&s, &n, target);
            let measured = snr_db(&s, &mix, 0, 0);
            assert!((measured - target).abs() < 0.3, "{target}: {measured}");
        }
    }

    #[test]
    fn delay_and_gain_are_compensated() {
        let s = tone(48_000);
        let mut delayed = vec![0.0; 240];
        delayed.extend(s.iter().map(|v| v * 0.5));
        assert_eq!(best_lag(&s, &delayed, 960), 240);
        assert!(snr_db(&s, &delayed, 960, 0) > 60.0);
    }

    #[test]
    fn noise_floor_reads_the_quiet_parts() {
        let mut x = vec![0.0f32; 48_000];
        x[..24_000].copy_from_slice(&tone(24_000));
        assert!(noise_floor_dbfs(&x) < -100.0);
        assert!(noise_floor_dbfs(&tone(48_000)) > -30.0);
    }
}
