//! Per-participant switches, from the configuration's defaults and the participant's attributes.

use std::collections::HashMap;

use crate::config::{AudioConfig, parse_flag};

/// Attribute turning noise suppression of the participant's microphone on or off.
pub const NS_ENABLED: &str = "ns.enabled";
/// Attribute asking the agent to publish the participant's denoised microphone.
pub const NS_CLEAN_TRACK: &str = "ns.clean_track";
/// Attribute switching the participant's captions on or off.
pub const CAPTIONS_ENABLED: &str = "captions.enabled";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicSettings {
    /// Denoised audio feeds captions and recordings (otherwise the raw microphone does).
    pub denoise: bool,
    /// Publish `<identity>-clean`.
    pub clean_track: bool,
    /// Caption this microphone (when the agent has captions at all).
    pub captions: bool,
}

impl MicSettings {
    pub fn resolve(
        defaults: &AudioConfig,
        captions_default: bool,
        attributes: &HashMap<String, String>,
    ) -> Self {
        let flag = |key: &str, default: bool| {
            match attributes.get(key) {
            None => default,
            Some(v) => parse_flag(v).unwrap_or_else(|| {
                tracing::warn!(attribute = key, value = %v, "ignoring attribute: expected true or false");
                default
            }),
        }
        };
        Self {
            denoise: flag(NS_ENABLED, defaults.noise_suppression),
            clean_track: flag(NS_CLEAN_TRACK, defaults.clean_tracks),
            captions: flag(CAPTIONS_ENABLED, captions_default),
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
            MicSettings::resolve(&defaults, true, &none),
            MicSettings {
                denoise: true,
                clean_track: false,
                captions: true
            }
        );
        let attrs: HashMap<_, _> = [
            (NS_ENABLED.to_string(), "false".to_string()),
            (NS_CLEAN_TRACK.to_string(), "on".to_string()),
        ]
        .into();
        let s = MicSettings::resolve(&defaults, false, &attrs);
        assert_eq!(
            s,
            MicSettings {
                denoise: false,
                clean_track: true,
                captions: false
            }
        );
        assert!(s.denoiser_on());
        let junk: HashMap<_, _> = [(NS_ENABLED.to_string(), "maybe".to_string())].into();
        assert!(
            MicSettings::resolve(&defaults, true, &junk).denoise,
            "unparseable values keep the default"
        );
        let off: HashMap<_, _> = [(CAPTIONS_ENABLED.to_string(), "false".to_string())].into();
        assert!(!MicSettings::resolve(&defaults, true, &off).captions);
    }
}
