//! Transport-independent media types. Pipelines consume these, so they can be fed by the
//! LiveKit engine, by files (tests, benchmarks, offline processing) or by generators.

pub mod analysis;
pub mod frames;
pub mod latency;

pub use frames::{AudioFrame, FrameSizeError, VideoFrame};
