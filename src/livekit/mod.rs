//! LiveKit transport: the FFI engine (LiveKit's own Rust SDK + libwebrtc, loaded from the
//! pinned PyPI wheel), a small safe room API on top, and access tokens.

pub mod engine;
pub mod library;
pub mod proto;
pub mod room;
pub mod room_service;
pub mod token;
pub mod tracks;

pub use engine::Engine;
pub use room::{ConnectOptions, Room, RoomError, RoomEvent, TrackKind, TrackSource, TrackSummary};
pub use tracks::{AudioStream, LocalAudioTrack, LocalVideoTrack, VideoStream};
