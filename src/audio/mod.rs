//! Audio processing on PCM frames: resampling and noise suppression. Transport-free: fed by the
//! engine in a meeting, by WAV files in tests, benchmarks and offline processing.

pub mod deepfilter;
pub mod denoise;
pub mod quality;
pub mod resample;
pub mod vad;
pub mod wav;

pub use denoise::{DenoiseError, Denoiser};
