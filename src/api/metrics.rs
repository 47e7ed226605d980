//! Prometheus text exposition of the process's counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Every counter the pipelines keep, in Prometheus' text format.
pub fn render() -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    use crate::session::camera::{VB_FRAMES, VB_FRAMES_FAILED, VB_FRAMES_SKIPPED};
    use crate::session::microphone::CLEAN_FRAMES_DROPPED;
    counter(
        "meeting_agent_clean_track_frames_dropped_total",
        "Denoised frames dropped because the clean track could not keep up.",
        CLEAN_FRAMES_DROPPED.load(Ordering::Relaxed),
    );
    counter(
        "meeting_agent_vb_frames_total",
        "Camera frames published with a virtual background.",
        VB_FRAMES.load(Ordering::Relaxed),
    );
    counter(
        "meeting_agent_vb_frames_skipped_total",
        "Camera frames skipped because the previous one was still being processed.",
        VB_FRAMES_SKIPPED.load(Ordering::Relaxed),
    );
    counter(
        "meeting_agent_vb_frames_failed_total",
        "Camera frames sent unprocessed because processing failed.",
        VB_FRAMES_FAILED.load(Ordering::Relaxed),
    );
    out
}
