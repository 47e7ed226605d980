//! The meeting's state as the room's metadata carries it: roles, lock, spotlight and waiting
//! room. The control API writes it (only the server can write room metadata); the agent in the
//! room and every client read it.

pub mod breakouts;
pub mod roles;
pub mod waiting_room;

use serde_json::Value;

use crate::protocol::{
    MEETING_BREAKOUT_OF, MEETING_BREAKOUTS, MEETING_LOCKED, MEETING_ROLES, MEETING_SPOTLIGHT,
    MEETING_WAITING_ROOM,
};
pub use breakouts::Breakouts;
pub use roles::{Role, Roles};
pub use waiting_room::WaitingRoom;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingState {
    pub roles: Roles,
    /// No new tokens; who joins anyway is sent to the waiting room or removed.
    pub locked: bool,
    /// The identity shown large in the recording.
    pub spotlight: Option<String>,
    pub waiting_room: WaitingRoom,
    /// For a breakout room: the meeting's main room.
    pub breakout_of: Option<String>,
    /// For a main room: its open breakout rooms.
    pub breakouts: Option<Breakouts>,
}

impl MeetingState {
    /// Reads the state from the room's metadata; anything malformed counts as unset.
    pub fn from_metadata(metadata: &str) -> Self {
        let Ok(value) = serde_json::from_str::<Value>(metadata) else {
            return Self::default();
        };
        Self {
            roles: Roles::from_value(&value[MEETING_ROLES]),
            locked: value[MEETING_LOCKED] == true,
            spotlight: value[MEETING_SPOTLIGHT]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            waiting_room: WaitingRoom::from_value(&value[MEETING_WAITING_ROOM]),
            breakout_of: value[MEETING_BREAKOUT_OF]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            breakouts: Breakouts::from_value(&value[MEETING_BREAKOUTS]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_from_metadata_and_junk_is_unset() {
        let state = MeetingState::from_metadata(
            r#"{"captions.enabled": true, "meeting.locked": true, "meeting.spotlight": "ann",
                "meeting.roles": {"ann": "host"}, "meeting.waiting_room": {"enabled": true}}"#,
        );
        assert!(state.locked && state.waiting_room.enabled);
        assert_eq!(state.spotlight.as_deref(), Some("ann"));
        assert_eq!(state.roles.of("ann"), Role::Host);
        for junk in [
            "",
            "[]",
            r#"{"meeting.locked": "true", "meeting.spotlight": "", "meeting.waiting_room": 1}"#,
            r#"{"meeting.spotlight": 7, "meeting.waiting_room": {"enabled": "yes"}}"#,
        ] {
            assert_eq!(
                MeetingState::from_metadata(junk),
                MeetingState::default(),
                "{junk}"
            );
        }
    }
}
