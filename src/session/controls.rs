//! Per-participant switches, from the configuration's defaults and the participant's attributes.

use std::collections::HashMap;

use crate::config::{AudioConfig, parse_flag};

/// Attribute turning noise suppression of the participant's microphone on or off.
pub const NS_ENABLED: &str = "ns.enabled";
/// Attribute asking the agent to publish the participant's denoised microphone.
pub const NS_CLEAN_TRACK: &str = "ns.clean_track";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicSettings {
    /// Denoised audio feeds captions and recordings (otherwise the raw microphone does).
    pub denoise: bool,
    /// Publish `<identity>-clean`.
    pub clean_track: bool,
}

impl MicSettings {
    pub fn resolve(defaults: &AudioConfig, attributes: &HashMap<String, String>) -> Self {
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
        }
    }

    /// The denoiser runs when either output needs it.
    pub fn denoiser_on(&self) -> bool {
        self.denoise || self.clean_track
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
            MicSettings::resolve(&defaults, &none),
            MicSettings {
                denoise: true,
                clean_track: false
            }
        );
        let attrs: HashMap<_, _> = [
            (NS_ENABLED.to_string(), "false".to_string()),
            (NS_CLEAN_TRACK.to_string(), "on".to_string()),
        ]
        .into();
        let s = MicSettings::resolve(&defaults, &attrs);
        assert_eq!(
            s,
            MicSettings {
                denoise: false,
                clean_track: true
            }
        );
        assert!(s.denoiser_on());
        let junk: HashMap<_, _> = [(NS_ENABLED.to_string(), "maybe".to_string())].into();
        assert!(
            MicSettings::resolve(&defaults, &junk).denoise,
            "unparseable values keep the default"
        );
    }
}
