//! Person segmentation: an I420 frame is sampled down to the model's input (area averaging, so
//! nothing aliases, and converted to RGB in the same pass: no full-size RGB copy), run through the
//! selfie model on one intra-op thread (streams scale across cores, not inside one), and comes
//! back as a person probability per model pixel.

use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use super::VbError;
use crate::media::VideoFrame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationModel {
    /// 256x256: any aspect ratio.
    General,
    /// 144x256: 16:9 camera frames, about half the work.
    Landscape,
}

impl SegmentationModel {
    /// (width, height) of the model's input and output.
    pub fn size(self) -> (usize, usize) {
        match self {
            Self::General => (256, 256),
            Self::Landscape => (256, 144),
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::General => "selfie_segmentation.onnx",
            Self::Landscape => "selfie_segmentation_landscape.onnx",
        }
    }

    /// Where models/fetch_models.sh puts it.
    pub fn default_path(self) -> PathBuf {
        crate::config::cache_dir()
            .join("models")
            .join(self.file_name())
    }

    /// The model for a frame: landscape for wide frames.
    pub fn for_frame(width: u32, height: u32) -> Self {
        if width * 9 >= height * 14 {
            Self::Landscape
        } else {
            Self::General
        }
    }
}

pub struct Segmenter {
    session: Session,
    pub model: SegmentationModel,
    /// NHWC RGB in [0, 1], reused for every frame.
    input: Vec<f32>,
    /// Person probability per model pixel, row-major.
    mask: Vec<f32>,
}

/// BT.601 limited-range YUV to RGB in [0, 1], as WebRTC's I420 is.
#[inline]
fn yuv_to_rgb(y: f32, u: f32, v: f32) -> [f32; 3] {
    let c = (y - 16.0) * (1.0 / 219.0);
    let (d, e) = ((u - 128.0) * (1.0 / 224.0), (v - 128.0) * (1.0 / 224.0));
    [
        (c + 1.402 * e).clamp(0.0, 1.0),
        (c - 0.344_136 * d - 0.714_136 * e).clamp(0.0, 1.0),
        (c + 1.772 * d).clamp(0.0, 1.0),
    ]
}

/// Area-averaged RGB of `frame` at `out_w` x `out_h`, into `rgb` (NHWC).
pub fn downsample_rgb(frame: &VideoFrame, out_w: usize, out_h: usize, rgb: &mut [f32]) {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let cw = VideoFrame::chroma_width(frame.width) as usize;
    let (y_plane, u_plane, v_plane) = frame.planes();
    for oy in 0..out_h {
        let (y0, y1) = (
            oy * h / out_h,
            ((oy + 1) * h / out_h).max(oy * h / out_h + 1),
        );
        for ox in 0..out_w {
            let (x0, x1) = (
                ox * w / out_w,
                ((ox + 1) * w / out_w).max(ox * w / out_w + 1),
            );
            let (mut ys, mut us, mut vs, mut n, mut nc) = (0u32, 0u32, 0u32, 0u32, 0u32);
            for sy in y0..y1 {
                let row = &y_plane[sy * w + x0..sy * w + x1];
                ys += row.iter().map(|&v| v as u32).sum::<u32>();
                n += row.len() as u32;
                if sy % 2 == 0 || y1 - y0 == 1 {
                    let (cx0, cx1) = (x0 / 2, (x1.div_ceil(2)).max(x0 / 2 + 1));
                    let crow = (sy / 2) * cw;
                    us += u_plane[crow + cx0..crow + cx1]
                        .iter()
                        .map(|&v| v as u32)
                        .sum::<u32>();
                    vs += v_plane[crow + cx0..crow + cx1]
                        .iter()
                        .map(|&v| v as u32)
                        .sum::<u32>();
                    nc += (cx1 - cx0) as u32;
                }
            }
            let px = yuv_to_rgb(
                ys as f32 / n as f32,
                us as f32 / nc.max(1) as f32,
                vs as f32 / nc.max(1) as f32,
            );
            rgb[(oy * out_w + ox) * 3..(oy * out_w + ox) * 3 + 3].copy_from_slice(&px);
        }
    }
}

impl Segmenter {
    pub fn new(
        environment: &Environment,
        path: &Path,
        model: SegmentationModel,
    ) -> Result<Self, VbError> {
        let load = |message: String| VbError::Model {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(load("no such file".into()));
        }
        let session = Session::builder(environment)
            .map_err(|e| load(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| load(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load(e.to_string()))?;
        let (w, h) = model.size();
        let wanted = [1i64, h as i64, w as i64, 3];
        let input_shape = session
            .inputs()
            .first()
            .and_then(|i| i.dtype().tensor_shape().map(|s| s.to_vec()));
        if input_shape.as_deref() != Some(&wanted[..]) {
            return Err(load(format!(
                "input shape {input_shape:?}, expected {wanted:?}"
            )));
        }
        Ok(Self {
            session,
            model,
            input: vec![0.0; w * h * 3],
            mask: vec![0.0; w * h],
        })
    }

    /// Person probability per model pixel (row-major, `model.size()`), valid until the next call.
    pub fn segment(&mut self, frame: &VideoFrame) -> Result<&[f32], VbError> {
        frame.check()?;
        let (w, h) = self.model.size();
        downsample_rgb(frame, w, h, &mut self.input);
        let err = |e: ort::Error| VbError::Inference(e.to_string());
        let input =
            TensorRef::from_array_view(([1usize, h, w, 3], &self.input[..])).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input])
            .map_err(err)?;
        let (_, mask) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
        if mask.len() != self.mask.len() {
            return Err(VbError::Inference(format!(
                "mask of {} values, expected {}",
                mask.len(),
                self.mask.len()
            )));
        }
        self.mask.copy_from_slice(mask);
        Ok(&self.mask)
    }
}
