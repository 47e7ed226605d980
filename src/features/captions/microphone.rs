//! One microphone's captions: its heard frames arrive through a bounded queue (the track's task
//! never waits for captions), and a task of its own feeds them to the speaker's captions, takes
//! interim and speculative results as they come back and follows the participant's switches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus::IntCounter;
use tokio::sync::{mpsc, watch};

use super::CaptionSettings;
use crate::audio::denoise::FRAME;
use crate::captions::speaker::{CaptionContext, SpeakerCaptions};
use crate::session::media::{AudioSink, HeardAudio};

/// Frames waiting for the caption task: 3 s, far more than it ever lags behind.
pub(super) const QUEUE_FRAMES: usize = 300;

/// Frames the caption task could not take in time (its queue was full).
pub static CAPTION_FRAMES_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_caption_frames_dropped_total",
        "Microphone frames captions missed because their queue was full.",
    )
});

type Frame = (Box<[f32; FRAME]>, f32);

/// The microphone's side: copies each heard frame into the queue.
pub(super) struct CaptionSink {
    frames: mpsc::Sender<Frame>,
    /// Whether captions are on for this participant now.
    active: Arc<AtomicBool>,
}

impl CaptionSink {
    pub(super) fn new(frames: mpsc::Sender<Frame>, active: Arc<AtomicBool>) -> Self {
        Self { frames, active }
    }
}

impl AudioSink for CaptionSink {
    fn push(&mut self, audio: &HeardAudio) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        if self
            .frames
            .try_send((Box::new(*audio.samples), audio.voice_probability))
            .is_err()
        {
            CAPTION_FRAMES_DROPPED.inc();
        }
    }

    fn wants_voice_probability(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }
}

pub(super) struct MicrophoneCaptions {
    pub ctx: CaptionContext,
    pub participant: String,
    pub sid: String,
    /// When this track started, relative to the agent joining the room.
    pub origin_ms: u64,
    pub active: Arc<AtomicBool>,
}

impl MicrophoneCaptions {
    /// Until the track ends (its frames close) or the participant leaves (its settings close);
    /// then the utterance in progress is finalised.
    pub(super) async fn run(
        self,
        mut frames: mpsc::Receiver<Frame>,
        mut settings: watch::Receiver<CaptionSettings>,
    ) {
        let mut current = *settings.borrow_and_update();
        let mut captions = self.captioner(current);
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some((samples, voice_probability)) => {
                        if let Some(c) = captions.as_mut() {
                            c.push(&samples[..], voice_probability);
                        }
                    }
                    None => break,
                },
                ready = async { captions.as_mut().expect("guarded").next_result().await }, if captions.as_ref().is_some_and(|c| c.awaits_result()) => {
                    if let Some(c) = captions.as_mut() {
                        c.on_result(ready);
                    }
                }
                changed = settings.changed() => {
                    if changed.is_err() {
                        break; // the participant left or the room ended
                    }
                    current = *settings.borrow_and_update();
                    self.active.store(current.enabled, Ordering::Relaxed);
                    if !current.enabled {
                        if let Some(mut c) = captions.take() {
                            c.finish();
                        }
                    } else if let Some(c) = captions.as_mut() {
                        c.set_language(current.language);
                    } else {
                        captions = self.captioner(current);
                    }
                    tracing::info!(participant = %self.participant, captions = current.enabled, language = %current.language, "caption settings");
                }
            }
        }
        self.active.store(false, Ordering::Relaxed);
        if let Some(mut c) = captions {
            c.finish();
        }
    }

    fn captioner(&self, settings: CaptionSettings) -> Option<SpeakerCaptions> {
        settings.enabled.then(|| {
            SpeakerCaptions::new(
                self.ctx.clone(),
                &self.participant,
                &self.sid,
                self.origin_ms,
                settings.language,
            )
        })
    }
}
