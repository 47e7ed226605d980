//! Uploaded and fetched background images: decoded within the size limits or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = meeting_agent::video::background::decode(data) {
        assert!(image.width() <= meeting_agent::video::background::MAX_SIDE);
        assert!(image.height() <= meeting_agent::video::background::MAX_SIDE);
    }
});
