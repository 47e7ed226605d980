//! Dev tooling, kept out of the production library: real peers for tests, benchmarks and local
//! development (a livekit-server, PostgreSQL and an S3 server on loopback, participants driven by
//! LiveKit's Python SDK, fixtures, process figures), the benchmarks behind BENCHMARKS.md
//! (`bench`) and the demo (`demo`). The `meeting-agent-dev` binary runs the last two; the
//! agent's end-to-end tests use the rest.

pub mod bench;
pub mod browser;
pub mod deepfilter_reference;
pub mod demo;
pub mod fixtures;
pub mod fleet;
pub mod livekit_server;
pub mod participant;
pub mod postgres;
pub mod process_stats;
pub mod s3;

pub use livekit_server::LocalLiveKitServer;
pub use participant::{PythonParticipant, dispatch_cli};
pub use postgres::LocalPostgres;
pub use s3::LocalS3;

/// The repository (its participants, fixtures and scripts): the workspace cargo runs in now
/// (`cargo test` and `cargo run` set `CARGO_MANIFEST_DIR` for the package they run), else the
/// one the binary is run from, else the one this crate was built in. Clones sharing a target directory share compiled crates, so the
/// path baked in at build time can be another clone's.
pub fn repository() -> std::path::PathBuf {
    let at_run_time = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(std::env::current_dir().ok());
    let built_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    at_run_time
        .flat_map(|dir| {
            dir.ancestors()
                .map(std::path::Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .find(|dir| dir.join("Cargo.lock").is_file() && dir.join("crates/devtools").is_dir())
        .unwrap_or(built_in)
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
