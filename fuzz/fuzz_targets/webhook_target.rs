//! What API callers and followed-up e-mails hand the integrations: an endpoint URL (accepted
//! only as https on a literal public address or a name, never with credentials), an
//! unsubscribe token (genuine only with the server's key), an attribute's address (trusted only
//! for listed domains, never with a line break).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::config::EmailConfig;
use meeting_agent::integrations::email::{check_unsubscribe_token, trusted_attribute_address, unsubscribe_key, unsubscribe_token};
use meeting_agent::integrations::target::TargetPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };
    if let Ok(url) = strict.check_url(text) {
        assert_eq!(url.scheme(), "https");
        assert!(url.username().is_empty() && url.password().is_none());
        if let Some(url::Host::Ipv4(ip)) = url.host() {
            assert!(meeting_agent::video::background_source::is_public(ip.into()));
        }
        if let Some(url::Host::Ipv6(ip)) = url.host() {
            assert!(meeting_agent::video::background_source::is_public(ip.into()));
        }
    }
    let key = unsubscribe_key("fuzz-secret");
    if let Some((room, address)) = check_unsubscribe_token(&key, text) {
        // Only what the key made passes, and it round-trips.
        assert_eq!(unsubscribe_token(&key, &room, &address), text);
    }
    assert!(check_unsubscribe_token(&unsubscribe_key("other"), &unsubscribe_token(&key, text, text)).is_none());
    let config = EmailConfig {
        attribute_domains: vec!["example.com".into()],
        ..Default::default()
    };
    if let Some(address) = trusted_attribute_address(&config, text) {
        assert!(!address.contains(['\r', '\n', ',', ';', '<', '>']));
        assert!(address.to_ascii_lowercase().ends_with("@example.com"));
    }
});
