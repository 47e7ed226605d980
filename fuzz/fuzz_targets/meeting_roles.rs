//! Room metadata as the control API reads roles from it: any text gives roles that never panic,
//! only known roles, and survive being written back unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::meeting::roles::{Action, Role, Roles, check};

fuzz_target!(|data: &[u8]| {
    let Ok(metadata) = std::str::from_utf8(data) else {
        return;
    };
    let roles = Roles::from_metadata(metadata);
    for identity in ["ann", "", metadata] {
        let role = roles.of(identity);
        for action in [Action::Moderate, Action::RunMeeting, Action::GiveRoles] {
            let allowed = check(role, action, Some(Role::Host)).is_ok();
            assert!(!allowed || role.moderates(), "{role:?} {action:?}");
        }
    }
    let written = format!("{{\"meeting.roles\": {}}}", roles.to_value());
    assert_eq!(Roles::from_metadata(&written), roles);
});
