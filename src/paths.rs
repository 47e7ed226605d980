//! Where the project's installed parts live by default: one cache folder (scripts/setup.sh
//! fills it; `MEETING_AGENT_CACHE` moves it), with the engine library inside. At the ground
//! floor: the configuration and the engine both read it.

use std::path::PathBuf;

/// The engine library's file name inside `<cache>/livekit-ffi/`.
pub use livekit_ffi_client::library::LIBRARY_FILE as ENGINE_LIBRARY_FILE;

/// `MEETING_AGENT_CACHE`, or `~/.cache/meeting-agent`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEETING_AGENT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("meeting-agent")
}

/// `LIVEKIT_LIB_PATH`, or the copy scripts/setup.sh installs in the cache.
pub fn engine_library() -> PathBuf {
    if let Some(p) = std::env::var_os("LIVEKIT_LIB_PATH") {
        return PathBuf::from(p);
    }
    cache_dir().join("livekit-ffi").join(ENGINE_LIBRARY_FILE)
}
