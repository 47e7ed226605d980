//! Switches: the configuration's defaults, then the room's metadata (switches for the whole
//! room), then the participant's attributes. Each feature resolves its own with these helpers.

use std::collections::HashMap;

use tokio::sync::watch;

use crate::config::parse_flag;
use crate::protocol::{RECORDING_PER_PARTICIPANT, ROOM_SWITCHES};

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
        .filter(|(k, _)| ROOM_SWITCHES.contains(&k.as_str()) || k == RECORDING_PER_PARTICIPANT)
        .filter_map(|(k, v)| match v {
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            serde_json::Value::String(s) => Some((k, s)),
            // Per-participant recordings: an object, read by the recording feature.
            serde_json::Value::Object(_) if k == RECORDING_PER_PARTICIPANT => {
                Some((k, v.to_string()))
            }
            other => {
                tracing::warn!(key = %k, value = %other, "ignoring room switch: expected true or false");
                None
            }
        })
        .collect()
}

/// A flag for one participant: its attribute wins over the room's switch, which wins over
/// `default`. A value that is not a flag is ignored (with a warning).
pub fn flag(
    key: &str,
    default: bool,
    room: &HashMap<String, String>,
    attributes: &HashMap<String, String>,
) -> bool {
    let from_room = flag_value("room", key, room.get(key), default);
    flag_value("participant", key, attributes.get(key), from_room)
}

/// `value` read as a flag, or `default` when it is absent or not a flag (`source` names where
/// it came from in the warning).
pub fn flag_value(source: &str, key: &str, value: Option<&String>, default: bool) -> bool {
    let Some(value) = value else { return default };
    parse_flag(value).unwrap_or_else(|| {
        tracing::warn!(source, key, value = %value, "ignoring switch: expected true or false");
        default
    })
}

/// A feature's resolved switches per participant, watched by that participant's tasks. Removing
/// a participant closes its watchers: their tasks see the channel close and finish.
pub struct ParticipantSwitches<T>(HashMap<String, watch::Sender<T>>);

impl<T> Default for ParticipantSwitches<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<T: Clone + PartialEq> ParticipantSwitches<T> {
    /// A watcher of `identity`'s switches (`current` for its first one).
    pub fn watch(&mut self, identity: &str, current: T) -> watch::Receiver<T> {
        self.0
            .entry(identity.to_string())
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }

    /// Resolves every participant's switches again; watchers hear of those that changed.
    pub fn refresh(&self, mut resolve: impl FnMut(&str) -> T) {
        for (identity, tx) in &self.0 {
            let value = resolve(identity);
            tx.send_if_modified(|current| {
                let changed = *current != value;
                *current = value;
                changed
            });
        }
    }

    /// The participant left.
    pub fn remove(&mut self, identity: &str) {
        self.0.remove(identity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CAPTIONS_ENABLED, NS_CLEAN_TRACK, NS_ENABLED};

    #[test]
    fn attributes_win_over_the_room_which_wins_over_defaults() {
        let none = HashMap::new();
        assert!(flag(NS_ENABLED, true, &none, &none));
        let attrs: HashMap<_, _> = [
            (NS_ENABLED.to_string(), "false".to_string()),
            (NS_CLEAN_TRACK.to_string(), "on".to_string()),
        ]
        .into();
        assert!(!flag(NS_ENABLED, true, &none, &attrs));
        assert!(flag(NS_CLEAN_TRACK, false, &none, &attrs));
        let junk: HashMap<_, _> = [(NS_ENABLED.to_string(), "maybe".to_string())].into();
        assert!(
            flag(NS_ENABLED, true, &none, &junk),
            "unparseable values keep the default"
        );
        let room =
            room_switches(r#"{"captions.enabled": false, "ns.clean_track": "true", "topic": "x"}"#);
        assert_eq!(room.len(), 2, "unrelated keys are not switches: {room:?}");
        assert!(!flag(CAPTIONS_ENABLED, true, &room, &none));
        assert!(flag(NS_CLEAN_TRACK, false, &room, &none));
        let back_on: HashMap<_, _> = [(CAPTIONS_ENABLED.to_string(), "true".to_string())].into();
        assert!(flag(CAPTIONS_ENABLED, true, &room, &back_on));
        for not_switches in ["", "plain text", "[1, 2]", r#"{"captions.enabled": 3}"#] {
            assert!(room_switches(not_switches).is_empty(), "{not_switches:?}");
        }
    }

    #[test]
    fn the_per_participant_request_is_the_one_switch_that_may_be_an_object() {
        let room = room_switches(
            r#"{"recording.enabled": true, "recording.per_participant": {"audio": true, "identities": ["a"]}}"#,
        );
        let request = crate::features::recording::PerParticipant::from_switch(
            room.get(crate::protocol::RECORDING_PER_PARTICIPANT),
        )
        .expect("read back");
        assert!(request.wants("a") && !request.wants("b"));
        assert!(room_switches(r#"{"captions.enabled": {"x": 1}}"#).is_empty());
    }
}
