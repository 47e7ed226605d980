//! The GStreamer side of a recording: one appsrc per video (I420) and per audio (S16LE 48 kHz
//! mono) input, GStreamer's `compositor` and `audiomixer`, x264 (4:2:0, forced: the
//! compositor would otherwise hand x264 4:4:4, which browsers do not play) and AAC into
//! fragmented MP4, whose bytes are handed to a callback as the muxer writes them.
//!
//! Live recordings stamp every buffer with the time the engine handed it over, on the
//! process's monotonic clock mapped to the pipeline's running time: audio and video stay in
//! sync through the frames' own timestamps, and a silent black base keeps the output
//! running while nobody sends anything. File-fed recordings (offline processing, benchmarks)
//! run the same graph without a clock, as fast as the encoder goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::RecordingError;
use super::graphs::{self, Graphs};
use super::layout::Rect;
use crate::livekit::engine::monotonic_us;
use crate::media::VideoFrame;

pub const AUDIO_RATE: i32 = 48_000;

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_kbps: u32,
    /// Real-time input from a meeting; false: file-fed, timestamps given by the caller.
    pub live: bool,
    /// x264 speed preset (`veryfast` in meetings), the `{preset}` of the encoder's graph.
    pub preset: String,
    /// The graph descriptions (`pipelines/`).
    pub graphs: Graphs,
}

impl PipelineSettings {
    /// The settings of `c` with its graphs loaded (not yet checked: see [`Self::check`]).
    pub fn from_config(c: &crate::config::RecordingConfig) -> Result<Self, RecordingError> {
        Ok(Self {
            width: c.width,
            height: c.height,
            fps: c.fps,
            video_bitrate_kbps: c.video_bitrate_kbps,
            audio_bitrate_kbps: c.audio_bitrate_kbps,
            live: true,
            preset: "veryfast".into(),
            graphs: Graphs::load(&c.pipelines_dir, &c.video_encoder)?,
        })
    }

    /// The recording's whole description, rendered from its graphs.
    pub fn description(&self) -> Result<String, RecordingError> {
        let g = &self.graphs;
        let audio_caps = format!("audio/x-raw,format=S16LE,rate={AUDIO_RATE},channels=1");
        let live_inputs = if self.live {
            g.live_inputs.render(&[
                ("fps", &self.fps.to_string()),
                ("samples_per_10ms", &(AUDIO_RATE / 100).to_string()),
                ("audio_caps", &audio_caps),
            ])?
        } else {
            String::new()
        };
        let latency = if self.live {
            LIVE_LATENCY.as_nanos()
        } else {
            0
        };
        g.composite.render(&[
            ("live_inputs", &live_inputs),
            ("latency_ns", &latency.to_string()),
            (
                "video_caps",
                &format!(
                    "video/x-raw,format=I420,width={},height={},framerate={}/1,pixel-aspect-ratio=1/1",
                    self.width, self.height, self.fps
                ),
            ),
            ("video_encoder", &self.video_encoder()?),
            ("audio_caps", &audio_caps),
            ("audio_bps", &(self.audio_bitrate_kbps * 1000).to_string()),
            ("thumb_secs", &THUMBNAIL_EVERY.as_secs().to_string()),
            ("thumb_width", &self.thumbnail_size().0.to_string()),
            ("thumb_height", &self.thumbnail_size().1.to_string()),
        ])
    }

    /// One participant's camera and microphone on their own (per-participant video): the
    /// composite graph on a canvas of half the composite's size (640x360 by default), at half
    /// its bitrate, with that one camera filling it.
    pub fn for_participant_video(&self) -> Self {
        let even = |v: u32| (v / 2).max(64) & !1;
        Self {
            width: even(self.width),
            height: even(self.height),
            video_bitrate_kbps: (self.video_bitrate_kbps / 2).max(100),
            ..self.clone()
        }
    }

