//! Reads a recording back through GStreamer's demuxer and decoders: the codecs and profile as
//! the file declares them, the mean brightness of every video frame, chosen whole frames,
//! and the mixed audio. Tests and benchmarks check recordings with it (layout, duration,
//! audio/video offset); `meeting-agent recordings check` prints it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::RecordingError;
use crate::media::VideoFrame;

#[derive(Debug, Default, Clone)]
pub struct DecodedRecording {
    /// The H.264 stream's caps as the parser reads them (profile, chroma-format, size).
    pub video_caps: String,
    /// The audio stream's caps before decoding (mpegversion 4 = AAC).
    pub audio_caps: String,
    /// Presentation time (µs) and mean luma (0..255) of each decoded frame.
    pub frames: Vec<(i64, f32)>,
    /// Frames kept whole, nearest to each asked time.
    pub kept: Vec<(i64, VideoFrame)>,
    /// Decoded audio, 48 kHz mono, starting at `audio_start_us`.
    pub audio: Vec<i16>,
    pub audio_start_us: i64,
}

impl DecodedRecording {
    /// End of the last video frame or audio sample, whichever is later.
    pub fn duration(&self) -> Duration {
        let video_end = match self.frames.as_slice() {
            [.., a, b] => b.0 + (b.0 - a.0),
            [a] => a.0,
            [] => 0,
        };
        let audio_end = self.audio_start_us + self.audio.len() as i64 * 1_000_000 / 48_000;
        Duration::from_micros(video_end.max(audio_end).max(0) as u64)
    }

    pub fn caps_field(caps: &str, field: &str) -> Option<String> {
        let needle = format!("{field}=(string)");
        let start = caps.find(&needle)? + needle.len();
        let rest = &caps[start..];
        let end = rest.find([',', ';']).unwrap_or(rest.len());
        Some(rest[..end].trim_matches('"').to_string())
    }
}

#[derive(Default)]
struct Collected {
    video_caps: String,
    audio_caps: String,
    frames: Vec<(i64, f32)>,
    kept: Vec<(i64, VideoFrame)>,
    audio: Vec<i16>,
    audio_start_us: Option<i64>,
}

