//! Identities asked for in `POST /v1/tokens`: whatever is accepted is short, made of the
//! allowed characters and never the agent's reserved prefix.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::api::tokens::IdentityPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(identity) = std::str::from_utf8(data) else {
        return;
    };
    if IdentityPolicy::default().check(identity).is_ok() {
        assert!(!identity.is_empty() && identity.len() <= 128);
        assert!(!identity.to_lowercase().starts_with("agent-"));
        assert!(
            identity
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
        );
    }
});
