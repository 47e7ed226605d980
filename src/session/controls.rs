//! Per-participant switches: the configuration's defaults, then the room's metadata (switches for
//! the whole room), then the participant's attributes.

use std::collections::HashMap;

use crate::captions::CaptionLanguage;
use crate::config::{AudioConfig, parse_flag};

pub use crate::protocol::{CAPTIONS_ENABLED, CAPTIONS_LANGUAGE, NS_CLEAN_TRACK, NS_ENABLED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicSettings {
    /// Denoised audio feeds captions and recordings (otherwise the raw microphone does).
    pub denoise: bool,
    /// Publish `<identity>-clean`.
    pub clean_track: bool,
    /// Caption this microphone (when the agent has captions at all).
    pub captions: bool,
    /// The language to recognise this microphone in.
    pub language: CaptionLanguage,
}

/// Switches set for a whole room in its metadata: a JSON object whose keys are the attribute
/// names above (`{"captions.enabled": false, "captions.language": "de"}`), values `true`/`false`
/// or their string forms (the language: a string).
/// Metadata that is not such an object carries no switches (rooms use metadata for other things too).
pub fn room_switches(metadata: &str) -> HashMap<String, String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(metadata)
    else {
        return HashMap::new();
    };
    map.into_iter()
        .filter(|(k, _)| {
            [
                NS_ENABLED,
                NS_CLEAN_TRACK,
                CAPTIONS_ENABLED,
                CAPTIONS_LANGUAGE,
                super::recording::RECORDING_SWITCH,
            ]
            .contains(&k.as_str())
        })
        .filter_map(|(k, v)| match v {
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            serde_json::Value::String(s) => Some((k, s)),
            other => {
                tracing::warn!(key = %k, value = %other, "ignoring room switch: expected true or false");
                None
            }
        })
        .collect()
}

impl MicSettings {
    /// `room`: the room's switches ([`room_switches`]); `attributes`: the participant's, which win.
    pub fn resolve(
        defaults: &AudioConfig,
        captions_default: bool,
        room: &HashMap<String, String>,
        attributes: &HashMap<String, String>,
    ) -> Self {
        let parse = |source: &str, key: &str, value: &String, default: bool| {
            parse_flag(value).unwrap_or_else(|| {
                tracing::warn!(source, key, value = %value, "ignoring switch: expected true or false");
                default
            })
        };
        let flag = |key: &str, default: bool| {
            let default = room
                .get(key)
                .map_or(default, |v| parse("room", key, v, default));
            attributes
                .get(key)
                .map_or(default, |v| parse("participant", key, v, default))
        };
        // The participant's language wins over the room's; one that is not a language is
        // ignored (with a warning) rather than breaking the microphone's captions.
        let language = [("participant", attributes), ("room", room)]
            .into_iter()
            .find_map(|(source, values)| {
                let value = values.get(CAPTIONS_LANGUAGE)?;
                CaptionLanguage::parse(value)
                    .inspect_err(
                        |e| tracing::warn!(source, error = %e, "ignoring caption language"),
                    )
                    .ok()
            })
            .unwrap_or_default();
        Self {
            denoise: flag(NS_ENABLED, defaults.noise_suppression),
            clean_track: flag(NS_CLEAN_TRACK, defaults.clean_tracks),
            captions: flag(CAPTIONS_ENABLED, captions_default),
            language,
        }
    }

    /// The denoiser runs when any output needs it (captions use its voice probability).
    pub fn denoiser_on(&self) -> bool {
        self.denoise || self.clean_track || self.captions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_override_defaults() {
        let defaults = AudioConfig::default();
        let none = HashMap::new();
        assert_eq!(
            MicSettings::resolve(&defaults, true, &none, &none),
            MicSettings {
                denoise: true,
                clean_track: false,
                captions: true,
                language: CaptionLanguage::Default,
            }
        );
        let attrs: HashMap<_, _> = [
            (NS_ENABLED.to_string(), "false".to_string()),
            (NS_CLEAN_TRACK.to_string(), "on".to_string()),
        ]
        .into();
        let s = MicSettings::resolve(&defaults, false, &none, &attrs);
        assert_eq!(
            s,
            MicSettings {
                denoise: false,
                clean_track: true,
                captions: false,
                language: CaptionLanguage::Default,
            }
        );
        assert!(s.denoiser_on());
        let junk: HashMap<_, _> = [(NS_ENABLED.to_string(), "maybe".to_string())].into();
        assert!(
            MicSettings::resolve(&defaults, true, &none, &junk).denoise,
            "unparseable values keep the default"
        );
        let off: HashMap<_, _> = [(CAPTIONS_ENABLED.to_string(), "false".to_string())].into();
        assert!(!MicSettings::resolve(&defaults, true, &none, &off).captions);
    }

    #[test]
    fn room_metadata_switches_a_whole_room_and_attributes_still_win() {
        let defaults = AudioConfig::default();
        let none = HashMap::new();
        let room =
            room_switches(r#"{"captions.enabled": false, "ns.clean_track": "true", "topic": "x"}"#);
        assert_eq!(room.len(), 2, "unrelated keys are not switches: {room:?}");
        let s = MicSettings::resolve(&defaults, true, &room, &none);
        assert!(!s.captions && s.clean_track && s.denoise);
        let back_on: HashMap<_, _> = [(CAPTIONS_ENABLED.to_string(), "true".to_string())].into();
        assert!(MicSettings::resolve(&defaults, true, &room, &back_on).captions);
        let room = room_switches(r#"{"captions.language": "de"}"#);
        assert_eq!(
            MicSettings::resolve(&defaults, true, &room, &none).language,
            CaptionLanguage::Code("de")
        );
        let spanish: HashMap<_, _> = [(CAPTIONS_LANGUAGE.to_string(), "es".to_string())].into();
        assert_eq!(
            MicSettings::resolve(&defaults, true, &room, &spanish).language,
            CaptionLanguage::Code("es"),
            "the participant's language wins"
        );
        let junk: HashMap<_, _> = [(CAPTIONS_LANGUAGE.to_string(), "klingon".to_string())].into();
        assert_eq!(
            MicSettings::resolve(&defaults, true, &room, &junk).language,
            CaptionLanguage::Code("de"),
            "an unknown language falls back to the room's"
        );
        for not_switches in ["", "plain text", "[1, 2]", r#"{"captions.enabled": 3}"#] {
            assert!(room_switches(not_switches).is_empty(), "{not_switches:?}");
        }
    }
}
