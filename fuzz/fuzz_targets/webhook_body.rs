//! LiveKit webhook bodies: any body, correctly signed (so the JSON parser is reached) or
//! not, is an event or a refusal, never a panic.
#![no_main]
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const KEY: &str = "fuzzkey";
const SECRET: &str = "fuzz-secret-of-at-least-32-characters";

fuzz_target!(|data: &[u8]| {
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data));
    let token = livekit_api::access_token::AccessToken::with_api_key(KEY, SECRET)
        .with_sha256(&digest)
        .to_jwt()
        .expect("signs");
    let _ = meeting_agent::api::verify_webhook(KEY, SECRET, data, &token);
    // Unsigned and mis-signed.
    let _ = meeting_agent::api::verify_webhook(KEY, SECRET, data, "not.a.jwt");
});
