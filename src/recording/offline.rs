//! The composite recording of a meeting recorded as per-participant files (`process DIR`):
//! every file decoded by GStreamer, merged in timestamp order into the same recording
//! pipeline the live meetings use, file-fed (as fast as it encodes).
//!
//! Audio-only meetings (microphone files, no camera) are common. The recording still gets a
//! video track: a base input of black frames, hidden under the cameras, runs from the start
//! to the end of the longest file, like the live recording's black base. With no camera at
//! all the video runs at [`AUDIO_ONLY_FPS`], so the black picture costs next to nothing to
//! encode and store. A video track rather than an audio-only MP4: the compositor and muxer
//! need a stream on every pad before they can end (the graph with no video input never
//! wrote a byte and hung), and players, the HLS playlist (segments cut at video fragments)
//! and `recordings check` expect one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::RecordingError;
use super::graphs::{self, Graph};
use super::layout::{Layout, Scene, arrange};
use super::pipeline::{CompositePipeline, PipelineSettings};
use crate::media::VideoFrame;

/// One participant's media: a microphone file, a camera file, or both.
pub struct ParticipantMedia {
    pub identity: String,
    pub audio: Option<PathBuf>,
    pub video: Option<PathBuf>,
}

/// Frame rate of the recording's (black) video when no participant has a camera.
pub const AUDIO_ONLY_FPS: u32 = 5;
/// The base input's frames: tiny (the compositor's black background shows), one per this.
const BASE_FRAME_US: i64 = 200_000;
/// How long a decoder may go without producing anything before it counts as stuck.
const DECODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Decodes one stream of a file to raw I420 frames or 48 kHz mono S16 PCM.
pub(crate) struct Decoder {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    path: PathBuf,
}

impl Decoder {
    pub(crate) fn open(path: &Path, graph: &Graph) -> Result<Self, RecordingError> {
        let cannot = |e: RecordingError| {
            RecordingError::Pipeline(format!("cannot decode {}: {e}", path.display()))
        };
        let pipeline = graphs::parse(&graph.source, &graph.render(&[])?, &["src", "out"])?;
        // The path is a property, never part of the description.
        pipeline
            .by_name("src")
            .expect("checked by parse")
            .set_property("location", path.to_string_lossy().as_ref());
        let (pipeline, sink) = super::pipeline::play_to_appsink(pipeline).map_err(cannot)?;
        Ok(Self {
            pipeline,
            sink,
            path: path.to_path_buf(),
        })
    }

    /// The next buffer: (pts µs, bytes, width, height); `None` at the end. A decoding error,
    /// or nothing at all within [`DECODE_TIMEOUT`], fails instead of waiting for ever.
    pub(crate) fn next(&self) -> Result<Pending, RecordingError> {
        let started = std::time::Instant::now();
        let sample = loop {
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            {
                break sample;
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
            if let Some(bus) = self.pipeline.bus()
                && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(RecordingError::Pipeline(format!(
                    "cannot decode {}: {}",
                    self.path.display(),
                    e.error()
                )));
            }
            if started.elapsed() >= DECODE_TIMEOUT {
                return Err(RecordingError::Pipeline(format!(
                    "decoding {} produced nothing for {DECODE_TIMEOUT:?}",
                    self.path.display()
                )));
            }
        };
        Ok(Self::unpack(&sample))
    }

