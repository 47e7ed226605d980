//! The waiting room: while it is on, a token minted for the meeting lets its holder in without
//! rights (no publishing, no subscribing, no data) and marked waiting, until a host admits or
//! denies them; auto-admit rules and a capacity decide who skips it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest waiting message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Most entries in each auto-admit list.
pub const MAX_RULES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WaitingRoom {
    pub enabled: bool,
    /// Shown to those waiting.
    pub message: String,
    /// Most people admitted at once (agents not counted); beyond it everyone waits.
    pub capacity: Option<u32>,
    /// E-mail domains (identities `name@domain`) admitted at once.
    pub auto_admit_domains: Vec<String>,
    /// Identities admitted at once.
    pub auto_admit_identities: Vec<String>,
    /// Whoever the platform says is signed in (`"signed_in": true` when it mints the token).
    pub auto_admit_signed_in: bool,
}

impl WaitingRoom {
    /// The metadata's value; malformed or unknown fields leave the waiting room off.
    pub fn from_value(value: &Value) -> Self {
        serde_json::from_value::<Self>(value.clone())
            .ok()
            .filter(|w| w.check().is_ok())
            .unwrap_or_default()
    }

    /// Why these settings are refused, if they are.
    pub fn check(&self) -> Result<(), String> {
        if self.message.chars().count() > MAX_MESSAGE_CHARS
            || self.message.chars().any(char::is_control)
        {
            return Err(format!(
                "message: at most {MAX_MESSAGE_CHARS} characters, no control characters"
            ));
        }
        if self.auto_admit_domains.len() > MAX_RULES || self.auto_admit_identities.len() > MAX_RULES
        {
            return Err(format!(
                "at most {MAX_RULES} entries in each auto-admit list"
            ));
        }
        let well_formed = |s: &String| {
            !s.is_empty()
                && s.len() <= 253
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
        };
        if !self.auto_admit_domains.iter().all(well_formed)
            || !self.auto_admit_identities.iter().all(well_formed)
        {
            return Err(
                "auto-admit entries are identities or domains (letters, digits, -_.@:)".into(),
            );
        }
        Ok(())
    }

    /// Whether `identity` skips the waiting room (before the capacity is counted).
    pub fn admits_at_once(&self, identity: &str, signed_in: bool) -> bool {
        if !self.enabled {
            return true;
        }
        let lower = identity.to_ascii_lowercase();
        (self.auto_admit_signed_in && signed_in)
            || self
                .auto_admit_identities
                .iter()
                .any(|i| i.eq_ignore_ascii_case(identity))
            || lower.rsplit_once('@').is_some_and(|(_, domain)| {
                self.auto_admit_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_admit_at_once_and_everyone_else_waits() {
        let room = WaitingRoom {
            enabled: true,
            auto_admit_domains: vec!["Example.com".into()],
            auto_admit_identities: vec!["guest-7".into()],
            auto_admit_signed_in: true,
            ..Default::default()
        };
        assert!(room.admits_at_once("ann@example.COM", false));
        assert!(room.admits_at_once("GUEST-7", false));
        assert!(room.admits_at_once("anyone", true));
        assert!(!room.admits_at_once("ann@example.com.evil", false));
        assert!(!room.admits_at_once("example.com", false));
        assert!(!room.admits_at_once("bob", false));
        assert!(
            WaitingRoom::default().admits_at_once("bob", false),
            "off: everyone"
        );
    }

    #[test]
    fn settings_are_bounded() {
        let ok = WaitingRoom {
            message: "The host will let you in soon.".into(),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        for bad in [
            WaitingRoom {
                message: "x".repeat(MAX_MESSAGE_CHARS + 1),
                ..Default::default()
            },
            WaitingRoom {
                message: "a\u{1b}[2J".into(),
                ..Default::default()
            },
            WaitingRoom {
                auto_admit_domains: vec!["a.com".into(); MAX_RULES + 1],
                ..Default::default()
            },
            WaitingRoom {
                auto_admit_identities: vec!["a b".into()],
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
            let value = serde_json::to_value(&bad).unwrap();
            assert_eq!(WaitingRoom::from_value(&value), WaitingRoom::default());
        }
    }
}
