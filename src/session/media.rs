//! One task per subscribed track: it takes the track's frames from the engine once and hands
//! them to the features that asked for them. Audio: engine PCM (48 kHz mono, 10 ms) -> the
//! track's stage (noise suppression) -> every sink. Video: each decoded frame, shared (`Arc`),
//! to every subscriber's bounded queue; a subscriber that falls behind misses frames, never
//! delays the others.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::SessionReport;
use super::video::FrameStats;
use crate::audio::denoise::FRAME;
use crate::livekit::{AudioStream, VideoStream};
use crate::media::analysis::ToneMeter;
use crate::media::{AudioFrame, VideoFrame};

/// One 10 ms frame of a microphone as the meeting hears it.
pub struct HeardAudio<'a> {
    /// 48 kHz mono in i16 scale: denoised unless the participant switched suppression off.
    pub samples: &'a [f32; FRAME],
    /// RNNoise's voice probability (0 when nothing computed it).
    pub voice_probability: f32,
    /// When the engine handed over the input frame (`livekit::engine::monotonic_us`).
    pub arrival_us: i64,
}

/// Takes a microphone's audio. Called on the track's task: must not block.
pub trait AudioSink: Send {
    fn push(&mut self, audio: &HeardAudio);
    /// Whether this sink needs voice probabilities now (then the stage computes them even with
    /// suppression switched off).
    fn wants_voice_probability(&self) -> bool {
        false
    }
    /// The track ended.
    fn finish(&mut self) {}
}

/// Processes a microphone's frames before the sinks hear them.
pub trait AudioStage: Send {
    /// Turns one engine frame into zero or more heard frames. `voice_wanted`: a sink needs
    /// voice probabilities.
    fn process(&mut self, frame: &AudioFrame, voice_wanted: bool, out: &mut dyn FnMut(&HeardAudio));
    /// The track ended: release what the stage published.
    fn finish(self: Box<Self>) -> super::feature::FinishFuture;
}

/// A video track's frames for any number of subscribers, now or later (a recording started
/// while the camera is on).
#[derive(Clone, Default)]
pub struct VideoSource(Arc<Mutex<Vec<mpsc::Sender<Arc<VideoFrame>>>>>);

impl VideoSource {
    /// Frames from now on, at most `queue` waiting; the receiver ends with the track.
    pub fn subscribe(&self, queue: usize) -> mpsc::Receiver<Arc<VideoFrame>> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    fn publish(&self, frame: VideoFrame) {
        let frame = Arc::new(frame);
        let mut subscribers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A full queue skips this frame for that subscriber; a closed one is forgotten.
        subscribers.retain(|tx| {
            !matches!(
                tx.try_send(frame.clone()),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }

    fn close(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Runs a microphone until its stream ends or `stop` fires, then finishes its sinks and stage.
pub(super) async fn run_audio(
    mut stream: AudioStream,
    mut stage: Option<Box<dyn AudioStage>>,
    mut sinks: Vec<Box<dyn AudioSink>>,
    mut stop: watch::Receiver<bool>,
    stats: AudioReport,
) {
    let mut meter = ToneMeter::default();
    let mut raw = [0f32; FRAME];
    loop {
        let frame = tokio::select! {
            frame = stream.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = stop.changed() => break,
        };
        meter.push(&frame);
        if meter.seconds() >= 1.0 {
            stats.send(&meter);
            meter = ToneMeter::default();
        }
        let voice_wanted = sinks.iter().any(|s| s.wants_voice_probability());
        let mut deliver = |audio: &HeardAudio| {
            for sink in sinks.iter_mut() {
                sink.push(audio);
            }
        };
        match stage.as_mut() {
            Some(stage) => stage.process(&frame, voice_wanted, &mut deliver),
            None if frame.samples.len() == FRAME && frame.channels == 1 => {
                for (r, &s) in raw.iter_mut().zip(&frame.samples) {
                    *r = s as f32;
                }
                deliver(&HeardAudio {
                    samples: &raw,
                    voice_probability: 0.0,
                    arrival_us: frame.timestamp_us,
                });
            }
            None => {}
        }
    }
    for sink in sinks.iter_mut() {
        sink.finish();
    }
    if let Some(stage) = stage {
        stage.finish().await;
    }
}

/// Runs a video track until its stream ends or `stop` fires: frame figures, and every frame
/// to the source's subscribers.
pub(super) async fn run_video(
    mut stream: VideoStream,
    source: VideoSource,
    mut stats: FrameStats,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            frame = stream.recv() => match frame {
                Some(frame) => {
                    stats.push(&frame);
                    source.publish(frame);
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    source.close();
}

/// A microphone's level and frequency, once a second, for the session's subscribers.
pub(super) struct AudioReport {
    pub reports: tokio::sync::broadcast::Sender<SessionReport>,
    pub room: String,
    pub participant: String,
    pub sid: String,
}

impl AudioReport {
    fn send(&self, meter: &ToneMeter) {
        let _ = self.reports.send(SessionReport::AudioStats {
            room: self.room.clone(),
            participant: self.participant.clone(),
            sid: self.sid.clone(),
            seconds: meter.seconds(),
            frequency_hz: meter.frequency_hz(),
            rms_dbfs: meter.rms_dbfs(),
        });
    }
}
