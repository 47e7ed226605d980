//! Prometheus text exposition of the process's counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Every metric the features registered (the `prometheus` registry), the engine's frame
/// counters, the virtual-background latency summary and, with the recordings folder, what waits
/// there for upload.
pub fn render(recordings_dir: Option<&std::path::Path>) -> String {
    crate::features::register_metrics();
    let mut out = crate::metrics::render_registered();
    if let Some(dir) = recordings_dir {
        let (spools, bytes) = crate::recording::storage::backlog(dir);
        metric(
            &mut out,
            "gauge",
            "meeting_agent_recording_upload_backlog_bytes",
            "Recorded bytes in the spool not yet in storage.",
            bytes,
        );
        metric(
            &mut out,
            "gauge",
            "meeting_agent_recording_spools",
            "Recordings in the spool (being written or waiting for storage).",
            spools,
        );
    }
    if let Ok(engine) = crate::livekit::Engine::get() {
        let s = &engine.stats;
        for (name, help, value) in [
            (
                "meeting_agent_engine_audio_frames_total",
                "Audio frames received from the engine.",
                &s.audio_frames,
            ),
            (
                "meeting_agent_engine_video_frames_total",
                "Video frames received from the engine.",
                &s.video_frames,
            ),
            (
                "meeting_agent_engine_frames_dropped_total",
                "Frames dropped because a pipeline's queue was full.",
                &s.frames_dropped_full,
            ),
        ] {
            metric(
                &mut out,
                "counter",
                name,
                help,
                value.load(Ordering::Relaxed),
            );
        }
    }
    latency_summary(
        &mut out,
        "meeting_agent_vb_latency_ms",
        "Camera frame arrival to its processed frame on the -vb track, since start.",
        &crate::features::backgrounds::camera::VB_LATENCY,
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
    #[test]
    fn refused_finals_and_ignored_tracks_are_exposed() {
        crate::captions::recognizer::FINALS_REFUSED.inc_by(3);
        crate::session::TRACKS_IGNORED.inc_by(2);
        crate::captions::recognizer::FINALS_QUEUED.set(0);
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

    #[test]
    fn deepfilternet_metrics_are_listed_before_any_stream() {
        let out = super::render(None);
        for (name, kind) in [
            ("meeting_agent_deepfilternet_streams", "gauge"),
            ("meeting_agent_deepfilternet_refusals_total", "counter"),
            ("meeting_agent_deepfilternet_errors_total", "counter"),
        ] {
            assert!(
                out.contains(&format!("# TYPE {name} {kind}")),
                "{name}: {out}"
            );
        }
    }
}
