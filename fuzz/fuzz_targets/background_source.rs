//! `vb.image` values from participants and API callers: every value either names an upload
//! of the room (inside its folder) or an allow-listed https host, or is refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::video::background_source::{BackgroundSource, SourcePolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let root = std::env::temp_dir().join("fuzz-backgrounds");
    let policy = SourcePolicy::new(
        root.clone(),
        vec!["images.example.com".into(), "*.cdn.example.org".into()],
    );
    match policy.check("room", value) {
        Ok(BackgroundSource::Upload { path, .. }) => {
            assert!(path.starts_with(policy.upload_dir("room")))
        }
        Ok(BackgroundSource::Url { host, port, url }) => {
            assert!(url.starts_with("https://"));
            assert_eq!(port, 443);
            assert!(host == "images.example.com" || host.ends_with(".cdn.example.org"));
        }
        Err(_) => {}
    }
});
