//! Live captions: per-speaker streaming speech recognition with whisper.cpp (whisper-rs),
//! gated by voice activity, stabilised so interim text never flickers, published the way
//! LiveKit clients read transcriptions, and kept in a durable journal.
//!
//! Flow per microphone: 48 kHz denoised frames + RNNoise voice probability -> [`segmenter`]
//! (utterances, 16 kHz) -> [`recognizer`] (one model, one scheduler for the process) ->
//! [`stabilizer`] (LocalAgreement-2 for interims) and [`filter`] (hallucinations) ->
//! [`publisher`] (room) and [`journal`] (disk).

pub mod export;
pub mod filter;
pub mod journal;
pub mod language;
pub mod model;
pub mod publisher;
pub mod recognizer;
pub mod segmenter;
pub mod speaker;
pub mod stabilizer;
pub mod threads;
pub mod wer;

pub use language::CaptionLanguage;
pub use model::{ModelError, WhisperModel};
pub use recognizer::{Hypothesis, Recognizer};
