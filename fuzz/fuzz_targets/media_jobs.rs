//! What a media job's caller and sender control: the message id and source a job names (checked
//! before queueing), and the attachment's first bytes (sniffed before any decoder sees them).
//! Any input gives an answer, never a panic; an accepted `file:` source never leaves the folder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::media_messages::{check_job, sniff::sniff};

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (id, source) = text.split_once('\u{0}').unwrap_or(("msg", text));
    if check_job(id, source).is_ok()
        && let Some(path) = source.strip_prefix("file:")
    {
        assert!(!path.starts_with('/') && !path.split('/').any(|c| c == ".."), "{source}");
    }
});
