//! Dev tooling, kept out of the production library: real peers for tests, benchmarks and local
//! development (a livekit-server, PostgreSQL and an S3 server on loopback, participants driven by
//! LiveKit's Python SDK, fixtures, process figures), the benchmarks behind BENCHMARKS.md
//! (`bench`) and the demo (`demo`). The `meeting-agent-dev` binary runs the last two; the
//! agent's end-to-end tests use the rest.

pub mod bench;
pub mod demo;
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

/// The repository this crate was built in (its participants, fixtures and scripts).
pub fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tool set-up builds into the cache (`<cache>/tools/<dir>/<file>`), or where `env_var` says.
pub(crate) fn tool_binary(env_var: &str, dir: &str, file: &str) -> std::path::PathBuf {
    std::env::var_os(env_var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            meeting_agent::config::cache_dir()
                .join("tools")
                .join(dir)
                .join(file)
        })
}
