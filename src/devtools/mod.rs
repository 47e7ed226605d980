//! Real peers for tests, benchmarks and local development: a livekit-server on loopback and
//! participants driven by LiveKit's Python SDK (a separate, independent client).

pub mod fixtures;
pub mod livekit_server;
pub mod participant;
pub mod postgres;
pub mod process_stats;
pub mod s3;

pub use livekit_server::LocalLiveKitServer;
pub use participant::{PythonParticipant, dispatch_cli};
pub use postgres::LocalPostgres;
pub use s3::LocalS3;
