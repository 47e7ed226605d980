//! Meeting roles and what each may do. The roles live in the room's metadata
//! ([`MEETING_ROLES`]), which only the server writes: a participant allowed to set its own
//! attributes could otherwise make itself host. Anyone not listed is a `participant`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::MEETING_ROLES;

/// Most identities with a role other than `participant` a room keeps (the metadata is one
/// string every participant receives, so it stays small).
pub const MAX_ROLES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Host,
    CoHost,
    #[default]
    Participant,
    Guest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::CoHost => "co-host",
            Role::Participant => "participant",
            Role::Guest => "guest",
        }
    }

    /// Hosts and co-hosts run the meeting: mute, remove, lock.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

/// The roles of one room, as its metadata holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roles(BTreeMap<String, Role>);

impl Roles {
    /// Reads the roles from the room's metadata; a malformed entry counts as `participant`
    /// (the least a role can give).
    pub fn from_metadata(metadata: &str) -> Self {
        serde_json::from_str::<Value>(metadata)
            .map(|m| Self::from_value(&m[MEETING_ROLES]))
            .unwrap_or_default()
    }

    /// Reads the roles from the metadata's [`MEETING_ROLES`] value.
    pub fn from_value(roles: &Value) -> Self {
        let Value::Object(roles) = roles else {
            return Self::default();
        };
        Self(
            roles
                .iter()
                .filter_map(|(identity, role)| {
                    let role: Role = serde_json::from_value(role.clone()).ok()?;
                    (role != Role::Participant).then(|| (identity.clone(), role))
                })
                .collect(),
        )
    }

    pub fn of(&self, identity: &str) -> Role {
        self.0.get(identity).copied().unwrap_or_default()
    }

    /// Gives `identity` `role`; refused when the room would keep more than [`MAX_ROLES`].
    pub fn set(&mut self, identity: &str, role: Role) -> Result<(), String> {
        if role == Role::Participant {
            self.0.remove(identity);
            return Ok(());
        }
        if !self.0.contains_key(identity) && self.0.len() >= MAX_ROLES {
            return Err(format!("a meeting keeps at most {MAX_ROLES} roles"));
        }
        self.0.insert(identity.to_string(), role);
        Ok(())
    }

    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, r)| **r == Role::Host)
            .map(|(i, _)| i.as_str())
    }

    /// The metadata value of [`MEETING_ROLES`].
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.0).expect("roles serialise")
    }
}

/// What a caller asks to do to someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Mute, release, remove: a moderator may act on anyone but a host (a co-host may not
    /// silence or remove the host; a host may act on another host).
    Moderate,
    /// Lock or unlock the meeting, mute everyone.
    RunMeeting,
    /// Give roles (promote, demote, transfer host): hosts only.
    GiveRoles,
}

/// Why `caller` (with `caller_role`) may not do `action` to a participant with `target_role`.
pub fn check(caller_role: Role, action: Action, target_role: Option<Role>) -> Result<(), String> {
    match action {
        Action::GiveRoles if caller_role != Role::Host => Err("only a host may give roles".into()),
        Action::Moderate | Action::RunMeeting if !caller_role.moderates() => Err(format!(
            "a {} may not run the meeting (hosts and co-hosts may)",
            caller_role.as_str()
        )),
        Action::Moderate if target_role == Some(Role::Host) && caller_role != Role::Host => {
            Err("only a host may act on a host".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_metadata_and_default_to_participant() {
        let roles = Roles::from_metadata(
            r#"{"captions.enabled": true, "meeting.roles": {"ann": "host", "bob": "co-host",
                "cy": "guest", "dan": "admin", "eve": 3}}"#,
        );
        assert_eq!(roles.of("ann"), Role::Host);
        assert_eq!(roles.of("bob"), Role::CoHost);
        assert_eq!(roles.of("cy"), Role::Guest);
        // Unknown or malformed roles give nothing.
        assert_eq!(roles.of("dan"), Role::Participant);
        assert_eq!(roles.of("eve"), Role::Participant);
        assert_eq!(roles.of("nobody"), Role::Participant);
        assert_eq!(roles.hosts().collect::<Vec<_>>(), ["ann"]);
        for junk in [
            "",
            "null",
            "[]",
            "{\"meeting.roles\": []}",
            "{\"meeting.roles\": \"ann\"}",
        ] {
            assert_eq!(Roles::from_metadata(junk), Roles::default(), "{junk}");
        }
    }

    #[test]
    fn the_room_keeps_a_bounded_number_of_roles() {
        let mut roles = Roles::default();
        for i in 0..MAX_ROLES {
            roles.set(&format!("p{i}"), Role::Guest).unwrap();
        }
        assert!(roles.set("one-more", Role::CoHost).is_err());
        // Changing a listed one, or making someone a participant, is always possible.
        roles.set("p0", Role::Host).unwrap();
        roles.set("one-more", Role::Participant).unwrap();
        roles.set("p1", Role::Participant).unwrap();
        roles.set("one-more", Role::CoHost).unwrap();
        let back = Roles::from_metadata(
            &serde_json::json!({ MEETING_ROLES: roles.to_value() }).to_string(),
        );
        assert_eq!(back, roles);
    }

    #[test]
    fn who_may_do_what() {
        use Action::*;
        use Role::*;
        for caller in [Host, CoHost] {
            assert!(check(caller, Moderate, Some(Participant)).is_ok());
            assert!(check(caller, Moderate, Some(Guest)).is_ok());
            assert!(check(caller, RunMeeting, None).is_ok());
        }
        assert!(check(Host, Moderate, Some(Host)).is_ok());
        assert!(check(CoHost, Moderate, Some(Host)).is_err());
        assert!(check(CoHost, Moderate, Some(CoHost)).is_ok());
        assert!(check(Host, GiveRoles, None).is_ok());
        assert!(check(CoHost, GiveRoles, None).is_err());
        for caller in [Participant, Guest] {
            for action in [Moderate, RunMeeting, GiveRoles] {
                assert!(check(caller, action, Some(Participant)).is_err());
            }
        }
    }
}
