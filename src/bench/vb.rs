//! vb_ms_360p / vb_ms_720p: a virtual background (blur) on one core, per frame, with the
//! segmentation, mask refinement and compositing shares. The frame is scikit-image's astronaut
//! photograph fitted to 16:9 (the landscape model), processed exactly as a camera's frames are.

use anyhow::Result;

use super::{row, thread_cpu_seconds};
use crate::config::Config;
use crate::video::background;
use crate::video::processor::{Processor, SegmenterPool, VbMode};

pub fn vb(frames: usize) -> Result<()> {
    let config = Config::default();
    let env = crate::onnx::environment(&config.video.onnxruntime)?;
    let pool = SegmenterPool::new(env, config.video.models_dir.clone())?;
    let photo = image::open(crate::devtools::fixtures::dir()?.join("astronaut.png"))?.to_rgb8();
    for (name, w, h) in [("360p", 640u32, 360u32), ("720p", 1280, 720)] {
        let source = background::fit(&photo, w, h);
        let mut processor = Processor::new(pool.clone());
        let mut frame = source.clone();
        // Warm up: session allocation, caches.
        for _ in 0..5 {
            frame.data.copy_from_slice(&source.data);
            processor.process(&mut frame, &VbMode::Blur(6))?;
        }
        let (mut seg, mut refine, mut composite) = (0u64, 0u64, 0u64);
        let started = thread_cpu_seconds();
        for _ in 0..frames {
            frame.data.copy_from_slice(&source.data);
            let t = processor.process(&mut frame, &VbMode::Blur(6))?;
            (seg, refine, composite) = (
                seg + t.segment_us,
                refine + t.refine_us,
                composite + t.composite_us,
            );
        }
        let total_ms = (thread_cpu_seconds() - started) * 1000.0 / frames as f64;
        let per = |us: u64| us as f64 / 1000.0 / frames as f64;
        eprintln!(
            "{name}: {total_ms:.2} ms CPU per frame; segmentation {:.2} ms, refinement {:.2} ms, composite {:.2} ms (wall)",
            per(seg),
            per(refine),
            per(composite)
        );
        let cmd = format!("meeting-agent bench vb --frames {frames}");
        let target = if name == "360p" { "<= 8" } else { "<= 16" };
        row(
            &format!("vb_ms_{name}"),
            total_ms,
            "ms CPU per frame, one core (blur)",
            target,
            &cmd,
        );
        row(
            &format!("vb_segment_ms_{name}"),
            per(seg),
            "ms per frame",
            "-",
            &cmd,
        );
        row(
            &format!("vb_refine_ms_{name}"),
            per(refine),
            "ms per frame",
            "-",
            &cmd,
        );
        row(
            &format!("vb_composite_ms_{name}"),
            per(composite),
            "ms per frame",
            "-",
            &cmd,
        );
    }
    Ok(())
}