/// Decodes `path`, keeping whole frames nearest to `keep_at`.
pub fn decode(path: &Path, keep_at: &[Duration]) -> Result<DecodedRecording, RecordingError> {
    super::pipeline::init()?;
    let location = path.to_string_lossy().replace('"', "\\\"");
    let description = format!(
        "filesrc location=\"{location}\" ! qtdemux name=d \
         d.video_0 ! queue ! h264parse ! capsfilter name=hcaps caps=video/x-h264 ! avdec_h264 \
         ! videoconvert ! video/x-raw,format=I420 ! appsink name=v sync=false \
         d.audio_0 ! queue ! capsfilter name=acaps caps=audio/mpeg ! avdec_aac ! audioconvert \
         ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! appsink name=a sync=false"
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecordingError::Pipeline("not a pipeline".into()))?;
    let get = |n: &str| {
        pipeline
            .by_name(n)
            .ok_or_else(|| RecordingError::Pipeline(format!("no element {n}")))
    };
    let collected = Arc::new(Mutex::new(Collected::default()));
    let mut wanted: Vec<i64> = keep_at.iter().map(|d| d.as_micros() as i64).collect();
    wanted.sort();
    {
        let c = collected.clone();
        let hcaps = get("hcaps")?;
        let sink = get("v")?.downcast::<gst_app::AppSink>().expect("appsink");
        let wanted = wanted.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let st = caps.structure(0).ok_or(gst::FlowError::Error)?;
                    let w = st.get::<i32>("width").unwrap_or(0) as u32;
                    let h = st.get::<i32>("height").unwrap_or(0) as u32;
                    let pts = buffer.pts().map(|t| t.useconds() as i64).unwrap_or(0);
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let luma = &map[..(w * h) as usize];
                    let mean = luma.iter().map(|&v| v as u64).sum::<u64>() as f32
                        / luma.len().max(1) as f32;
                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                    if c.video_caps.is_empty()
                        && let Some(caps) = hcaps.static_pad("src").and_then(|p| p.current_caps())
                    {
                        c.video_caps = caps.to_string();
                    }
                    c.frames.push((pts, mean));
                    // Keep the first frame at or after each wanted time.
                    let kept = c.kept.len();
                    if let Some(&t) = wanted.get(kept)
                        && pts >= t
                    {
                        let frame = VideoFrame::from_i420(
                            w,
                            h,
                            map[..VideoFrame::i420_len(w, h)].to_vec(),
                            pts,
                        );
                        if let Ok(frame) = frame {
                            c.kept.push((pts, frame));
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    {
        let c = collected.clone();
        let acaps = get("acaps")?;
        let sink = get("a")?.downcast::<gst_app::AppSink>().expect("appsink");
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                    if c.audio_caps.is_empty()
                        && let Some(caps) = acaps.static_pad("src").and_then(|p| p.current_caps())
                    {
                        c.audio_caps = caps.to_string();
                    }
                    if c.audio_start_us.is_none() {
                        c.audio_start_us = buffer.pts().map(|t| t.useconds() as i64);
                    }
                    c.audio.extend(
                        map.chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]])),
                    );
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| RecordingError::Pipeline(format!("cannot decode {}: {e}", path.display())))?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut error = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(600)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                error = Some(format!("{}: {}", path.display(), e.error()));
                break;
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(e) = error {
        return Err(RecordingError::Pipeline(e));
    }
    let c = std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(DecodedRecording {
        video_caps: c.video_caps,
        audio_caps: c.audio_caps,
        frames: c.frames,
        kept: c.kept,
        audio: c.audio,
        audio_start_us: c.audio_start_us.unwrap_or(0),
    })
}

/// An audio-only recording (a per-participant M4A) decoded: the AAC stream's caps and its
/// sound, 48 kHz mono. [`decode`] wants a video track too.
pub fn decode_audio(path: &Path) -> Result<(String, Vec<i16>), RecordingError> {
    super::pipeline::init()?;
    let location = path.to_string_lossy().replace('"', "\\\"");
    let description = format!(
        "filesrc location=\"{location}\" ! qtdemux name=d \
         d.audio_0 ! queue ! capsfilter name=acaps caps=audio/mpeg ! avdec_aac ! audioconvert \
         ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! appsink name=a sync=false"
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecordingError::Pipeline("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("a")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| RecordingError::Pipeline("no appsink a".into()))?;
    let acaps = pipeline
        .by_name("acaps")
        .ok_or_else(|| RecordingError::Pipeline("no element acaps".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| RecordingError::Pipeline(format!("cannot decode {}: {e}", path.display())))?;
    let (mut caps, mut audio) = (String::new(), Vec::new());
    let result = loop {
        match sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
            Some(sample) => {
                if caps.is_empty()
                    && let Some(c) = acaps.static_pad("src").and_then(|p| p.current_caps())
                {
                    caps = c.to_string();
                }
                if let Some(buffer) = sample.buffer()
                    && let Ok(map) = buffer.map_readable()
                {
                    audio.extend(
                        map.chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]])),
                    );
                }
            }
            None if sink.is_eos() => break Ok(()),
            None => {
                let error = pipeline
                    .bus()
                    .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                    .map(|m| format!("{m:?}"))
                    .unwrap_or_else(|| "no sound within 60 s".into());
                break Err(RecordingError::Pipeline(format!(
                    "{}: {error}",
                    path.display()
                )));
            }
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result.map(|()| (caps, audio))
}

/// Times (µs) where the picture turns bright: mean luma crosses `threshold` upwards.
pub fn flash_onsets(frames: &[(i64, f32)], threshold: f32) -> Vec<i64> {
    frames
        .windows(2)
        .filter(|w| w[0].1 < threshold && w[1].1 >= threshold)
        .map(|w| w[1].0)
        .collect()
}

