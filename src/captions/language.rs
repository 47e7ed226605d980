//! The language a microphone is captioned in, as a room or a participant asks for it.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown caption language {0:?}: expected a whisper language code (en, de, es, ...), its name, or \"auto\""
)]
pub struct UnknownLanguage(pub String);

/// A choice of spoken language for recognition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptionLanguage {
    /// The recognizer's own (`captions.language` in the configuration).
    #[default]
    Default,
    /// Detected per utterance (multilingual models only).
    Detect,
    /// One language whisper knows, by its code.
    Code(&'static str),
}

impl CaptionLanguage {
    /// `""`/`"default"`, `"auto"`, or a language whisper knows by code (`de`) or name
    /// (`german`). Walks whisper's own table rather than asking it, which logs misses.
    pub fn parse(value: &str) -> Result<Self, UnknownLanguage> {
        let wanted = value.trim().to_ascii_lowercase();
        match wanted.as_str() {
            "" | "default" => return Ok(Self::Default),
            "auto" => return Ok(Self::Detect),
            _ => {}
        }
        (0..=whisper_rs::get_lang_max_id())
            .filter_map(|id| {
                let code = whisper_rs::get_lang_str(id)?;
                let name = whisper_rs::get_lang_str_full(id).unwrap_or_default();
                (code == wanted || name == wanted).then_some(code)
            })
            .next()
            .map(Self::Code)
            .ok_or_else(|| UnknownLanguage(value.to_string()))
    }

    /// The language to decode in: `None` detects. `default` is the recognizer's own choice.
    pub fn resolve<'a>(&'a self, default: Option<&'a str>) -> Option<&'a str> {
        match self {
            Self::Default => default,
            Self::Detect => None,
            Self::Code(code) => Some(code),
        }
    }
}

impl fmt::Display for CaptionLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Detect => f.write_str("auto"),
            Self::Code(code) => f.write_str(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_names_auto_and_default() {
        assert_eq!(
            CaptionLanguage::parse("de"),
            Ok(CaptionLanguage::Code("de"))
        );
        assert_eq!(
            CaptionLanguage::parse(" German "),
            Ok(CaptionLanguage::Code("de"))
        );
        assert_eq!(
            CaptionLanguage::parse("es"),
            Ok(CaptionLanguage::Code("es"))
        );
        assert_eq!(CaptionLanguage::parse("auto"), Ok(CaptionLanguage::Detect));
        assert_eq!(CaptionLanguage::parse(""), Ok(CaptionLanguage::Default));
        for bad in ["xx", "deutsch", "d\0e", "en-US"] {
            assert!(CaptionLanguage::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolves_against_the_recognizers_default() {
        assert_eq!(CaptionLanguage::Default.resolve(Some("en")), Some("en"));
        assert_eq!(CaptionLanguage::Detect.resolve(Some("en")), None);
        assert_eq!(CaptionLanguage::Code("de").resolve(None), Some("de"));
    }
}
