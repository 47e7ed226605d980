//! Who may call: API keys from the configuration, each allowed some rooms (or all, `*`).
//! Keys are compared as SHA-256 digests in constant time and never logged.

use sha2::{Digest, Sha256};

use crate::config::ApiKey;

#[derive(Debug, Clone)]
pub struct Caller {
    /// A short, loggable name for the key (the first characters of its digest).
    pub id: String,
    rooms: Vec<String>,
    /// Whether tokens this key mints may let participants set their own attributes.
    pub participant_attributes: bool,
    /// A participant token of one room (the web console): reads that room's meetings and
    /// recordings only ([`crate::api::console::access`] lists what it may call).
    pub read_only: bool,
}

impl Caller {
    pub fn may_use(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r == "*" || r == room)
    }

    pub fn all_rooms(&self) -> bool {
        self.rooms.iter().any(|r| r == "*")
    }

    /// The read-only caller of a verified participant token for `room`.
    pub fn participant(room: &str, identity: &str) -> Self {
        Self {
            id: format!("participant:{identity}"),
            rooms: vec![room.to_string()],
            participant_attributes: false,
            read_only: true,
        }
    }

    /// The rooms this caller may read (`*`: every room).
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }
}

#[derive(Debug, Clone, Default)]
pub struct Keys(Vec<([u8; 32], Vec<String>, bool)>);

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self(
            keys.iter()
                .map(|k| (digest(&k.key), k.rooms.clone(), k.participant_attributes))
                .collect(),
        )
    }

    /// The caller presenting `Authorization: Bearer <key>`, if the key is known.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Caller> {
        let presented = digest(authorization?.strip_prefix("Bearer ")?.trim());
        self.0.iter().find_map(|(known, rooms, attributes)| {
            // Every byte compared, whatever the first difference.
            let same = known
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            same.then(|| Caller {
                id: known[..4].iter().map(|b| format!("{b:02x}")).collect(),
                rooms: rooms.clone(),
                participant_attributes: *attributes,
                read_only: false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_open_their_rooms_only() {
        let keys = Keys::new(&[
            ApiKey {
                key: "k".repeat(30),
                rooms: vec!["weekly".into()],
                participant_attributes: false,
            },
            ApiKey {
                key: "a".repeat(30),
                rooms: vec!["*".into()],
                participant_attributes: true,
            },
        ]);
        let weekly = keys
            .authenticate(Some(&format!("Bearer {}", "k".repeat(30))))
            .unwrap();
        assert!(weekly.may_use("weekly") && !weekly.may_use("board") && !weekly.all_rooms());
        let admin = keys
            .authenticate(Some(&format!("Bearer {}", "a".repeat(30))))
            .unwrap();
        assert!(admin.may_use("board") && admin.all_rooms());
        assert!(admin.participant_attributes && !weekly.participant_attributes);
        assert!(keys.authenticate(Some("Bearer nope")).is_none());
        assert!(
            keys.authenticate(Some(&"k".repeat(30))).is_none(),
            "the scheme is required"
        );
        assert!(keys.authenticate(None).is_none());
    }
}
