//! The whisper.cpp model: found in the models directory, checked by sha256, loaded once per
//! process and shared by every room and speaker.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use whisper_rs::{WhisperContext, WhisperContextParameters};

/// How to get the model when it is missing or damaged.
pub const FIX: &str = "run `bash models/fetch_models.sh` (or scripts/setup.sh)";

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("whisper model {path} is missing: {FIX}")]
    Missing { path: PathBuf },
    #[error(
        "whisper model {path} is corrupt (sha256 {actual}, expected {expected}): delete it and {FIX}"
    )]
    Corrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read whisper model {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("whisper.cpp cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
}

pub struct WhisperModel {
    pub context: WhisperContext,
    pub path: PathBuf,
    pub multilingual: bool,
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl WhisperModel {
    /// Loads `path`, first checking its sha256 when `expected_sha256` is given.
    pub fn load(path: &Path, expected_sha256: Option<&str>) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Missing {
                path: path.to_path_buf(),
            });
        }
        if let Some(expected) = expected_sha256 {
            let actual = sha256_file(path).map_err(|source| ModelError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ModelError::Corrupt {
                    path: path.to_path_buf(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        let path_str = path.to_str().ok_or_else(|| ModelError::Load {
            path: path.to_path_buf(),
            message: "path is not UTF-8".into(),
        })?;
        // whisper.cpp's and GGML's own log lines become tracing events (target `whisper_rs`)
        // instead of raw lines on stderr, which broke the one-event-per-line log format.
        whisper_rs::install_logging_hooks();
        let context =
            WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
                .map_err(|e| ModelError::Load {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        let multilingual = context.is_multilingual();
        tracing::info!(model = %path.display(), multilingual, "whisper model loaded");
        Ok(Self {
            context,
            path: path.to_path_buf(),
            multilingual,
        })
    }
}

impl WhisperModel {
    /// Transcribes a whole recording in one go, as offline whisper does (its own 30 s windows,
    /// timestamps to move through long audio, the text so far as context): the reference live
    /// captions are measured against. `audio`: 16 kHz mono, [-1, 1].
    pub fn transcribe_whole(
        &self,
        audio: &[f32],
        language: &str,
        threads: usize,
    ) -> Result<String, whisper_rs::WhisperError> {
        let mut state = self.context.create_state()?;
        let mut params =
            whisper_rs::FullParams::new(whisper_rs::SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads.max(1) as i32);
        params.set_language(Some(language));
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        state.full(params, audio)?;
        let mut text = String::new();
        for segment in state.as_iter() {
            text.push_str(&segment.to_str_lossy()?);
        }
        Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_fix() {
        let e = WhisperModel::load(Path::new("/nonexistent/ggml-tiny.en.bin"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/nonexistent/ggml-tiny.en.bin") && e.contains("fetch_models.sh"),
            "{e}"
        );
    }

    #[test]
    fn a_corrupt_model_is_refused_before_loading() {
        let path = std::env::temp_dir().join(format!("corrupt-model-{}.bin", std::process::id()));
        std::fs::write(&path, b"not a model").unwrap();
        let e = WhisperModel::load(&path, Some("00")).err().unwrap();
        assert!(matches!(e, ModelError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("delete it"));
        // Without a checksum whisper.cpp itself refuses the file, also with a clear error.
        let e = WhisperModel::load(&path, None).err().unwrap();
        assert!(matches!(e, ModelError::Load { .. }), "{e}");
        std::fs::remove_file(path).ok();
    }
}