/// Like `flash_onsets`, for a live recording: the compositor shows each input picture from
/// the first output frame at or after its time, so a flash happened somewhere after the last
/// dark frame and at the latest with the first bright one. The midpoint is that interval's
/// unbiased estimate when the input's frame times fall anywhere between output frames (a
/// sender whose frame rate is not the recording's); the first bright frame alone would put
/// every flash up to a whole frame late.
pub fn flash_onsets_between_frames(frames: &[(i64, f32)], threshold: f32) -> Vec<i64> {
    frames
        .windows(2)
        .filter(|w| w[0].1 < threshold && w[1].1 >= threshold)
        .map(|w| (w[0].0 + w[1].0) / 2)
        .collect()
}

/// Times (µs) where the sound starts: the level over 1 ms windows crosses `threshold`
/// (absolute sample value) after at least 50 ms below it.
pub fn beep_onsets(audio: &[i16], start_us: i64, threshold: i16) -> Vec<i64> {
    const WINDOW: usize = 48;
    let mut onsets = Vec::new();
    let mut quiet_windows = 50;
    for (i, w) in audio.chunks(WINDOW).enumerate() {
        let peak = w.iter().map(|s| s.saturating_abs()).max().unwrap_or(0);
        if peak >= threshold {
            if quiet_windows >= 50 {
                // Refine to the first loud sample of the window.
                let first = w.iter().position(|s| s.saturating_abs() >= threshold);
                let sample = i * WINDOW + first.unwrap_or(0);
                onsets.push(start_us + sample as i64 * 1_000_000 / 48_000);
            }
            quiet_windows = 0;
        } else {
            quiet_windows += 1;
        }
    }
    onsets
}

/// Audio minus video (ms) for each flash paired with the nearest beep within 400 ms.
pub fn av_offsets_ms(flashes: &[i64], beeps: &[i64]) -> Vec<f64> {
    av_offsets_at(flashes, beeps)
        .into_iter()
        .map(|(_, offset)| offset)
        .collect()
}

/// Each flash's time (µs) with its beep's offset (ms, audio minus video), for flashes that
/// have a beep within 400 ms.
pub fn av_offsets_at(flashes: &[i64], beeps: &[i64]) -> Vec<(i64, f64)> {
    flashes
        .iter()
        .filter_map(|&f| {
            beeps
                .iter()
                .map(|&b| b - f)
                .filter(|d| d.abs() <= 400_000)
                .min_by_key(|d| d.abs())
                .map(|d| (f, d as f64 / 1000.0))
        })
        .collect()
}

/// How long after the first flash a live recording's receiver is left to settle: its audio
/// jitter buffer starts deep (~105 ms) and settles (~30 ms) within 4-5 s of a track in every
/// run measured, loaded or not, and the correction follows it a second behind.
pub const LIVE_SYNC_SETTLES_US: i64 = 5_000_000;

/// A/V sync of a live flash-and-beep recording (`devtools::participant::FLASH_BEEP_ARGS`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSync {
    /// (flash time µs, offset ms) before `LIVE_SYNC_SETTLES_US`, and after it.
    pub settling: Vec<(i64, f64)>,
    pub settled: Vec<(i64, f64)>,
    /// Of the settled offsets, ms: the median, the largest in size, and their slope per minute.
    pub median: f64,
    pub worst: f64,
    pub drift_ms_per_min: Option<f64>,
}

