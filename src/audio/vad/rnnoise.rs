//! RNNoise's voice probability: a by-product of denoising, so free in the live pipeline.

use nnnoiseless::DenoiseState;

use super::{VadError, VoiceDetector};
use crate::audio::denoise::{FRAME, shared_model};

pub struct RnnoiseVad {
    state: Box<DenoiseState<'static>>,
    out: [f32; FRAME],
}

impl Default for RnnoiseVad {
    fn default() -> Self {
        Self {
            state: DenoiseState::with_model(shared_model()),
            out: [0.0; FRAME],
        }
    }
}

impl VoiceDetector for RnnoiseVad {
    fn name(&self) -> &'static str {
        "rnnoise"
    }

    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, VadError> {
        Ok(self.state.process_frame(&mut self.out, frame))
    }
}