    /// One participant's microphone on its own (`participant-audio.gst`), rendered.
    pub fn participant_audio_description(&self) -> Result<String, RecordingError> {
        let audio_caps = format!("audio/x-raw,format=S16LE,rate={AUDIO_RATE},channels=1");
        let (live_base, latency) = if self.live {
            (
                format!(
                    "audiotestsrc is-live=true wave=silence samplesperbuffer={} ! {audio_caps} \
                     ! queue max-size-time=1000000000 max-size-buffers=0 max-size-bytes=0 ! amix.sink_0",
                    AUDIO_RATE / 100
                ),
                LIVE_LATENCY.as_nanos(),
            )
        } else {
            (String::new(), 0)
        };
        self.graphs.participant_audio.render(&[
            ("live_base", &live_base),
            ("latency_ns", &latency.to_string()),
            ("audio_caps", &audio_caps),
            ("audio_bps", &(self.audio_bitrate_kbps * 1000).to_string()),
        ])
    }

    /// The thumbnails' size: [`THUMBNAIL_WIDTH`] wide, the recording's shape, even.
    pub fn thumbnail_size(&self) -> (u32, u32) {
        let height = (THUMBNAIL_WIDTH * self.height / self.width.max(1)).max(2) & !1;
        (THUMBNAIL_WIDTH, height)
    }

    fn video_encoder(&self) -> Result<String, RecordingError> {
        self.graphs.video_encoder.render(&[
            ("preset", &self.preset),
            ("video_kbps", &self.video_bitrate_kbps.to_string()),
            ("keyframe_frames", &(self.fps * 2).to_string()),
        ])
    }

    /// Checks every graph before the first recording needs it: each parses, has the elements
    /// the recorder drives, and the encoder turns test pictures into H.264.
    pub fn check(&self) -> Result<(), RecordingError> {
        init()?;
        // The encoder first: an error then names the setting or file that chose it.
        graphs::probe_encoder(&self.graphs.video_encoder.source, &self.video_encoder()?)?;
        drop(graphs::parse(
            &self.graphs.composite.source,
            &self.description()?,
            COMPOSITE_ELEMENTS,
        )?);
        drop(graphs::parse(
            &self.graphs.participant_audio.source,
            &self.participant_audio_description()?,
            PARTICIPANT_AUDIO_ELEMENTS,
        )?);
        for graph in [&self.graphs.decode_video, &self.graphs.decode_audio] {
            drop(graphs::parse(
                &graph.source,
                &graph.render(&[])?,
                &["src", "out"],
            )?);
        }
        Ok(())
    }
}

/// The elements of the recording graph the recorder drives by name.
const COMPOSITE_ELEMENTS: &[&str] = &["vmix", "amix", "vout", "aout", "out"];
/// The elements of the per-participant audio graph the recorder drives by name.
const PARTICIPANT_AUDIO_ELEMENTS: &[&str] = &["amix", "aout", "out"];
/// A timeline thumbnail this often (the `thumbs` branch), this wide.
pub const THUMBNAIL_EVERY: Duration = Duration::from_secs(10);
pub const THUMBNAIL_WIDTH: u32 = 160;

/// How long the mixers wait for late inputs in live mode: absorbs scheduling delays of a
/// loaded machine between the engine's callback and the appsrc.
const LIVE_LATENCY: Duration = Duration::from_millis(200);
/// Audio queued per input before the oldest is dropped (live) or the pusher waits (file).
const INPUT_QUEUE: Duration = Duration::from_secs(1);
/// AAC encoders start with 1024 samples of priming that decoders play and fragmented MP4
/// here does not trim: the sound would come out that much late, so it goes in that much
/// early (pictures cannot move by less than a frame).
const AAC_PRIMING_US: i64 = 1024 * 1_000_000 / AUDIO_RATE as i64;
/// A live audio input whose arrival drifts this far from its running sample count is
/// re-anchored (after a gap, a mute, a stall); smaller jitter is smoothed away.
const AUDIO_RESYNC_US: i64 = 80_000;
/// How long a file-fed input may wait for room in its queue before the recording is declared
/// stuck (the graph waits for something that never comes) and the push fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Input {
    src: gst_app::AppSrc,
    pad: gst::Pad,
}

