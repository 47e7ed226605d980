//! Room metadata as the meeting controls and the agent read it (roles, lock, spotlight, waiting
//! room, breakouts): any text gives a state without a panic, only known roles, roles that
//! survive being written back unchanged, and breakouts whose assignments name their rooms.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::meeting::MeetingState;
use meeting_agent::meeting::roles::{Action, Role, Roles, check};

fuzz_target!(|data: &[u8]| {
    let Ok(metadata) = std::str::from_utf8(data) else {
        return;
    };
    let state = MeetingState::from_metadata(metadata);
    let roles = &state.roles;
    assert_eq!(&Roles::from_metadata(metadata), roles);
    for identity in ["ann", "", metadata] {
        let role = roles.of(identity);
        for action in [Action::Moderate, Action::RunMeeting, Action::GiveRoles] {
            let allowed = check(role, action, Some(Role::Host)).is_ok();
            assert!(!allowed || role.moderates(), "{role:?} {action:?}");
        }
    }
    let written = format!("{{\"meeting.roles\": {}}}", roles.to_value());
    assert_eq!(&Roles::from_metadata(&written), roles);
    if let Some(breakouts) = &state.breakouts {
        assert!(breakouts.assignments.values().all(|&i| i < breakouts.rooms.len()));
    }
});
