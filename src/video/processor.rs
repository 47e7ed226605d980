//! One camera's virtual background: segment (the model chosen by the frame's shape), refine the
//! mask, composite. Segmentation sessions come from a pool shared by every camera of the process
//! and go back when the camera ends, so sessions are made once, not per stream.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;
use ort::environment::Environment;

use super::composite::Compositor;
use super::mask::MaskRefiner;
use super::{SegmentationModel, Segmenter, VbError, background};
use crate::media::VideoFrame;

#[derive(Debug, Clone, PartialEq)]
pub enum VbMode {
    Off,
    /// Blur strength 1..=10.
    Blur(u8),
    Image(Arc<RgbImage>),
}

/// Microseconds spent per stage on one frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub segment_us: u64,
    pub refine_us: u64,
    pub composite_us: u64,
}

/// Segmentation sessions for the whole process.
pub struct SegmenterPool {
    environment: Environment,
    dir: PathBuf,
    free: Mutex<Vec<Segmenter>>,
}

impl SegmenterPool {
    /// Checks both models load now, so a missing or corrupt model is an error at start.
    pub fn new(environment: Environment, dir: PathBuf) -> Result<Arc<Self>, VbError> {
        let pool = Arc::new(Self {
            environment,
            dir,
            free: Mutex::default(),
        });
        for model in [SegmentationModel::General, SegmentationModel::Landscape] {
            let s = pool.take(model)?;
            pool.give_back(s);
        }
        Ok(pool)
    }

    fn take(&self, model: SegmentationModel) -> Result<Segmenter, VbError> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = free.iter().position(|s| s.model == model) {
            return Ok(free.swap_remove(i));
        }
        drop(free);
        Segmenter::new(&self.environment, &self.dir.join(model.file_name()), model)
    }

    fn give_back(&self, segmenter: Segmenter) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(segmenter);
    }
}

pub struct Processor {
    pool: Arc<SegmenterPool>,
    segmenter: Option<Segmenter>,
    refiner: MaskRefiner,
    compositor: Compositor,
    /// The image background fitted to the current frame size.
    fitted: Option<(Arc<RgbImage>, VideoFrame)>,
}

impl Drop for Processor {
    fn drop(&mut self) {
        if let Some(s) = self.segmenter.take() {
            self.pool.give_back(s);
        }
    }
}

impl Processor {
    pub fn new(pool: Arc<SegmenterPool>) -> Self {
        Self {
            pool,
            segmenter: None,
            refiner: MaskRefiner::default(),
            compositor: Compositor::default(),
            fitted: None,
        }
    }

    /// Applies `mode` to `frame` in place. On an error the frame is as it came.
    pub fn process(&mut self, frame: &mut VideoFrame, mode: &VbMode) -> Result<Timings, VbError> {
        let mut timings = Timings::default();
        if *mode == VbMode::Off {
            return Ok(timings);
        }
        frame.check()?;
        let model = SegmentationModel::for_frame(frame.width, frame.height);
        if self.segmenter.as_ref().is_none_or(|s| s.model != model) {
            if let Some(old) = self.segmenter.take() {
                self.pool.give_back(old);
            }
            self.segmenter = Some(self.pool.take(model)?);
            self.refiner.reset();
        }
        let started = Instant::now();
        let segmenter = self.segmenter.as_mut().expect("set above");
        let mask = segmenter.segment(frame)?;
        let segmented = Instant::now();
        let (mw, mh) = model.size();
        let (w, h) = (frame.width as usize, frame.height as usize);
        self.refiner.refine(mask, mw, mh, w, h);
        let refined = Instant::now();
        match mode {
            VbMode::Blur(strength) => {
                self.compositor
                    .blur(frame, &self.refiner.luma, &self.refiner.chroma, *strength)
            }
            VbMode::Image(image) => {
                let stale = self.fitted.as_ref().is_none_or(|(img, f)| {
                    !Arc::ptr_eq(img, image) || (f.width, f.height) != (frame.width, frame.height)
                });
                if stale {
                    self.fitted = Some((
                        image.clone(),
                        background::fit(image, frame.width, frame.height),
                    ));
                }
                let (_, bg) = self.fitted.as_ref().expect("set above");
                Compositor::replace(frame, &self.refiner.luma, &self.refiner.chroma, bg);
            }
            VbMode::Off => unreachable!("returned above"),
        }
        timings.segment_us = (segmented - started).as_micros() as u64;
        timings.refine_us = (refined - segmented).as_micros() as u64;
        timings.composite_us = refined.elapsed().as_micros() as u64;
        Ok(timings)
    }
}
