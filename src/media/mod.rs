//! Transport-independent media types. Pipelines consume these, so they can be fed by the
//! LiveKit engine, by files (tests, benchmarks, offline processing) or by generators.

pub mod analysis;
pub mod latency;

/// The frames are plain data, defined beside the engine that produces them.
pub use livekit_ffi_client::frames::{self, AudioFrame, FrameSizeError, VideoFrame};
