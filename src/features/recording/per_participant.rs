//! Per-participant recordings: which microphones a room asked to have recorded on their own
//! (`recording.per_participant` in its metadata, set through `PUT /v1/rooms/{room}/recording`),
//! beside its composite recording. Each selected microphone becomes one M4A file (AAC in
//! fragmented MP4; with `video`, an MP4 with the owner's camera too) from when the track is recorded until it ends (unpublished, its owner
//! left) or the recording stops; a participant who comes back gets a new file.

use serde::{Deserialize, Serialize};

pub use crate::protocol::RECORDING_PER_PARTICIPANT;

/// Identities one request may name, and how long one may be (LiveKit's own limit is lower).
pub const MAX_IDENTITIES: usize = 256;
pub const MAX_IDENTITY_LEN: usize = 256;

/// What a room asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerParticipant {
    /// Record each selected participant's microphone on its own (AAC in fragmented MP4).
    #[serde(default)]
    pub audio: bool,
    /// Their camera too: H.264 + AAC in fragmented MP4 (half the composite's size) instead of
    /// an M4A.
    #[serde(default)]
    pub video: bool,
    /// Only these identities; empty: everyone in the room.
    #[serde(default)]
    pub identities: Vec<String>,
}

impl PerParticipant {
    /// The room's switch as the agent reads it: None when absent, off, or unreadable (warned).
    pub fn from_switch(value: Option<&String>) -> Option<Self> {
        let value = value?;
        if crate::config::parse_flag(value) == Some(false) {
            return None;
        }
        match serde_json::from_str::<Self>(value) {
            Ok(p) if p.audio => Some(p),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(key = RECORDING_PER_PARTICIPANT, %value, error = %e, "ignoring room switch: expected {{\"audio\": true, \"identities\": [...]}}");
                None
            }
        }
    }

    /// Whether `identity`'s microphone is to be recorded on its own.
    pub fn wants(&self, identity: &str) -> bool {
        self.audio && (self.identities.is_empty() || self.identities.iter().any(|i| i == identity))
    }

    /// Why the control API refuses this request, if it does.
    pub fn invalid(&self) -> Option<String> {
        if self.video && !self.audio {
            // A participant's file follows their microphone; the camera joins it.
            return Some("\"video\" comes with \"audio\": ask for both".into());
        }
        if self.identities.len() > MAX_IDENTITIES {
            return Some(format!("at most {MAX_IDENTITIES} identities"));
        }
        if self
            .identities
            .iter()
            .any(|i| i.is_empty() || i.len() > MAX_IDENTITY_LEN)
        {
            return Some(format!("identities are 1 to {MAX_IDENTITY_LEN} bytes long"));
        }
        None
    }
}

/// Microphones as (track sid, identity).
pub type Microphones = Vec<(String, String)>;

/// Whom to start recording on their own now: the microphones (sid, identity) not yet
/// recorded that `selection` wants, in the order given, as far as `limit` allows with
/// `running` already going. The rest are returned second (over the limit).
pub fn to_start<'a>(
    selection: Option<&PerParticipant>,
    microphones: impl IntoIterator<Item = (&'a str, &'a str)>,
    running: &std::collections::HashSet<String>,
    limit: usize,
) -> (Microphones, Microphones) {
    let Some(selection) = selection else {
        return (Vec::new(), Vec::new());
    };
    let mut room = limit.saturating_sub(running.len());
    let (mut start, mut refused) = (Vec::new(), Vec::new());
    for (sid, identity) in microphones {
        if running.contains(sid) || !selection.wants(identity) {
            continue;
        }
        let pair = (sid.to_string(), identity.to_string());
        if room > 0 {
            room -= 1;
            start.push(pair);
        } else {
            refused.push(pair);
        }
    }
    (start, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn switch(s: &str) -> Option<PerParticipant> {
        PerParticipant::from_switch(Some(&s.to_string()))
    }

    #[test]
    fn the_switch_reads_as_a_request_or_as_nothing() {
        assert_eq!(PerParticipant::from_switch(None), None);
        assert_eq!(switch("false"), None);
        assert_eq!(switch("off"), None);
        assert_eq!(switch(r#"{"audio": false}"#), None);
        assert_eq!(switch("not json"), None);
        assert_eq!(switch(r#"{"audio": true, "colour": "red"}"#), None);
        let all = switch(r#"{"audio": true}"#).unwrap();
        assert!(all.wants("anyone") && all.identities.is_empty());
        let some = switch(r#"{"audio": true, "identities": ["alice", "bob"]}"#).unwrap();
        assert!(some.wants("alice") && some.wants("bob") && !some.wants("carol"));
        assert!(!some.wants("alic") && !some.wants("ALICE"));
    }

    #[test]
    fn the_api_refuses_video_alone_and_oversized_requests() {
        let ok = PerParticipant {
            audio: true,
            ..Default::default()
        };
        assert_eq!(ok.invalid(), None);
        let video = PerParticipant {
            video: true,
            ..ok.clone()
        };
        assert_eq!(video.invalid(), None);
        let video_alone = PerParticipant {
            audio: false,
            ..video
        };
        assert!(video_alone.invalid().unwrap().contains("video"));
        let many = PerParticipant {
            identities: (0..=MAX_IDENTITIES).map(|i| i.to_string()).collect(),
            ..ok.clone()
        };
        assert!(many.invalid().is_some());
        let long = PerParticipant {
            identities: vec!["x".repeat(MAX_IDENTITY_LEN + 1)],
            ..ok.clone()
        };
        assert!(long.invalid().is_some());
        let empty = PerParticipant {
            identities: vec![String::new()],
            ..ok
        };
        assert!(empty.invalid().is_some());
    }

    #[test]
    fn selection_starts_the_wanted_microphones_up_to_the_limit() {
        let mics = [
            ("m1", "alice"),
            ("m2", "bob"),
            ("m3", "carol"),
            ("m4", "alice"),
        ];
        let none = HashSet::new();
        // Not asked for: nothing.
        assert_eq!(to_start(None, mics, &none, 16), (vec![], vec![]));
        let pair = |s: &str, i: &str| (s.to_string(), i.to_string());
        // Everyone, within the limit.
        let all = PerParticipant {
            audio: true,
            ..Default::default()
        };
        let (start, refused) = to_start(Some(&all), mics, &none, 16);
        assert_eq!(start.len(), 4);
        assert!(refused.is_empty());
        // Only the named identities (both of alice's microphones).
        let alice = PerParticipant {
            audio: true,
            identities: vec!["alice".into()],
            ..Default::default()
        };
        let (start, _) = to_start(Some(&alice), mics, &none, 16);
        assert_eq!(start, vec![pair("m1", "alice"), pair("m4", "alice")]);
        // The limit counts those already running; the rest are refused, not queued.
        let running: HashSet<String> = ["m1".to_string()].into();
        let (start, refused) = to_start(Some(&all), mics, &running, 2);
        assert_eq!(start, vec![pair("m2", "bob")]);
        assert_eq!(refused, vec![pair("m3", "carol"), pair("m4", "alice")]);
        // At the limit: nothing more starts.
        let (start, refused) = to_start(Some(&all), [("m9", "dave")], &running, 1);
        assert!(start.is_empty());
        assert_eq!(refused, vec![pair("m9", "dave")]);
    }
}
