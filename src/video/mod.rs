//! Virtual backgrounds on I420 camera frames: person segmentation (MediaPipe's selfie models
//! converted to ONNX, run through ONNX Runtime), mask refinement, and compositing over a blurred
//! or replaced background. Transport-free: fed by the engine in a meeting, by images in tests
//! and benchmarks.

use thiserror::Error;

pub mod background;
pub mod background_source;
pub mod composite;
pub mod mask;
pub mod processor;
pub mod segmentation;

pub use segmentation::{SegmentationModel, Segmenter};

#[derive(Debug, Error)]
pub enum VbError {
    #[error(transparent)]
    Runtime(#[from] crate::onnx::RuntimeError),
    #[error(
        "cannot load the segmentation model {path}: {message} (models/fetch_models.sh selfie-segmentation puts it in place)"
    )]
    Model { path: String, message: String },
    #[error("segmentation failed: {0}")]
    Inference(String),
    #[error(transparent)]
    Frame(#[from] crate::media::frames::FrameSizeError),
}
