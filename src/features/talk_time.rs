//! Talk time: how long each participant spoke, from the voice probability of what the meeting
//! hears, logged when the room ends and counted in `meeting_agent_talk_seconds_total`. The
//! smallest complete room feature (this file, and its registration in `features/mod.rs`):
//! ARCHITECTURE.md walks through it as the example of adding one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus::IntCounter;

use crate::livekit::{TrackKind, TrackSource};
use crate::session::feature::FinishFuture;
use crate::session::media::{AudioSink, HeardAudio};
use crate::session::{Feature, RoomContext, RoomFeature, TrackContext};

/// A frame counts as speech above this voice probability (RNNoise's).
const SPEECH: f32 = 0.6;

static TALK_SECONDS: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_talk_seconds_total",
        "Seconds participants spoke, summed over rooms.",
    )
});

/// So `/metrics` lists it before the first room ends.
pub fn register_metrics() {
    TALK_SECONDS.get();
}

pub struct TalkTime;

impl Feature for TalkTime {
    fn name(&self) -> &'static str {
        "talk-time"
    }

    fn open(&self, _room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        Some(Box::new(RoomTalkTime::default()))
    }
}

/// Speech frames (10 ms) per participant, counted on their microphones' tasks.
#[derive(Default)]
struct RoomTalkTime(HashMap<String, Arc<AtomicU64>>);

impl RoomFeature for RoomTalkTime {
    fn on_track(&mut self, _room: &RoomContext, track: &mut TrackContext) {
        // A screen share's sound is not its presenter speaking.
        if track.kind == TrackKind::KindAudio && track.source != TrackSource::SourceScreenshareAudio
        {
            let frames = self.0.entry(track.participant.clone()).or_default();
            track.add_audio_sink(Box::new(SpeechCounter(frames.clone())));
        }
    }

    fn finish(self: Box<Self>, room: &mut RoomContext) -> FinishFuture {
        for (identity, frames) in &self.0 {
            let seconds = frames.load(Ordering::Relaxed) / 100;
            TALK_SECONDS.inc_by(seconds);
            tracing::info!(room = %room.name, %identity, seconds, "talk time");
        }
        Box::pin(async {})
    }
}

/// Counts a microphone's speech frames (10 ms each) into its atomic; call quality counts each
/// participant's speaking time with it too.
pub(crate) struct SpeechCounter(pub(crate) Arc<AtomicU64>);

impl AudioSink for SpeechCounter {
    fn push(&mut self, audio: &HeardAudio) {
        if audio.voice_probability > SPEECH {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Speech is found by RNNoise's voice probability, also where suppression is off.
    fn wants_voice_probability(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_heard_as_speech() {
        let frames = Arc::new(AtomicU64::new(0));
        let mut counter = SpeechCounter(frames.clone());
        let samples = [0f32; crate::audio::denoise::FRAME];
        for voice_probability in [0.9, 0.1, 0.7, 0.6] {
            counter.push(&HeardAudio {
                samples: &samples,
                voice_probability,
                arrival_us: 0,
            });
        }
        assert_eq!(frames.load(Ordering::Relaxed), 2);
    }
}
