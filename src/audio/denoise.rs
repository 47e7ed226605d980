//! RNNoise (nnnoiseless) noise suppression for one microphone. Input at any rate and channel
//! count; output 48 kHz mono in 10 ms frames, plus RNNoise's voice probability for the VAD.
//! Switched off, frames pass through untouched (bit-exact). The hot path does not allocate:
//! the model is shared by every stream, state and buffers are reused.

use std::sync::OnceLock;

use nnnoiseless::{DenoiseState, RnnModel};
use thiserror::Error;

use super::resample::{MonoResampler, ResampleError};
use crate::media::AudioFrame;

pub const RATE: u32 = 48_000;
pub const FRAME: usize = DenoiseState::FRAME_SIZE;

#[derive(Debug, Error)]
pub enum DenoiseError {
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("audio frame has {samples} samples, not a multiple of its {channels} channels")]
    Ragged { samples: usize, channels: u32 },
    #[error("audio frame has an invalid format: {rate} Hz, {channels} channels")]
    BadFormat { rate: u32, channels: u32 },
}

pub(crate) fn shared_model() -> &'static RnnModel {
    static MODEL: OnceLock<RnnModel> = OnceLock::new();
    MODEL.get_or_init(RnnModel::default)
}

pub struct Denoiser {
    enabled: bool,
    state: Box<DenoiseState<'static>>,
    resampler: Option<MonoResampler>,
    /// 48 kHz mono samples waiting for a full RNNoise frame.
    pending: Vec<f32>,
    frame_out: [f32; FRAME],
    /// Voice probability of the most recent frame.
    pub voice_probability: f32,
    /// Output frames produced.
    pub frames: u64,
}

impl Default for Denoiser {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Denoiser {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: DenoiseState::with_model(shared_model()),
            resampler: None,
            pending: Vec::with_capacity(FRAME * 4),
            frame_out: [0.0; FRAME],
            voice_probability: 0.0,
            frames: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Turning suppression back on continues from the model's previous state.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Processes one input frame. Enabled: calls `emit` with each complete denoised 48 kHz mono
    /// 10 ms frame (i16 scale f32, not clamped: [`to_i16`] saturates) and its voice probability. Disabled: checks the frame and emits nothing (callers forward
    /// the original frame themselves, bit for bit).
    pub fn process(
        &mut self,
        frame: &AudioFrame,
        mut emit: impl FnMut(&[f32; FRAME], f32),
    ) -> Result<(), DenoiseError> {
        self.process_with_input(frame, |_, denoised, p| emit(denoised, p))
    }

