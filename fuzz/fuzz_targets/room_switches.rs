//! Room metadata (anyone with room admin rights writes it): switches are read or ignored.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let switches = meeting_agent::session::controls::room_switches(&text);
    let _ = meeting_agent::session::controls::MicSettings::resolve(
        &meeting_agent::config::AudioConfig::default(),
        true,
        &switches,
        &Default::default(),
    );
});
