//! Prometheus text exposition of the process's counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Every counter the pipelines keep, in Prometheus' text format; with the recordings folder,
/// also what waits there for upload.
pub fn render(recordings_dir: Option<&std::path::Path>) -> String {
    let mut out = String::new();
    let mut gauge =
        |name: &str, help: &str, value: u64| metric(&mut out, "gauge", name, help, value);
    use crate::session::recording::{RECORDINGS_ACTIVE, RECORDINGS_STORED};
    gauge(
        "meeting_agent_recordings_active",
        "Rooms being recorded now.",
        RECORDINGS_ACTIVE.load(Ordering::Relaxed),
    );
    gauge(
        "meeting_agent_caption_finals_queued",
        "Final captions waiting for the speech model.",
        crate::captions::recognizer::FINALS_QUEUED.load(Ordering::Relaxed),
    );
    if let Some(dir) = recordings_dir {
        let (spools, bytes) = crate::recording::storage::backlog(dir);
        gauge(
            "meeting_agent_recording_upload_backlog_bytes",
            "Recorded bytes in the spool not yet in storage.",
            bytes,
        );
        gauge(
            "meeting_agent_recording_spools",
            "Recordings in the spool (being written or waiting for storage).",
            spools,
        );
    }
    let mut counter =
        |name: &str, help: &str, value: u64| metric(&mut out, "counter", name, help, value);
    use crate::session::camera::{VB_FRAMES, VB_FRAMES_FAILED, VB_FRAMES_SKIPPED};
    use crate::session::microphone::CLEAN_FRAMES_DROPPED;
    counter(
        "meeting_agent_recordings_stored_total",
        "Recordings this process delivered to storage.",
        RECORDINGS_STORED.load(Ordering::Relaxed),
    );
    if let Ok(engine) = crate::livekit::Engine::get() {
        let s = &engine.stats;
        counter(
            "meeting_agent_engine_audio_frames_total",
            "Audio frames received from the engine.",
            s.audio_frames.load(Ordering::Relaxed),
        );
        counter(
            "meeting_agent_engine_video_frames_total",
            "Video frames received from the engine.",
            s.video_frames.load(Ordering::Relaxed),
        );
        counter(
            "meeting_agent_engine_frames_dropped_total",
            "Frames dropped because a pipeline's queue was full.",
            s.frames_dropped_full.load(Ordering::Relaxed),
        );
    }
    counter(
        "meeting_agent_caption_finals_refused_total",
        "Final captions refused (not transcribed, journaled as untranscribed) because the recognizer's queue was full.",
        crate::captions::recognizer::FINALS_REFUSED.load(Ordering::Relaxed),
    );
    counter(
        "meeting_agent_tracks_ignored_total",
        "Subscribed tracks ignored because a participant or room had its cap of media tracks.",
        crate::session::TRACKS_IGNORED.load(Ordering::Relaxed),
    );
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
    latency_summary(
        &mut out,
        "meeting_agent_vb_latency_ms",
        "Camera frame arrival to its processed frame on the -vb track, since start.",
        &crate::session::camera::VB_LATENCY,
    );
    out
}

/// A latency histogram as a Prometheus summary: its median, 95th and 99th percentiles.
fn latency_summary(
    out: &mut String,
    name: &str,
    help: &str,
    histogram: &crate::media::latency::LatencyHistogram,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.95, 0.99] {
        if let Some(ms) = histogram.quantile_ms(q) {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {ms}");
        }
    }
    let _ = writeln!(out, "{name}_count {}", histogram.count());
}

/// One metric in Prometheus' text format.
fn metric(out: &mut String, kind: &str, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    #[test]
    fn refused_finals_and_ignored_tracks_are_exposed() {
        crate::captions::recognizer::FINALS_REFUSED.fetch_add(3, Ordering::Relaxed);
        crate::session::TRACKS_IGNORED.fetch_add(2, Ordering::Relaxed);
        let out = super::render(None);
        let value = |name: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {out}"))
                .parse()
                .unwrap()
        };
        assert!(value("meeting_agent_caption_finals_refused_total") >= 3);
        assert!(value("meeting_agent_tracks_ignored_total") >= 2);
        value("meeting_agent_caption_finals_queued");
        assert!(out.contains("# TYPE meeting_agent_caption_finals_refused_total counter"));
    }
}
