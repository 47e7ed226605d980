//! vb_ms_360p / vb_ms_720p: a virtual background (blur) on one core, per frame, with the
//! segmentation, mask refinement and compositing shares. The frame is scikit-image's astronaut
//! photograph fitted to 16:9 (the landscape model), processed exactly as a camera's frames are.

use anyhow::Result;

use super::{row, thread_cpu_seconds};
use meeting_agent::config::Config;
use meeting_agent::video::background;
use meeting_agent::video::processor::{Processor, SegmenterPool, VbMode};

pub fn vb(frames: usize) -> Result<()> {
    let config = Config::default();
    let env = meeting_agent::onnx::environment(&config.video.onnxruntime)?;
    let pool = SegmenterPool::new(env, config.video.models_dir.clone())?;
    let photo = image::open(crate::fixtures::dir()?.join("astronaut.png"))?.to_rgb8();
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
        let cmd = format!("meeting-agent-dev bench vb --frames {frames}");
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

/// vb_latency_ms: a participant's 640x360, 30 fps camera asks for blur; the agent (joined
/// directly, virtual backgrounds as configured by default) publishes `<identity>-vb`. Each
/// processed frame's latency, from its arrival from the engine to its hand-over to the `-vb`
/// track, goes into the agent's histogram (`/metrics` `meeting_agent_vb_latency_ms`); this reads
/// its percentiles over `seconds` after a warm-up. With `load_room`, the same agent also
/// captions and records a second room of four speaking, camera-on participants meanwhile.
pub async fn vb_latency(seconds: u64, load_room: bool) -> Result<()> {
    use std::time::Duration;

    use anyhow::Context;

    use crate::PythonParticipant;
    use meeting_agent::features::backgrounds::camera::{VB_FRAMES, VB_FRAMES_SKIPPED, VB_LATENCY};

    let (server, config, scratch) = super::load::recording_agent_setup("vb-latency").await?;
    // The whole product (captions, noise suppression, recording of every room, the store).
    let services = meeting_agent::services::Services::build(&config).await?;
    anyhow::ensure!(
        services.backgrounds.is_some(),
        "virtual backgrounds did not start"
    );
    let session = services.session();
    let mut load = None;
    if load_room {
        let stop = super::meeting::join_with(&server, "bench-load", "agent-load", session.clone())?;
        let speech = crate::fixtures::dir()?.join("wer-set.wav");
        let people = super::load::speaking_room(&server, "bench-load", &speech)?;
        load = Some((stop, people));
    }
    let _stop = super::meeting::join_with(&server, "bench-vb", "agent-vb", session)?;
    let camera = PythonParticipant::spawn(
        &server,
        "bench-vb",
        "cam",
        &[
            "--tone-hz",
            "0",
            "--video",
            "640x360",
            "--fps",
            "30",
            "--attributes",
            "vb.mode=blur",
        ],
    )?;
    // Warm-up: the segmentation session, the track's publication, the encoder.
    let warm_until = tokio::time::Instant::now() + Duration::from_secs(60);
    while VB_FRAMES.get() < 60 {
        anyhow::ensure!(
            tokio::time::Instant::now() < warm_until,
            "no processed frames within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    VB_LATENCY.reset();
    let (frames0, skipped0) = (VB_FRAMES.get(), VB_FRAMES_SKIPPED.get());
    let cpu_before = meeting_agent::captions::threads::read_cpu_times();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let busy = match (
        cpu_before,
        meeting_agent::captions::threads::read_cpu_times(),
    ) {
        (Some(a), Some(b)) => b.busy_since(&a),
        _ => f64::NAN,
    };
    let frames = VB_FRAMES.get() - frames0;
    let skipped = VB_FRAMES_SKIPPED.get() - skipped0;
    let (p50, p95, p99) = (
        VB_LATENCY.quantile_ms(0.5).context("no frame measured")?,
        VB_LATENCY.quantile_ms(0.95).context("no frame measured")?,
        VB_LATENCY.quantile_ms(0.99).context("no frame measured")?,
    );
    camera.stop().await;
    if let Some((_stop, people)) = load.take() {
        for p in people {
            p.stop().await;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "{frames} frames processed in {seconds} s ({:.1}/s), {skipped} skipped; latency p50 {p50} ms, p95 {p95} ms, p99 {p99} ms; machine busy {:.0}%",
        frames as f64 / seconds as f64,
        busy * 100.0
    );
    let suffix = if load_room { "_loaded" } else { "" };
    let cmd = format!(
        "meeting-agent-dev bench vb-latency --seconds {seconds}{}",
        if load_room { " --load-room" } else { "" }
    );
    row(
        &format!("vb_latency_ms{suffix}"),
        p95,
        "ms, p95, frame arrival -> processed frame to the -vb track (640x360, 30 fps, blur)",
        "<= 50",
        &cmd,
    );
    row(
        &format!("vb_latency_p50_ms{suffix}"),
        p50,
        "ms, median",
        "-",
        &cmd,
    );
    row(
        &format!("vb_frames_skipped_pct{suffix}"),
        100.0 * skipped as f64 / (frames + skipped).max(1) as f64,
        "% of camera frames skipped (one waiting at most)",
        "-",
        &cmd,
    );
    Ok(())
}
