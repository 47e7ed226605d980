//! Cheap signal measurements used to check and report what a track carries: the dominant
//! frequency and level of audio, and whether video content changes between frames.

use super::{AudioFrame, VideoFrame};

/// Accumulates mono audio and estimates its dominant frequency from the periods between
/// rising zero crossings (linearly interpolated). The median period is used, so a concealed
/// packet or a glitch in the window does not move the estimate.
#[derive(Debug, Default, Clone)]
pub struct ToneMeter {
    sample_rate: u32,
    samples: u64,
    sum_squares: f64,
    last: f32,
    /// Sub-sample position of the last rising crossing, in samples since the start.
    last_crossing: Option<f64>,
    periods: Vec<f32>,
}

impl ToneMeter {
    pub fn push(&mut self, frame: &AudioFrame) {
        self.sample_rate = frame.sample_rate;
        let channels = frame.channels.max(1) as usize;
        for chunk in frame.samples.chunks_exact(channels) {
            let s = chunk[0] as f32 / 32768.0;
            if self.last < 0.0 && s >= 0.0 {
                let at = self.samples as f64 - 1.0 + (-self.last / (s - self.last)) as f64;
                if let Some(prev) = self.last_crossing {
                    self.periods.push((at - prev) as f32);
                }
                self.last_crossing = Some(at);
            }
            self.last = s;
            self.sum_squares += (s * s) as f64;
            self.samples += 1;
        }
    }

    pub fn seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.samples as f64 / self.sample_rate as f64
        }
    }

    /// Dominant frequency in Hz (0 when no full period was seen).
    pub fn frequency_hz(&self) -> f64 {
        if self.periods.is_empty() {
            return 0.0;
        }
        let mut periods = self.periods.clone();
        let mid = periods.len() / 2;
        let (_, median, _) = periods.select_nth_unstable_by(mid, f32::total_cmp);
        self.sample_rate as f64 / *median as f64
    }

    /// Root-mean-square level in dBFS.
    pub fn rms_dbfs(&self) -> f64 {
        if self.samples == 0 {
            return f64::NEG_INFINITY;
        }
        10.0 * (self.sum_squares / self.samples as f64).max(1e-12).log10()
    }
}

/// A 64-bit FNV-1a digest of the luma plane, sampled sparsely: enough to tell whether
/// consecutive frames differ without touching every byte.
pub fn luma_digest(frame: &VideoFrame) -> u64 {
    let (y, _, _) = frame.planes();
    let step = (y.len() / 4096).max(1);
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in y.iter().step_by(step) {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Mean luma of a frame, 0..=255.
pub fn mean_luma(frame: &VideoFrame) -> f64 {
    let (y, _, _) = frame.planes();
    if y.is_empty() {
        return 0.0;
    }
    y.iter().map(|&b| b as u64).sum::<u64>() as f64 / y.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64) -> AudioFrame {
        let n = (rate as f64 * secs) as usize;
        let samples = (0..n)
            .map(|i| {
                ((2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() * 10_000.0)
                    as i16
            })
            .collect();
        AudioFrame {
            samples,
            sample_rate: rate,
            channels: 1,
            timestamp_us: 0,
        }
    }

    #[test]
    fn measures_tone_frequency_and_level() {
        for freq in [220.0, 440.0, 1000.0] {
            let mut meter = ToneMeter::default();
            meter.push(&sine(freq, 16_000, 1.0));
            assert!(
                (meter.frequency_hz() - freq).abs() < 2.0,
                "{freq}: {}",
                meter.frequency_hz()
            );
            // 10000/32768 amplitude sine: RMS = 0.2158 -> -13.3 dBFS
            assert!(
                (meter.rms_dbfs() + 13.3).abs() < 0.2,
                "{}",
                meter.rms_dbfs()
            );
        }
    }

    #[test]
    fn a_gap_in_the_tone_does_not_move_the_estimate() {
        let mut meter = ToneMeter::default();
        meter.push(&sine(550.0, 48_000, 0.4));
        meter.push(&AudioFrame {
            samples: vec![0; 480],
            sample_rate: 48_000,
            channels: 1,
            timestamp_us: 0,
        });
        meter.push(&sine(550.0, 48_000, 0.4));
        assert!(
            (meter.frequency_hz() - 550.0).abs() < 0.5,
            "{}",
            meter.frequency_hz()
        );
    }

    #[test]
    fn silence_has_no_frequency() {
        let mut meter = ToneMeter::default();
        meter.push(&AudioFrame {
            samples: vec![0; 1600],
            sample_rate: 16_000,
            channels: 1,
            timestamp_us: 0,
        });
        assert_eq!(meter.frequency_hz(), 0.0);
        assert!(meter.rms_dbfs() < -100.0);
    }

    #[test]
    fn digest_changes_with_content() {
        let a = VideoFrame::from_i420(64, 32, vec![16; VideoFrame::i420_len(64, 32)], 0).unwrap();
        let mut b = a.clone();
        b.data[100] = 200;
        assert_ne!(luma_digest(&a), luma_digest(&b));
        assert_eq!(luma_digest(&a), luma_digest(&a.clone()));
        assert_eq!(mean_luma(&a), 16.0);
    }
}
