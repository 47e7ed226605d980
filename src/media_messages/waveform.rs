//! The waveform a message player draws: the loudest sample of each of a fixed number of equal
//! stretches, as a fraction of full scale.

/// `bars` peaks (0..=1, two decimals) of mono PCM; all zero for silence, empty for no audio.
pub fn peaks(samples: &[i16], bars: usize) -> Vec<f32> {
    if samples.is_empty() || bars == 0 {
        return Vec::new();
    }
    (0..bars)
        .map(|i| {
            let from = i * samples.len() / bars;
            let to = ((i + 1) * samples.len() / bars)
                .max(from + 1)
                .min(samples.len());
            let peak = samples[from..to]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap_or(0);
            (peak as f32 / 32768.0 * 100.0).round() / 100.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bar_is_the_loudest_of_its_stretch() {
        let mut samples = vec![0i16; 1000];
        samples[10] = 16384;
        samples[990] = -32768;
        let bars = peaks(&samples, 4);
        assert_eq!(bars, vec![0.5, 0.0, 0.0, 1.0]);
        assert_eq!(peaks(&[0; 50], 64).len(), 64, "fewer samples than bars");
        assert!(peaks(&[], 64).is_empty());
    }
}
