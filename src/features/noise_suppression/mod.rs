//! Noise suppression: RNNoise (or, on request and within a budget, DeepFilterNet3) on every
//! microphone, in front of everything else that hears it (captions, recordings), and on
//! request the denoised microphone republished as `<identity>-clean`. `ns.enabled`,
//! `ns.clean_track` and `ns.model` switch a participant (or the room); `[audio]` has the
//! defaults.

pub mod admission;
pub mod deepfilternet;
mod model_stream;
mod stage;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub use admission::{DFN_ERRORS, DFN_REFUSALS, DFN_STREAMS};
pub use deepfilternet::DeepFilterNet;

use crate::config::{AudioConfig, NsModel};
use crate::livekit::{TrackKind, TrackSource};
use crate::protocol::{NS_CLEAN_TRACK, NS_ENABLED, NS_MODEL};
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
    /// The model asked for (what runs depends on the budget).
    pub model: NsModel,
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
            model: model_switch(defaults.ns_model, room, attributes),
        }
    }
}

/// `ns.model` for one participant: its attribute wins over the room's switch, which wins over
/// `default`. A value naming no model is ignored (as if absent) and logged, boundedly.
pub fn model_switch(
    default: NsModel,
    room: &HashMap<String, String>,
    attributes: &HashMap<String, String>,
) -> NsModel {
    let from_room = model_value("room", room.get(NS_MODEL), default);
    model_value("participant", attributes.get(NS_MODEL), from_room)
}

/// Unknown `ns.model` values logged per process: anyone can set attributes, and settings are
/// resolved again on every change in the room.
const UNKNOWN_MODELS_LOGGED: u32 = 20;

fn model_value(source: &str, value: Option<&String>, default: NsModel) -> NsModel {
    let Some(value) = value else { return default };
    NsModel::parse(value).unwrap_or_else(|| {
        static LOGGED: AtomicU32 = AtomicU32::new(0);
        let n = LOGGED.fetch_add(1, Ordering::Relaxed);
        if n < UNKNOWN_MODELS_LOGGED {
            // At most 32 characters, escaped: the value is whatever a client wrote.
            let shown: String = value.chars().take(32).collect();
            tracing::warn!(
                source,
                value = ?shown,
                len = value.len(),
                default = default.name(),
                last = n + 1 == UNKNOWN_MODELS_LOGGED,
                "ignoring ns.model: expected rnnoise or deepfilternet"
            );
        }
        default
    })
}

/// So `/metrics` lists them before their first event.
pub fn register_metrics() {
    CLEAN_FRAMES_DROPPED.get();
    DFN_STREAMS.get();
    DFN_REFUSALS.get();
    DFN_ERRORS.get();
}

pub struct NoiseSuppression {
    pub defaults: AudioConfig,
    /// DeepFilterNet for the process, when loaded; without it `deepfilternet` gets RNNoise.
    pub deepfilter: Option<Arc<DeepFilterNet>>,
}

impl Feature for NoiseSuppression {
    fn name(&self) -> &'static str {
        "noise-suppression"
    }

    fn open(&self, _room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        Some(Box::new(RoomNoiseSuppression {
            defaults: self.defaults,
            deepfilter: self.deepfilter.clone(),
            settings: ParticipantSwitches::default(),
        }))
    }
}

struct RoomNoiseSuppression {
    defaults: AudioConfig,
    deepfilter: Option<Arc<DeepFilterNet>>,
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
            stage::StageContext {
                room: room.room.clone(),
                participant: track.participant.clone(),
                sid: track.sid.clone(),
                reports: room.reports(),
            },
            settings,
            self.deepfilter.clone(),
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
                clean_track: false,
                model: NsModel::Rnnoise,
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
                clean_track: false,
                model: NsModel::Rnnoise,
            }
        );
    }

    fn attrs(value: &str) -> HashMap<String, String> {
        [(NS_MODEL.to_string(), value.to_string())].into()
    }

    #[test]
    fn the_model_follows_defaults_then_room_then_participant() {
        let none = HashMap::new();
        let rnnoise = NsModel::Rnnoise;
        let dfn = NsModel::Deepfilternet;
        assert_eq!(model_switch(rnnoise, &none, &none), rnnoise);
        assert_eq!(model_switch(dfn, &none, &none), dfn);
        let room = crate::session::switches::room_switches(r#"{"ns.model": "deepfilternet"}"#);
        assert_eq!(model_switch(rnnoise, &room, &none), dfn);
        assert_eq!(model_switch(rnnoise, &room, &attrs("rnnoise")), rnnoise);
        assert_eq!(model_switch(rnnoise, &none, &attrs(" DeepFilterNet ")), dfn);
        let defaults = AudioConfig {
            ns_model: dfn,
            ..Default::default()
        };
        assert_eq!(NsSettings::resolve(&defaults, &none, &none).model, dfn);
    }

    #[test]
    fn hostile_model_values_fall_back_to_what_applies_without_them() {
        let none = HashMap::new();
        let room = crate::session::switches::room_switches(r#"{"ns.model": "deepfilternet"}"#);
        let long = "deepfilternet".repeat(10_000);
        for hostile in [
            "",
            " ",
            "rnnoise2",
            "deep filter net",
            "déepfilternet",
            "ｄｅｅｐｆｉｌｔｅｒｎｅｔ",
            "rnnoise\u{0}",
            "\u{202e}rnnoise",
            long.as_str(),
        ] {
            let bad = attrs(hostile);
            assert_eq!(
                model_switch(NsModel::Rnnoise, &none, &bad),
                NsModel::Rnnoise,
                "{hostile:?}"
            );
            assert_eq!(
                model_switch(NsModel::Rnnoise, &room, &bad),
                NsModel::Deepfilternet,
                "the room's choice stands under {hostile:?}"
            );
        }
        let bad_room = crate::session::switches::room_switches(r#"{"ns.model": "☃"}"#);
        assert_eq!(
            model_switch(NsModel::Deepfilternet, &bad_room, &none),
            NsModel::Deepfilternet
        );
        // A number is not a switch value at all.
        assert!(crate::session::switches::room_switches(r#"{"ns.model": 3}"#).is_empty());
    }
}