    fn unpack(sample: &gst::Sample) -> Pending {
        let buffer = sample.buffer()?;
        let (w, h) = sample
            .caps()
            .and_then(|c| c.structure(0))
            .map(|s| {
                (
                    s.get::<i32>("width").unwrap_or(0) as u32,
                    s.get::<i32>("height").unwrap_or(0) as u32,
                )
            })
            .unwrap_or((0, 0));
        let pts = buffer.pts().map(|t| t.useconds() as i64).unwrap_or(0);
        let map = buffer.map_readable().ok()?;
        Some((pts, map.to_vec(), w, h))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A decoded buffer: (pts µs, bytes, width, height).
pub(crate) type Pending = Option<(i64, Vec<u8>, u32, u32)>;

enum Source {
    Video(String, super::pipeline::VideoInput),
    Audio(String, super::pipeline::AudioInput),
}

/// The base input: black from 0 to the end of the longest file.
struct Base {
    input: super::pipeline::VideoInput,
    frame: VideoFrame,
    next_us: i64,
}

impl Base {
    /// Pushes the base's frames that start before `until_us`, each a span (the compositor
    /// holds it that long); `last`: the final one ends at `until_us`, where the video ends.
    fn fill(&mut self, until_us: i64, last: bool) -> Result<(), RecordingError> {
        while self.next_us < until_us {
            let span = if last {
                BASE_FRAME_US.min(until_us - self.next_us)
            } else {
                BASE_FRAME_US
            };
            self.input.push_span(&self.frame, self.next_us, span)?;
            self.next_us += span;
        }
        Ok(())
    }
}

/// Writes the composite recording of `participants` to `out` (fragmented MP4); its length.
pub fn composite(
    participants: &[ParticipantMedia],
    settings: &PipelineSettings,
    layout: Layout,
    out: &Path,
) -> Result<Duration, RecordingError> {
    super::pipeline::init()?;
    let mut settings = settings.clone();
    settings.live = false;
    if participants.iter().all(|p| p.video.is_none()) {
        settings.fps = settings.fps.clamp(1, AUDIO_ONLY_FPS);
    }
    let file = std::sync::Mutex::new(std::fs::File::create(out).map_err(|source| {
        RecordingError::Spool {
            path: out.to_path_buf(),
            source,
        }
    })?);
    let pipeline = CompositePipeline::start(&settings, move |bytes: &[u8]| {
        use std::io::Write;
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(bytes);
        }
    })?;
    let mut sources: Vec<(Decoder, Source, Pending)> = Vec::new();
    let mut cameras = Vec::new();
    // Hidden (never placed): the compositor's black background is what shows.
    let mut base = Base {
        input: pipeline.add_video("base")?,
        frame: VideoFrame::from_i420(16, 16, black_i420(16, 16), 0)
            .map_err(|e| RecordingError::Pipeline(format!("base frame: {e}")))?,
        next_us: 0,
    };
    for p in participants {
        if let Some(path) = &p.video {
            let id = format!("{}-camera", p.identity);
            let decoder = Decoder::open(path, &settings.graphs.decode_video)?;
            let first = decoder.next()?;
            let input = pipeline.add_video(&id)?;
            cameras.push(id.clone());
            sources.push((decoder, Source::Video(id, input), first));
        }
        if let Some(path) = &p.audio {
            let decoder = Decoder::open(path, &settings.graphs.decode_audio)?;
            let first = decoder.next()?;
            let id = format!("{}-mic", p.identity);
            let input = pipeline.add_audio(&id)?;
            sources.push((decoder, Source::Audio(id, input), first));
        }
    }
    let scene = Scene {
        cameras,
        ..Default::default()
    };
    for p in arrange(layout, settings.width, settings.height, &scene) {
        pipeline.place(&p.input, Some(p.rect), 0);
    }
    // Always the earliest pending buffer next: the mixers get their inputs in time order.
    let mut end_us = 0i64;
    while let Some(i) = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.2.as_ref().map(|b| (i, b.0)))
        .min_by_key(|&(_, pts)| pts)
        .map(|(i, _)| i)
    {
        let (decoder, source, pending) = &mut sources[i];
        let (pts, bytes, w, h) = pending.take().expect("chosen because pending");
        // The base goes first up to this buffer: every input gets its data in time order.
        base.fill(pts, false)?;
        match source {
            Source::Video(id, input) => {
                match VideoFrame::from_i420(w, h, bytes, pts) {
                    Ok(frame) => input.push(&frame, pts)?,
                    Err(e) => tracing::warn!(input = %id, error = %e, "video frame skipped"),
                }
                end_us = end_us.max(pts);
            }
            Source::Audio(_, input) => {
                let samples: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                end_us = end_us.max(pts + samples.len() as i64 * 1_000_000 / 48_000);
                input.push(&samples, pts)?;
            }
        }
        *pending = decoder.next()?;
        if pending.is_none() {
            // This file ended: the mixers stop waiting for it.
            let (Source::Video(id, _) | Source::Audio(id, _)) = source;
            pipeline.remove(id);
        }
    }
    drop(sources);
    // The base runs to the end of the longest file, then ends the video.
    base.fill(end_us, true)?;
    drop(base);
    pipeline.remove("base");
    pipeline.finish(Duration::from_secs(300))?;
    Ok(Duration::from_micros(end_us.max(0) as u64))
}

/// An all-black I420 frame (video range).
fn black_i420(width: u32, height: u32) -> Vec<u8> {
    let mut data = vec![128u8; VideoFrame::i420_len(width, height)];
    data[..(width * height) as usize].fill(16);
    data
}
