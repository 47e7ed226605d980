//! Participant attributes (participants set their own): split into key=value lines, read as
//! virtual background requests and microphone switches.
#![no_main]
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let attributes: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let none = Default::default();
    let _ = meeting_agent::features::backgrounds::camera::VbRequest::from_attributes(&attributes);
    let _ = meeting_agent::features::noise_suppression::NsSettings::resolve(
        &meeting_agent::config::AudioConfig::default(),
        &none,
        &attributes,
    );
    let _ = meeting_agent::features::captions::CaptionSettings::resolve(&none, &attributes);
});
