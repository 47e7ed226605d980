//! meeting-agent: a headless LiveKit participant that runs the media core of a meeting
//! platform. Media flows one way: transport (`livekit`) -> per-track pipelines (`session`,
//! `media`) -> outputs (room, recording, store).

pub mod api;
pub mod audio;
pub mod captions;
pub mod compliance;
pub mod config;
pub mod features;
pub mod integrations;
/// The transport: LiveKit's engine through its own crate (`crates/livekit-ffi-client`).
pub use livekit_ffi_client as livekit;
pub mod media;
pub mod media_messages;
pub mod meeting;
pub mod metrics;
pub mod offline;
pub mod onnx;
pub mod paths;
pub mod protocol;
pub mod recording;
pub mod services;
pub mod session;
pub mod store;
pub mod summary;
pub mod telemetry;
pub mod video;
pub mod worker;
