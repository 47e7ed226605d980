//! Any-rate, any-channel PCM to mono at a fixed output rate, through a band-limited FFT
//! resampler (rubato). Buffers are allocated once per input format, never per frame.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz: {message}")]
    Unsupported { from: u32, to: u32, message: String },
}

/// Downmixes to mono and converts `input_rate` to `output_rate`, in chunks of 10 ms of input.
pub struct MonoResampler {
    pub input_rate: u32,
    pub output_rate: u32,
    /// `None` when the rates match: mono samples pass straight through.
    fft: Option<Fft<f32>>,
    chunk: usize,
    /// Mono input not yet resampled (less than one chunk).
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl MonoResampler {
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, ResampleError> {
        let chunk = (input_rate / 100).max(1) as usize;
        let fft = if input_rate == output_rate {
            None
        } else {
            let fft = Fft::<f32>::new(
                input_rate as usize,
                output_rate as usize,
                chunk,
                1,
                FixedSync::Input,
            )
            .map_err(|e| ResampleError::Unsupported {
                from: input_rate,
                to: output_rate,
                message: e.to_string(),
            })?;
            Some(fft)
        };
        let max_out = fft.as_ref().map(|f| f.output_frames_max()).unwrap_or(chunk);
        Ok(Self {
            input_rate,
            output_rate,
            fft,
            chunk,
            pending: Vec::with_capacity(chunk * 4),
            out: vec![0.0; max_out],
        })
    }

    /// Samples the resampler holds back before the first output (its group delay).
    pub fn delay(&self) -> usize {
        self.fft.as_ref().map(|f| f.output_delay()).unwrap_or(0)
    }

    /// Appends interleaved i16 input (any channel count); pushes mono output samples (i16 scale,
    /// as f32) to `sink`.
    pub fn push(&mut self, interleaved: &[i16], channels: u32, mut sink: impl FnMut(&[f32])) {
        let channels = channels.max(1) as usize;
        let scale = 1.0 / channels as f32;
        self.pending.extend(
            interleaved
                .chunks_exact(channels)
                .map(|c| c.iter().map(|&s| s as f32).sum::<f32>() * scale),
        );
        let Some(fft) = self.fft.as_mut() else {
            sink(&self.pending);
            self.pending.clear();
            return;
        };
        let mut consumed = 0;
        while self.pending.len() - consumed >= self.chunk {
            let input = InterleavedSlice::new(
                &self.pending[consumed..consumed + self.chunk],
                1,
                self.chunk,
            )
            .expect("chunk-sized slice");
            let capacity = self.out.len();
            let mut output = InterleavedSlice::new_mut(&mut self.out[..], 1, capacity)
                .expect("output sized by output_frames_max");
            let (_, written) = fft
                .process_into_buffer(&input, &mut output, None)
                .expect("sizes checked above");
            sink(&self.out[..written]);
            consumed += self.chunk;
        }
        self.pending.drain(..consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_meeting_rate_reaches_48k_without_drift() {
        for rate in [16_000u32, 24_000, 32_000, 44_100, 48_000] {
            for channels in [1u32, 2] {
                let mut r = MonoResampler::new(rate, 48_000).unwrap();
                let mut produced = 0usize;
                // 2 s of input in 10 ms frames.
                let frame = vec![1000i16; (rate / 100 * channels) as usize];
                for _ in 0..200 {
                    r.push(&frame, channels, |out| produced += out.len());
                }
                let expected = 96_000usize;
                assert!(
                    produced.abs_diff(expected) <= 480,
                    "{rate} Hz x{channels}: {produced} samples, want {expected}"
                );
            }
        }
    }

    #[test]
    fn a_tone_keeps_its_frequency() {
        let mut r = MonoResampler::new(16_000, 48_000).unwrap();
        let input: Vec<i16> = (0..16_000)
            .map(|i| {
                ((2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 16_000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut out = Vec::new();
        for chunk in input.chunks(160) {
            r.push(chunk, 1, |o| out.extend_from_slice(o));
        }
        let frame = crate::media::AudioFrame {
            samples: out.iter().map(|&s| s as i16).collect(),
            sample_rate: 48_000,
            channels: 1,
            timestamp_us: 0,
        };
        let mut meter = crate::media::analysis::ToneMeter::default();
        meter.push(&frame);
        assert!(
            (meter.frequency_hz() - 1000.0).abs() < 1.0,
            "{}",
            meter.frequency_hz()
        );
        assert!(
            (meter.rms_dbfs() - (-15.3)).abs() < 0.5,
            "level kept: {}",
            meter.rms_dbfs()
        );
    }
}