struct Shared {
    pipeline: gst::Pipeline,
    /// None in an audio-only graph.
    compositor: Option<gst::Element>,
    audiomixer: gst::Element,
    inputs: Mutex<HashMap<String, Input>>,
    /// monotonic_us() at the pipeline's running time 0 (live only).
    origin_us: i64,
    live: bool,
    failed: Mutex<Option<String>>,
    /// The end of stream reached the sink.
    ended: AtomicBool,
    /// File-fed: how long a push may wait for room (ms).
    stall_timeout_ms: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A recording abandoned on an error stops its streaming threads.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A running recording pipeline (the composite, or one participant's audio on its own).
/// Inputs come and go while it runs.
#[derive(Clone)]
pub struct CompositePipeline {
    shared: Arc<Shared>,
    /// The `thumbs` branch's pictures (empty when the graph has none).
    thumbnails: Arc<super::thumbnails::Thumbnails>,
}

pub fn init() -> Result<(), RecordingError> {
    gst::init().map_err(RecordingError::from)
}

/// Launches `description`, which ends in `appsink name=out`, and hands back that sink.
pub fn launch_to_appsink(
    description: &str,
) -> Result<(gst::Pipeline, gst_app::AppSink), RecordingError> {
    play_to_appsink(graphs::parse(description, description, &["out"])?)
}

/// Starts `pipeline`, which has an `appsink name=out`, and hands back that sink.
pub fn play_to_appsink(
    pipeline: gst::Pipeline,
) -> Result<(gst::Pipeline, gst_app::AppSink), RecordingError> {
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| RecordingError::Pipeline("no appsink named out".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| RecordingError::Pipeline(format!("cannot start: {e}")))?;
    Ok((pipeline, sink))
}

impl CompositePipeline {
    /// Builds and starts the pipeline; `sink` gets the MP4 bytes in order, on a GStreamer thread.
    pub fn start(
        settings: &PipelineSettings,
        sink: impl FnMut(&[u8]) + Send + 'static,
    ) -> Result<Self, RecordingError> {
        init()?;
        let description = settings.description()?;
        let pipeline = graphs::parse(
            &settings.graphs.composite.source,
            &description,
            COMPOSITE_ELEMENTS,
        )?;
        Self::launch(settings, pipeline, sink)
    }

    /// Builds and starts one participant's audio-only graph (`participant-audio.gst`): AAC in
    /// fragmented MP4, bytes to `sink` as for [`Self::start`]. It takes audio inputs only.
    pub fn start_participant_audio(
        settings: &PipelineSettings,
        sink: impl FnMut(&[u8]) + Send + 'static,
    ) -> Result<Self, RecordingError> {
        init()?;
        let description = settings.participant_audio_description()?;
        let pipeline = graphs::parse(
            &settings.graphs.participant_audio.source,
            &description,
            PARTICIPANT_AUDIO_ELEMENTS,
        )?;
        Self::launch(settings, pipeline, sink)
    }

    fn launch(
        settings: &PipelineSettings,
        pipeline: gst::Pipeline,
        sink: impl FnMut(&[u8]) + Send + 'static,
    ) -> Result<Self, RecordingError> {
        let s = settings;
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| RecordingError::Pipeline(format!("no element {n}")))
        };
        for branch in ["vout", "aout"] {
            if let Some(queue) = pipeline.by_name(branch) {
                guard_timestamps(&queue);
            }
        }
        let compositor = pipeline.by_name("vmix");
        let audiomixer = by_name("amix")?;
        let out = by_name("out")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| RecordingError::Pipeline("out is not an appsink".into()))?;
        let (tw, th) = s.thumbnail_size();
        let thumbnails = Arc::new(super::thumbnails::Thumbnails::new(tw, th));
        if let Some(thumbs) = pipeline
            .by_name("thumbs")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        {
            let kept = thumbnails.clone();
            thumbs.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |appsink| {
                        let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buffer) = sample.buffer()
                            && let Ok(map) = buffer.map_readable()
                        {
                            let at_ms = buffer.pts().map_or(0, |t| t.mseconds());
                            kept.push_i420(at_ms, map.as_slice());
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        let sink = Mutex::new(sink);
        out.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        (sink.lock().unwrap_or_else(|e| e.into_inner()))(map.as_slice());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if s.live {
            pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| RecordingError::Pipeline(format!("cannot start: {e}")))?;
        // Running time 0 is the pipeline's base time on its (monotonic) clock: map our own
        // monotonic clock onto it once.
        let origin_us = match (s.live, pipeline.clock()) {
            (true, Some(clock)) => {
                let base = pipeline.base_time().map(|t| t.nseconds()).unwrap_or(0);
                let now = clock.time().nseconds();
                monotonic_us() - (now.saturating_sub(base) / 1_000) as i64
            }
            _ => monotonic_us(),
        };
        let shared = Arc::new(Shared {
            pipeline,
            compositor,
            audiomixer,
            inputs: Mutex::new(HashMap::new()),
            origin_us,
            live: s.live,
            failed: Mutex::new(None),
            ended: AtomicBool::new(false),
            stall_timeout_ms: AtomicU64::new(STALL_TIMEOUT.as_millis() as u64),
        });
        watch_bus(&shared);
        Ok(Self { shared, thumbnails })
    }

    /// The poster and timeline thumbnails taken so far.
    pub fn thumbnails(&self) -> Arc<super::thumbnails::Thumbnails> {
        self.thumbnails.clone()
    }

    /// An error the pipeline reported, if any: the recording has stopped.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failed).clone()
    }

