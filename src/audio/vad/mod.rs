//! Voice activity detectors, compared by `meeting-agent-dev bench vad` on the project's fixtures.
//! The caption pipeline uses RNNoise's voice probability, which the denoiser computes anyway;
//! WebRTC's VAD (libfvad) and Silero (ONNX Runtime) are the alternatives it is measured against.

use thiserror::Error;

use super::denoise::FRAME;

pub mod rnnoise;
pub mod silero;
pub mod webrtc;

pub use rnnoise::RnnoiseVad;
pub use silero::SileroVad;
pub use webrtc::WebRtcVad;

#[derive(Debug, Error)]
pub enum VadError {
    #[error(transparent)]
    Runtime(#[from] crate::onnx::RuntimeError),
    #[error(
        "cannot load the VAD model {path}: {message} (models/fetch_models.sh silero-vad fetches it)"
    )]
    Model { path: String, message: String },
    #[error("VAD inference failed: {0}")]
    Inference(String),
}

/// A detector fed 10 ms frames of 48 kHz mono audio (i16 scale), as the microphone pipeline
/// delivers them.
pub trait VoiceDetector {
    fn name(&self) -> &'static str;
    /// The probability (0..=1) that this frame carries speech.
    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, VadError>;
}
