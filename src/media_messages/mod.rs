//! Voice and video messages: an attachment of a chat message is decoded (GStreamer), cut into
//! utterances and transcribed as a meeting's microphone would be, and measured for the player
//! (duration, waveform; a video's size and poster frame). Jobs come from the store's queue
//! ([`crate::store::media_jobs`]); [`worker`] runs them.

pub mod sniff;
pub mod waveform;
pub mod worker;

use std::path::Path;

use serde::Serialize;
use thiserror::Error;

use crate::features::captions::Captioning;
use crate::recording::graphs::Graphs;
use crate::recording::offline::Decoder;
pub use sniff::Container;

/// Rate the attachment is decoded at (the live microphones' rate).
const RATE: u32 = 48_000;

#[derive(Debug, Error)]
pub enum MediaError {
    /// The file itself is the problem (format, corrupt, too long): retrying cannot help. The
    /// text is what the sender is shown.
    #[error("{0}")]
    Bad(String),
    /// Something around it failed (storage, database, recognizer): worth another attempt.
    #[error("{0}")]
    Transient(String),
}

/// What a job writes back to its message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaResult {
    pub container: Container,
    /// `audio` or `video`.
    pub kind: &'static str,
    pub duration_ms: i64,
    /// The transcript, utterances joined by spaces; empty when nothing was said.
    pub transcript: String,
    /// The language whisper heard (the configured one unless the model detects it).
    pub language: String,
    /// Peaks for the player, `media_messages.waveform_bars` of them.
    pub waveform: Vec<f32>,
    /// A video's picture size.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// A video's poster (its first picture, JPEG, at most [`POSTER_MAX_WIDTH`] wide), where
    /// the worker stored it: `file:<path under the media folder>` or `s3:<key>`.
    pub poster: Option<String>,
}

/// Widest poster kept; larger pictures are scaled down, keeping their shape.
pub const POSTER_MAX_WIDTH: u32 = 640;

/// Limits that bound what one attachment may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_seconds: u64,
    pub waveform_bars: usize,
}

/// The bucket `s3:` attachments are read from (the recordings' one), when S3 is configured.
pub fn attachments_bucket(
    config: &crate::config::Config,
) -> Option<std::sync::Arc<crate::recording::s3::S3Store>> {
    if config.recording.storage != crate::config::StorageKind::S3 {
        return None;
    }
    match crate::recording::s3::S3Store::new(&config.recording.s3) {
        Ok(s3) => Some(std::sync::Arc::new(s3)),
        Err(e) => {
            tracing::error!(error = %e, "S3 attachments are unavailable");
            None
        }
    }
}

/// Longest message id and source a job may name.
pub const MAX_ID_CHARS: usize = 200;
pub const MAX_SOURCE_CHARS: usize = 1024;

/// Checks a job before it is queued: a message id of at most [`MAX_ID_CHARS`] printable
/// characters, and a source `file:<relative path without ..>` or `s3:<key>`. Where a `file:`
/// path really leads is checked again when the job runs.
pub fn check_job(message_id: &str, source: &str) -> Result<(), MediaError> {
    let printable = |s: &str| !s.chars().any(char::is_control);
    if message_id.is_empty() || message_id.chars().count() > MAX_ID_CHARS || !printable(message_id)
    {
        return Err(MediaError::Bad(format!(
            "message id: 1 to {MAX_ID_CHARS} printable characters"
        )));
    }
    let bad_source = || {
        MediaError::Bad(format!(
            "source: file:<path in the media folder> or s3:<key>, at most {MAX_SOURCE_CHARS} characters"
        ))
    };
    if source.chars().count() > MAX_SOURCE_CHARS || !printable(source) {
        return Err(bad_source());
    }
    if let Some(path) = source.strip_prefix("file:") {
        if !plain_relative(path) {
            return Err(bad_source());
        }
    } else if source.strip_prefix("s3:").is_none_or(str::is_empty) {
        return Err(bad_source());
    }
    Ok(())
}

/// A non-empty relative path of plain names only (no `..`, `.`, root or prefix): what a
/// `file:` source may be, checked when a job is queued and again when it runs.
pub fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Decoded audio (48 kHz mono) and, for a video, its picture size and poster (JPEG).
struct Decoded {
    samples: Vec<i16>,
    video: Option<(u32, u32, Vec<u8>)>,
}

