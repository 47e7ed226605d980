//! Composite recording: every participant's camera and screen share laid out on one canvas
//! (GStreamer's compositor), every microphone mixed (audiomixer), H.264 + AAC in fragmented
//! MP4. Bytes go to a spool file on local disk as the muxer writes them; the storage side
//! (local folder or S3 multipart upload) follows the spool, so nothing is lost when the
//! bucket is unreachable or the agent dies: the spool is uploaded when it can be.

use thiserror::Error;

pub mod graphs;
pub mod hls;
pub mod inspect;
pub mod layout;
pub mod live_hls;
pub mod live_storage;
pub mod meta;
pub mod offline;
pub mod pipeline;
pub mod s3;
pub mod spool;
pub mod storage;
pub mod thumbnails;

pub use layout::{Layout, SpeakerSelector};
pub use live_storage::LiveHlsSettings;
pub use meta::RecordingMeta;

pub use crate::config::StorageKind;

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    #[error("recording pipeline: {0}")]
    Pipeline(String),
    #[error("spool {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("S3 {operation}: {message}")]
    S3 {
        operation: &'static str,
        message: String,
    },
    #[error("recording metadata {path}: {message}")]
    Metadata {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("no recording {0}")]
    NotFound(String),
}

impl From<gstreamer::glib::Error> for RecordingError {
    fn from(e: gstreamer::glib::Error) -> Self {
        Self::Gstreamer(e.to_string())
    }
}

impl From<gstreamer::glib::BoolError> for RecordingError {
    fn from(e: gstreamer::glib::BoolError) -> Self {
        Self::Gstreamer(e.to_string())
    }
}
