//! Noise suppression: RNNoise on every microphone, in front of everything else that hears it
//! (captions, recordings), and on request the denoised microphone republished as
//! `<identity>-clean`. `ns.enabled` and `ns.clean_track` switch a participant (or the room);
//! `audio.noise_suppression` and `audio.clean_tracks` are the defaults.

mod stage;

use std::collections::HashMap;

use crate::config::AudioConfig;
use crate::livekit::{TrackKind, TrackSource};
use crate::protocol::{NS_CLEAN_TRACK, NS_ENABLED};
use crate::session::switches::ParticipantSwitches;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature, TrackContext};
pub use stage::{CLEAN_FRAMES_DROPPED, CLEAN_LATENCY_US};

/// One participant's noise-suppression switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsSettings {
    /// The meeting hears denoised audio (otherwise the raw microphone).
    pub denoise: bool,
    /// Publish `<identity>-clean`.
    pub clean_track: bool,
}

impl NsSettings {
    pub fn resolve(
        defaults: &AudioConfig,
        room: &HashMap<String, String>,
        attributes: &HashMap<String, String>,
    ) -> Self {
        use crate::session::switches::flag;
        Self {
            denoise: flag(NS_ENABLED, defaults.noise_suppression, room, attributes),
            clean_track: flag(NS_CLEAN_TRACK, defaults.clean_tracks, room, attributes),
        }
    }
}

/// So `/metrics` lists them before their first event.
pub fn register_metrics() {
    CLEAN_FRAMES_DROPPED.get();
}

pub struct NoiseSuppression {
    pub defaults: AudioConfig,
}

impl Feature for NoiseSuppression {
    fn name(&self) -> &'static str {
        "noise-suppression"
    }

    fn open(&self, _room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        Some(Box::new(RoomNoiseSuppression {
            defaults: self.defaults,
            settings: ParticipantSwitches::default(),
        }))
    }
}

struct RoomNoiseSuppression {
    defaults: AudioConfig,
    /// Each participant's switches, watched by its microphones' stages.
    settings: ParticipantSwitches<NsSettings>,
}

impl RoomNoiseSuppression {
    fn settings_of(&self, room: &RoomContext, identity: &str) -> NsSettings {
        NsSettings::resolve(&self.defaults, &room.switches, room.attributes_of(identity))
    }
}

impl RoomFeature for RoomNoiseSuppression {
    fn on_participant(&mut self, _room: &RoomContext, change: &ParticipantChange) {
        if let ParticipantChange::Left { identity } = change {
            self.settings.remove(identity);
        }
    }

    fn on_track(&mut self, room: &RoomContext, track: &mut TrackContext) {
        // A screen share's sound (a shared video, music) is not a voice in a room's noise:
        // RNNoise would take it apart. It reaches the recording untouched.
        if track.kind != TrackKind::KindAudio || track.source == TrackSource::SourceScreenshareAudio
        {
            return;
        }
        let current = self.settings_of(room, &track.participant);
        let settings = self.settings.watch(&track.participant, current);
        track.set_audio_stage(Box::new(stage::DenoiseStage::new(
            room.room.clone(),
            track.participant.clone(),
            settings,
            room.reports(),
        )));
    }

    fn on_settings(&mut self, room: &RoomContext) {
        self.settings
            .refresh(|identity| self.settings_of(room, identity));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_room_then_participant() {
        let defaults = AudioConfig::default();
        let none = HashMap::new();
        assert_eq!(
            NsSettings::resolve(&defaults, &none, &none),
            NsSettings {
                denoise: true,
                clean_track: false
            }
        );
        let room = crate::session::switches::room_switches(r#"{"ns.clean_track": true}"#);
        assert!(NsSettings::resolve(&defaults, &room, &none).clean_track);
        let off: HashMap<_, _> = [
            (NS_ENABLED.to_string(), "false".to_string()),
            (NS_CLEAN_TRACK.to_string(), "false".to_string()),
        ]
        .into();
        assert_eq!(
            NsSettings::resolve(&defaults, &room, &off),
            NsSettings {
                denoise: false,
                clean_track: false
            }
        );
    }
}