/// Pairs each flash (placed between frames) with its beep and judges the settled part;
/// `None` when no flash came after the settling time.
pub fn live_sync(decoded: &DecodedRecording) -> Option<LiveSync> {
    let flashes = flash_onsets_between_frames(&decoded.frames, 100.0);
    let beeps = beep_onsets(&decoded.audio, decoded.audio_start_us, 3000);
    let timed = av_offsets_at(&flashes, &beeps);
    let settled_from = timed.first()?.0 + LIVE_SYNC_SETTLES_US;
    let (settling, settled): (Vec<_>, Vec<_>) =
        timed.into_iter().partition(|&(t, _)| t < settled_from);
    let mut sorted: Vec<f64> = settled.iter().map(|&(_, o)| o).collect();
    sorted.sort_by(f64::total_cmp);
    let median = *sorted.get(sorted.len() / 2)?;
    let worst = sorted.iter().map(|o| o.abs()).fold(0.0, f64::max);
    let drift_ms_per_min = drift_ms_per_min(&settled);
    Some(LiveSync {
        settling,
        settled,
        median,
        worst,
        drift_ms_per_min,
    })
}

/// How fast the A/V offset changes over the recording: the least-squares slope of the
/// offsets against time, in ms per minute (positive: audio falls ever later behind video).
/// `None` with fewer than three offsets or all at one time.
pub fn drift_ms_per_min(offsets: &[(i64, f64)]) -> Option<f64> {
    if offsets.len() < 3 {
        return None;
    }
    let n = offsets.len() as f64;
    let mean_t = offsets.iter().map(|&(t, _)| t as f64 / 6e7).sum::<f64>() / n;
    let mean_o = offsets.iter().map(|&(_, o)| o).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for &(t, o) in offsets {
        let dt = t as f64 / 6e7 - mean_t;
        cov += dt * (o - mean_o);
        var += dt * dt;
    }
    (var > 0.0).then(|| cov / var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_between_frames_is_placed_between_them() {
        let frames = [(0, 16.0), (33_333, 16.0), (66_667, 235.0), (100_000, 235.0)];
        assert_eq!(flash_onsets(&frames, 100.0), vec![66_667]);
        assert_eq!(flash_onsets_between_frames(&frames, 100.0), vec![50_000]);
    }

    #[test]
    fn drift_is_the_slope_of_the_offsets() {
        // 12 ms later every 10 s: 72 ms per minute, whatever the constant part.
        let offsets: Vec<(i64, f64)> = (0..8)
            .map(|i| (i * 10_000_000, 5.0 + 12.0 * i as f64))
            .collect();
        assert!((drift_ms_per_min(&offsets).unwrap() - 72.0).abs() < 1e-9);
        let flat: Vec<(i64, f64)> = (0..8).map(|i| (i * 1_000_000, -7.0)).collect();
        assert_eq!(drift_ms_per_min(&flat), Some(0.0));
        assert_eq!(drift_ms_per_min(&offsets[..2]), None);
    }

    #[test]
    fn onsets_and_offsets() {
        let frames: Vec<(i64, f32)> = (0..90)
            .map(|i| {
                let t = i * 33_333;
                (t, if (t / 1000) % 1000 < 100 { 235.0 } else { 16.0 })
            })
            .collect();
        let flashes = flash_onsets(&frames, 128.0);
        assert_eq!(flashes.len(), 2, "{flashes:?}"); // at 1 s and 2 s; 0 s has no rising edge
        let mut audio = vec![0i16; 48_000 * 3];
        for s in [48_000 + 960, 96_000 + 960] {
            for (k, v) in audio[s..s + 4800].iter_mut().enumerate() {
                *v = if k % 48 < 24 { 8000 } else { -8000 };
            }
        }
        let beeps = beep_onsets(&audio, 0, 2000);
        assert_eq!(beeps, vec![1_020_000, 2_020_000]);
        let offsets = av_offsets_ms(&flashes, &beeps);
        assert_eq!(offsets.len(), 2);
        assert!(
            offsets.iter().all(|o| (*o - 20.0).abs() < 34.0),
            "{offsets:?}"
        );
        assert_eq!(
            DecodedRecording::caps_field(
                "video/x-h264, profile=(string)high, chroma-format=(string)4:2:0",
                "profile"
            )
            .as_deref(),
            Some("high")
        );
    }
}