/// Decodes `path` (sniffed first: only the supported containers reach GStreamer). Blocking.
fn decode(path: &Path, limits: &Limits) -> Result<(Container, Decoded), MediaError> {
    let mut head = Vec::with_capacity(sniff::SNIFF_BYTES);
    {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(sniff::SNIFF_BYTES as u64).read_to_end(&mut head))
            .map_err(|e| MediaError::Transient(format!("cannot read the attachment: {e}")))?;
    }
    let container = sniff::sniff(&head)?;
    crate::recording::pipeline::init()
        .map_err(|e| MediaError::Transient(format!("GStreamer: {e}")))?;
    let graphs = Graphs::builtin();
    let undecodable = |e: crate::recording::RecordingError| {
        MediaError::Bad(format!("the file cannot be decoded ({container:?}): {e}"))
    };
    let max_samples = limits.max_seconds as usize * RATE as usize;
    let mut samples = Vec::new();
    let audio = Decoder::open(path, &graphs.decode_audio).map_err(undecodable)?;
    while let Some((_, bytes, _, _)) = audio.next().map_err(undecodable)? {
        samples.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        if samples.len() > max_samples {
            return Err(MediaError::Bad(format!(
                "longer than {} s, the most transcribed",
                limits.max_seconds
            )));
        }
    }
    drop(audio);
    let video = match container {
        Container::WebM | Container::Mp4 => first_picture(path, &graphs),
        _ => None,
    };
    if samples.is_empty() && video.is_none() {
        return Err(MediaError::Bad("the file holds no audio".into()));
    }
    Ok((container, Decoded { samples, video }))
}

/// A file's first video frame: its size and a JPEG poster of it, if it has video.
fn first_picture(path: &Path, graphs: &Graphs) -> Option<(u32, u32, Vec<u8>)> {
    let decoder = Decoder::open(path, &graphs.decode_video).ok()?;
    let (_, i420, w, h) = decoder.next().ok()??;
    let frame = crate::media::VideoFrame::from_i420(w, h, i420, 0).ok()?;
    Some((w, h, poster(&frame)?))
}

/// `frame` as a JPEG at most [`POSTER_MAX_WIDTH`] wide.
fn poster(frame: &crate::media::VideoFrame) -> Option<Vec<u8>> {
    let out_w = frame.width.clamp(1, POSTER_MAX_WIDTH);
    let out_h = (frame.height as u64 * out_w as u64 / frame.width.max(1) as u64).max(1) as u32;
    let mut rgb = vec![0f32; out_w as usize * out_h as usize * 3];
    crate::video::segmentation::downsample_rgb(frame, out_w as usize, out_h as usize, &mut rgb);
    let bytes: Vec<u8> = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode(&bytes, out_w, out_h, image::ExtendedColorType::Rgb8)
        .ok()?;
    Some(jpeg)
}

/// Everything a job produces for the attachment at `path`, and a video's poster (JPEG) for the
/// worker to store.
pub async fn process(
    path: &Path,
    captioning: &Captioning,
    limits: &Limits,
) -> Result<(MediaResult, Option<Vec<u8>>), MediaError> {
    let (owned, bounds) = (path.to_path_buf(), limits.clone());
    let (container, decoded) = tokio::task::spawn_blocking(move || decode(&owned, &bounds))
        .await
        .map_err(|e| MediaError::Transient(format!("decoder stopped: {e}")))??;
    let duration_ms = decoded.samples.len() as i64 * 1000 / RATE as i64;
    let utterances =
        crate::offline::utterances_of(&decoded.samples, RATE, 1, true, &captioning.segmenter)
            .map_err(|e| MediaError::Bad(format!("unsupported audio: {e}")))?;
    let mut words = Vec::new();
    let mut language = String::new();
    for (audio, start_ms, end_ms, voice) in utterances {
        let seconds = (end_ms - start_ms) as f32 / 1000.0;
        let hypothesis = captioning
            .recognizer
            .final_(audio)
            .await
            .map_err(|_| MediaError::Transient("the recognizer stopped".into()))?
            .map_err(|e| MediaError::Transient(format!("recognition failed: {e}")))?;
        if language.is_empty() {
            language = hypothesis.language.clone();
        }
        // The live captions' filter: no text for noise and hallucinations.
        if let Ok(text) = crate::captions::filter::accept(&hypothesis, voice, seconds) {
            words.push(text);
        }
    }
    let (size, poster) = match decoded.video {
        Some((w, h, jpeg)) => (Some((w, h)), Some(jpeg)),
        None => (None, None),
    };
    let result = MediaResult {
        container,
        kind: if size.is_some() { "video" } else { "audio" },
        duration_ms,
        transcript: words.join(" "),
        language,
        waveform: waveform::peaks(&decoded.samples, limits.waveform_bars),
        width: size.map(|(w, _)| w),
        height: size.map(|(_, h)| h),
        poster: None,
    };
    Ok((result, poster))
}
