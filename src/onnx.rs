//! ONNX Runtime for the process: loaded at run time from the library set-up installs (the `ort`
//! crate's own download of binaries cannot work here), one environment per process.

use std::path::Path;

use ort::environment::Environment;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
#[error(
    "cannot load ONNX Runtime from {path}: {message} (scripts/setup.sh installs it; ORT_DYLIB_PATH overrides)"
)]
pub struct RuntimeError {
    pub path: String,
    pub message: String,
}

/// The process's ONNX Runtime environment, loaded from `library` on first use; later calls get
/// the same environment (ONNX Runtime allows one per process) whatever path they name.
pub fn environment(library: &Path) -> Result<Environment, RuntimeError> {
    static LOADED: std::sync::OnceLock<Result<Environment, RuntimeError>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let error = |message: String| RuntimeError {
                path: library.display().to_string(),
                message,
            };
            if !library.is_file() {
                return Err(error("no such file".into()));
            }
            ort::init_from(library)
                .map_err(|e| error(e.to_string()))?
                .with_name("meeting-agent")
                .build()
                .map_err(|e| error(e.to_string()))
        })
        .clone()
}
