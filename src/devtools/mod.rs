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

/// A tool set-up builds into the cache (`<cache>/tools/<dir>/<file>`), or where `env_var` says.
pub(crate) fn tool_binary(env_var: &str, dir: &str, file: &str) -> std::path::PathBuf {
    std::env::var_os(env_var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            crate::config::cache_dir()
                .join("tools")
                .join(dir)
                .join(file)
        })
}