    /// File-fed: how long a push waits for room in its input's queue before it fails
    /// (default [`STALL_TIMEOUT`]).
    pub fn set_stall_timeout(&self, timeout: Duration) {
        self.shared
            .stall_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// File-fed inputs hold at most [`INPUT_QUEUE`]: waits until `src` has room, failing
    /// when the pipeline failed or nothing drained the queue within the stall timeout.
    fn wait_for_room(&self, id: &str, src: &gst_app::AppSrc) -> Result<(), RecordingError> {
        let max = INPUT_QUEUE.as_nanos() as u64;
        let timeout = Duration::from_millis(self.shared.stall_timeout_ms.load(Ordering::Relaxed));
        let started = Instant::now();
        loop {
            if let Some(f) = self.failure() {
                return Err(RecordingError::Pipeline(f));
            }
            if src.property::<u64>("current-level-time") < max {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let message = format!(
                    "the recording is stuck: input {id} could not hand over its data for {timeout:?} \
                     (a mixer or the muxer waits for an input that never comes)"
                );
                tracing::error!(error = %message, "recording pipeline stalled");
                *lock(&self.shared.failed) = Some(message.clone());
                return Err(RecordingError::Pipeline(message));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Microseconds on the monotonic clock -> running time of the pipeline.
    fn running_time(&self, monotonic_us: i64) -> gst::ClockTime {
        gst::ClockTime::from_useconds((monotonic_us - self.shared.origin_us).max(0) as u64)
    }

    /// Running time now (live recordings): the length recorded so far.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros((monotonic_us() - self.shared.origin_us).max(0) as u64)
    }

    fn add_input(
        &self,
        id: &str,
        caps: gst::Caps,
        mixer: &gst::Element,
    ) -> Result<gst_app::AppSrc, RecordingError> {
        let live = self.shared.live;
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(live)
            // Never blocks inside GStreamer (no way out of that wait): file-fed pushes wait
            // for room themselves, with a timeout.
            .block(false)
            .max_time(gst::ClockTime::from_nseconds(INPUT_QUEUE.as_nanos() as u64))
            .max_bytes(0)
            .max_buffers(0)
            .build();
        if live {
            // Late data is dropped rather than queued without bound; the queue is the
            // latency the input can absorb.
            src.set_property_from_str("leaky-type", "downstream");
            src.set_property("min-latency", 0i64);
            src.set_property("max-latency", INPUT_QUEUE.as_nanos() as i64);
        }
        let pad = mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| RecordingError::Pipeline("the mixer gave no input pad".into()))?;
        self.shared.pipeline.add(&src)?;
        src.static_pad("src")
            .ok_or_else(|| RecordingError::Pipeline("appsrc without src pad".into()))?
            .link(&pad)
            .map_err(|e| RecordingError::Pipeline(format!("cannot link {id}: {e:?}")))?;
        src.sync_state_with_parent()?;
        let old = lock(&self.shared.inputs).insert(
            id.to_string(),
            Input {
                src: src.clone(),
                pad,
            },
        );
        if let Some(old) = old {
            self.release(old);
        }
        Ok(src)
    }

    /// A new video input, hidden until placed.
    pub fn add_video(&self, id: &str) -> Result<VideoInput, RecordingError> {
        let caps = i420_caps(16, 16);
        let compositor = self.shared.compositor.clone().ok_or_else(|| {
            RecordingError::Pipeline("an audio-only recording takes no video".into())
        })?;
        let src = self.add_input(id, caps, &compositor)?;
        if let Some(pad) = self.pad(id) {
            pad.set_property("alpha", 0.0f64);
            pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        }
        Ok(VideoInput {
            pipeline: self.clone(),
            id: id.to_string(),
            src,
            size: (16, 16),
            last_pts: None,
            delay_us: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn add_audio(&self, id: &str) -> Result<AudioInput, RecordingError> {
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", AUDIO_RATE)
            .field("channels", 1)
            .field("layout", "interleaved")
            .build();
        let src = self.add_input(id, caps, &self.shared.audiomixer.clone())?;
        Ok(AudioInput {
            pipeline: self.clone(),
            id: id.to_string(),
            src,
            next_pts_us: None,
        })
    }

    fn pad(&self, id: &str) -> Option<gst::Pad> {
        lock(&self.shared.inputs).get(id).map(|i| i.pad.clone())
    }

    /// Shows a video input in `rect` (None: hides it).
    pub fn place(&self, id: &str, rect: Option<Rect>, zorder: u32) {
        let Some(pad) = self.pad(id) else { return };
        match rect {
            Some(r) => {
                pad.set_property("xpos", r.x);
                pad.set_property("ypos", r.y);
                pad.set_property("width", r.width);
                pad.set_property("height", r.height);
                pad.set_property("zorder", zorder + 1);
                pad.set_property("alpha", 1.0f64);
            }
            None => pad.set_property("alpha", 0.0f64),
        }
    }

    /// Ends an input; the mixer forgets it once its end has gone through.
    pub fn remove(&self, id: &str) {
        if let Some(input) = lock(&self.shared.inputs).remove(id) {
            self.release(input);
        }
    }

    fn release(&self, input: Input) {
        let _ = input.src.end_of_stream();
        let shared = self.shared.clone();
        // Removing elements from a playing bin must not happen on a streaming thread.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let _ = input.src.set_state(gst::State::Null);
            if let Some(parent) = input.pad.parent_element() {
                if let Some(srcpad) = input.src.static_pad("src") {
                    let _ = srcpad.unlink(&input.pad);
                }
                parent.release_request_pad(&input.pad);
            }
            let _ = shared.pipeline.remove(&input.src);
        });
    }

    /// Ends the recording: every input and the base sources end, the muxer writes its index,
    /// and the call returns when the last byte went to the sink (or after `timeout`).
    pub fn finish(self, timeout: Duration) -> Result<(), RecordingError> {
        let shared = self.shared;
        for (_, input) in lock(&shared.inputs).drain() {
            let _ = input.src.end_of_stream();
        }
        shared.pipeline.send_event(gst::event::Eos::new());
        let deadline = std::time::Instant::now() + timeout;
        let result = loop {
            if let Some(f) = lock(&shared.failed).clone() {
                break Err(RecordingError::Pipeline(f));
            }
            if shared.ended.load(Ordering::SeqCst) {
                break Ok(());
            }
            if std::time::Instant::now() >= deadline {
                break Err(RecordingError::Pipeline(format!(
                    "the recording did not reach its end within {timeout:?} (an input never \
                     ended, or the muxer waits for a stream that never came); the file is cut \
                     at its last whole fragment"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = shared.pipeline.set_state(gst::State::Null);
        result
    }
}

/// The bus watcher records EOS and errors on the pipeline object.
/// mp4mux fails the whole recording on one encoded buffer without a PTS, which an encoder
/// now and then emits as the first inputs arrive: such a buffer takes its DTS, or follows the
/// previous one; with neither it is dropped (and counted in the log).
fn guard_timestamps(queue: &gst::Element) {
    let Some(pad) = queue.static_pad("src") else {
        return;
    };
    let last_end: Mutex<Option<gst::ClockTime>> = Mutex::new(None);
    let branch = queue.name().to_string();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let mut last = lock(&last_end);
        if buffer.pts().is_none() {
            let Some(pts) = buffer.dts().or(*last) else {
                tracing::warn!(branch = %branch, "dropping an encoded buffer without timestamps");
                return gst::PadProbeReturn::Drop;
            };
            tracing::debug!(branch = %branch, ?pts, "encoded buffer without PTS given one");
            buffer.make_mut().set_pts(pts);
        }
        *last = buffer
            .pts()
            .map(|pts| pts + buffer.duration().unwrap_or_default());
        gst::PadProbeReturn::Ok
    });
}

fn watch_bus(shared: &Arc<Shared>) {
    let Some(bus) = shared.pipeline.bus() else {
        return;
    };
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("rec-bus".into())
        .spawn(move || {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                    continue;
                };
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        shared.ended.store(true, Ordering::SeqCst);
                        return;
                    }
                    gst::MessageView::Error(e) => {
                        let message = format!(
                            "{} ({})",
                            e.error(),
                            e.debug().map(|d| d.to_string()).unwrap_or_default()
                        );
                        tracing::error!(error = %message, "recording pipeline failed");
                        *lock(&shared.failed) = Some(message);
                        return;
                    }
                    gst::MessageView::Warning(w) => {
                        tracing::debug!(warning = %w.error(), "recording pipeline warning");
                    }
                    _ => {}
                }
            }
        })
        .ok();
}

fn i420_caps(width: u32, height: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(0, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One participant's camera or screen share going into the compositor.
pub struct VideoInput {
    pipeline: CompositePipeline,
    id: String,
    src: gst_app::AppSrc,
    size: (u32, u32),
    last_pts: Option<gst::ClockTime>,
    /// Added to every frame's time: lines the picture up with its sound when the receiver
    /// holds audio longer than video (see `features::recording::recorder`).
    delay_us: Arc<AtomicI64>,
}

impl VideoInput {
    /// The delay added to this input's frames, settable while it runs.
    pub fn delay(&self) -> Arc<AtomicI64> {
        self.delay_us.clone()
    }

    /// Pushes a frame that arrived at `arrival_us` (monotonic) — or, file-fed, at
    /// `arrival_us` microseconds into the recording. Size changes are followed.
    pub fn push(&mut self, frame: &VideoFrame, arrival_us: i64) -> Result<(), RecordingError> {
        self.push_for(frame, arrival_us, None)
    }

    /// File-fed: a frame shown from `start_us` for `duration_us` (the compositor holds it that
    /// long, and the recording's video lasts at least to its end).
    pub fn push_span(
        &mut self,
        frame: &VideoFrame,
        start_us: i64,
        duration_us: i64,
    ) -> Result<(), RecordingError> {
        self.push_for(frame, start_us, Some(duration_us))
    }

    fn push_for(
        &mut self,
        frame: &VideoFrame,
        arrival_us: i64,
        duration_us: Option<i64>,
    ) -> Result<(), RecordingError> {
        if frame.data.len() != VideoFrame::i420_len(frame.width, frame.height) {
            return Err(RecordingError::Pipeline(format!(
                "video frame {}x{} has {} bytes",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        if (frame.width, frame.height) != self.size {
            self.size = (frame.width, frame.height);
            self.src
                .set_caps(Some(&i420_caps(frame.width, frame.height)));
        }
        let pts = if self.pipeline.shared.live {
            self.pipeline
                .running_time(arrival_us + self.delay_us.load(Ordering::Relaxed))
        } else {
            gst::ClockTime::from_useconds(arrival_us.max(0) as u64)
        };
        // Timestamps never go backwards within an input.
        if self.last_pts.is_some_and(|last| pts <= last) {
            return Ok(());
        }
        self.last_pts = Some(pts);
        if !self.pipeline.shared.live {
            self.pipeline.wait_for_room(&self.id, &self.src)?;
        }
        let mut buffer = gst::Buffer::from_mut_slice(frame.data.clone());
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(pts);
            if let Some(d) = duration_us {
                b.set_duration(gst::ClockTime::from_useconds(d.max(0) as u64));
            }
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| RecordingError::Pipeline(format!("video push: {e:?}")))
    }
}

/// One microphone (or screen-share audio) going into the mixer: 48 kHz mono S16.
pub struct AudioInput {
    pipeline: CompositePipeline,
    id: String,
    src: gst_app::AppSrc,
    next_pts_us: Option<i64>,
}

impl AudioInput {
    /// Pushes PCM that arrived at `arrival_us` (live, monotonic) or that starts at
    /// `arrival_us` microseconds into the recording (file-fed). Live audio is laid end to end
    /// as long as arrivals stay within jitter of the sample count, so the mix has no clicks.
    pub fn push(&mut self, samples: &[i16], arrival_us: i64) -> Result<(), RecordingError> {
        if samples.is_empty() {
            return Ok(());
        }
        let duration_us = samples.len() as i64 * 1_000_000 / AUDIO_RATE as i64;
        let start_us = if self.pipeline.shared.live {
            let arrival = arrival_us - self.pipeline.shared.origin_us - duration_us;
            match self.next_pts_us {
                Some(next) if (arrival - next).abs() < AUDIO_RESYNC_US => next,
                other => {
                    tracing::debug!(input = %self.id, drift_us = other.map(|n| arrival - n), "live audio re-anchored to its arrival");
                    arrival.max(0)
                }
            }
        } else {
            arrival_us.max(0)
        };
        self.next_pts_us = Some(start_us + duration_us);
        let mut start_us = start_us - AAC_PRIMING_US;
        let mut samples = samples;
        if start_us < 0 {
            // The very beginning falls before the recording's start: drop it.
            let skip = ((-start_us) as u64 * AUDIO_RATE as u64).div_ceil(1_000_000) as usize;
            if skip >= samples.len() {
                return Ok(());
            }
            samples = &samples[skip..];
            start_us += skip as i64 * 1_000_000 / AUDIO_RATE as i64;
        }
        let duration_us = samples.len() as i64 * 1_000_000 / AUDIO_RATE as i64;
        if !self.pipeline.shared.live {
            self.pipeline.wait_for_room(&self.id, &self.src)?;
        }
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_useconds(start_us as u64));
            b.set_duration(gst::ClockTime::from_useconds(duration_us as u64));
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| RecordingError::Pipeline(format!("audio push: {e:?}")))
    }
}