    /// As [`Self::process`], and `emit` also gets the 48 kHz mono input frame RNNoise read (the
    /// microphone as it came, for a caller that wants voice probabilities without suppression).
    pub fn process_with_input(
        &mut self,
        frame: &AudioFrame,
        mut emit: impl FnMut(&[f32; FRAME], &[f32; FRAME], f32),
    ) -> Result<(), DenoiseError> {
        let (rate, channels) = (frame.sample_rate, frame.channels);
        if rate == 0 || channels == 0 || channels > 8 || rate > 192_000 {
            return Err(DenoiseError::BadFormat { rate, channels });
        }
        if !frame.samples.len().is_multiple_of(channels as usize) {
            return Err(DenoiseError::Ragged {
                samples: frame.samples.len(),
                channels,
            });
        }
        if !self.enabled {
            return Ok(());
        }
        if rate == RATE && channels == 1 {
            // The live path (the engine delivers 48 kHz mono): one conversion, no resampler.
            self.resampler = None;
            self.pending.extend(frame.samples.iter().map(|&s| s as f32));
        } else {
            // A rate change mid-stream gets a new resampler; what the old one held is dropped
            // (under 10 ms), so timing does not drift.
            if self.resampler.as_ref().is_none_or(|r| r.input_rate != rate) {
                self.resampler = Some(MonoResampler::new(rate, RATE)?);
            }
            let (resampler, pending) = (
                self.resampler.as_mut().expect("set above"),
                &mut self.pending,
            );
            resampler.push(&frame.samples, channels, |mono| {
                pending.extend_from_slice(mono)
            });
        }
        let mut consumed = 0;
        while self.pending.len() - consumed >= FRAME {
            let input: &[f32; FRAME] = self.pending[consumed..consumed + FRAME]
                .try_into()
                .expect("a whole frame");
            self.voice_probability = self.state.process_frame(&mut self.frame_out, input);
            self.frames += 1;
            emit(input, &self.frame_out, self.voice_probability);
            consumed += FRAME;
        }
        self.pending.drain(..consumed);
        Ok(())
    }
}

/// Denoises a whole 48 kHz mono clip (i16 scale) in 10 ms frames, as the live pipeline does:
/// for offline processing, tests and benchmarks. The output lags the input by one frame.
pub fn denoise_clip(input: &[f32]) -> Vec<f32> {
    let mut denoiser = Denoiser::new(true);
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.chunks(FRAME) {
        denoiser
            .process(&AudioFrame::mono_48k(chunk), |f, _| {
                out.extend_from_slice(f)
            })
            .expect("48 kHz mono frames are valid");
    }
    out
}

/// Converts an RNNoise output frame to i16 PCM into `out` (reused by the caller); `as`
/// saturates, so overshoot past full scale clips instead of wrapping.
pub fn to_i16(frame: &[f32; FRAME], out: &mut Vec<i16>) {
    out.clear();
    out.extend(frame.iter().map(|&s| s.round() as i16));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(samples: Vec<i16>, rate: u32, channels: u32) -> AudioFrame {
        AudioFrame {
            samples,
            sample_rate: rate,
            channels,
            timestamp_us: 0,
        }
    }

    #[test]
    fn disabled_means_no_output_and_untouched_input() {
        let mut d = Denoiser::new(false);
        let input = frame(
            (0..480).map(|i| (i * 37 % 2000) as i16).collect(),
            48_000,
            1,
        );
        let copy = input.clone();
        let mut called = false;
        d.process(&input, |_, _| called = true).unwrap();
        assert!(!called);
        assert_eq!(input, copy);
    }

    #[test]
    fn the_input_frame_comes_with_its_denoised_frame() {
        let mut d = Denoiser::new(true);
        let samples: Vec<i16> = (0..480 * 3).map(|i| (i * 37 % 2000) as i16).collect();
        let mut inputs = Vec::new();
        for chunk in samples.chunks(480) {
            d.process_with_input(&frame(chunk.to_vec(), 48_000, 1), |input, _, _| {
                inputs.extend_from_slice(input)
            })
            .unwrap();
        }
        let expected: Vec<f32> = samples.iter().map(|&s| s as f32).collect();
        assert_eq!(inputs, expected, "48 kHz mono input passes bit for bit");
    }

    #[test]
    fn any_rate_and_layout_gives_48k_mono_frames_in_step() {
        for (rate, channels) in [
            (16_000, 1),
            (24_000, 2),
            (32_000, 1),
            (44_100, 2),
            (48_000, 1),
            (48_000, 2),
        ] {
            let mut d = Denoiser::new(true);
            let per_frame = (rate / 100 * channels) as usize;
            let mut out = 0usize;
            for i in 0..300 {
                let samples = (0..per_frame)
                    .map(|j| (((i * per_frame + j) as f32 * 0.05).sin() * 3000.0) as i16)
                    .collect();
                d.process(&frame(samples, rate, channels), |_, _| out += 1)
                    .unwrap();
            }
            assert!(
                out.abs_diff(300) <= 2,
                "{rate} Hz x{channels}: {out} frames for 300 in"
            );
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let mut d = Denoiser::new(true);
        let mut outputs = Vec::new();
        // Silence, full-scale clipping, a rate change mid-stream, then stereo.
        for (samples, rate, ch) in [
            (vec![0i16; 480], 48_000, 1),
            (vec![i16::MAX; 480], 48_000, 1),
            (vec![i16::MIN; 480], 48_000, 1),
            (
                (0..160)
                    .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
                    .collect(),
                16_000,
                1,
            ),
            (vec![1234; 882], 44_100, 2),
        ] {
            for _ in 0..20 {
                d.process(&frame(samples.clone(), rate, ch), |f, p| {
                    outputs.push((f.iter().all(|s| s.is_finite()), p))
                })
                .unwrap();
            }
        }
        assert!(outputs.len() > 60);
        assert!(
            outputs
                .iter()
                .all(|(finite, p)| *finite && (0.0..=1.0).contains(p))
        );
        assert!(
            d.process(&frame(vec![1, 2, 3], 48_000, 2), |_, _| {})
                .is_err(),
            "ragged frame"
        );
        assert!(
            d.process(&frame(vec![0; 480], 0, 1), |_, _| {}).is_err(),
            "zero rate"
        );
    }
}
