//! The spool's MP4 box scan (crash recovery reads whatever a dying process left on disk): the
//! complete prefix never runs past the data.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = meeting_agent::recording::spool::complete_prefix_len(data);
    assert!(n as usize <= data.len());
});
