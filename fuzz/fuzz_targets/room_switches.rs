//! Room metadata (anyone with room admin rights writes it): switches are read or ignored.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let switches = meeting_agent::session::switches::room_switches(&text);
    let none = Default::default();
    let _ = meeting_agent::features::noise_suppression::NsSettings::resolve(
        &meeting_agent::config::AudioConfig::default(),
        &switches,
        &none,
    );
    let _ = meeting_agent::features::captions::CaptionSettings::resolve(&switches, &none);
});
