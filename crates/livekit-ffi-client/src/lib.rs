//! A LiveKit client on LiveKit's own engine: `liblivekit_ffi.so` (LiveKit's Rust SDK with
//! libwebrtc, as the PyPI `livekit` wheel ships it) loaded at run time, with a small safe API on
//! top, the way LiveKit's SDKs split engine, protocol and API:
//! - `library`: loading the shared library and its four C entry points;
//! - `engine`: the one event callback, request/reply routing by async id, handle ownership;
//! - `proto`: the FFI protocol, generated from the committed descriptor set;
//! - `room`, `tracks`: connecting, room events, remote streams, local tracks, text streams;
//! - `frames`: the audio and video frames streams deliver (plain data);
//! - `room_service`, `token`: the server API (RoomService over Twirp) and access tokens.
//!
//! It knows nothing of the agent built on it and is tested on its own (`cargo test -p
//! livekit-ffi-client`).

pub mod engine;
pub mod frames;
pub mod library;
pub mod proto;
pub mod room;
pub mod room_service;
pub mod token;
pub mod tracks;

pub use engine::Engine;
pub use frames::{AudioFrame, FrameSizeError, VideoFrame};
pub use room::{ConnectOptions, Room, RoomError, RoomEvent, TrackKind, TrackSource, TrackSummary};
pub use tracks::{AudioStream, LocalAudioTrack, LocalVideoTrack, OutboundTotals, VideoStream};
