//! Webhook signatures as the Standard Webhooks convention defines them: the secret is
//! `whsec_<base64 of its bytes>`; a message is signed as HMAC-SHA256 over
//! `<webhook-id>.<webhook-timestamp>.<body>`, sent as `v1,<base64>`. While a secret is being
//! rotated the header carries one signature per valid secret, separated by spaces, so a
//! receiver holding either verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

const PREFIX: &str = "whsec_";
/// Bytes of a secret this agent generates (the convention asks for 24 to 64).
const GENERATED_BYTES: usize = 32;
/// Bytes a secret given to the agent may have.
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

#[derive(Debug, Error, PartialEq)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    Malformed,
    #[error("no randomness for a new secret: {0}")]
    Random(String),
}

/// One endpoint's signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// `whsec_...` as an endpoint's owner holds it.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Malformed)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed)?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Malformed);
        }
        Ok(Self(bytes))
    }

    /// The form an endpoint's owner is given once (and the store keeps).
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` holds a valid signature of the message by `secret`, compared in constant
/// time (what a receiver does; the tests use it).
pub fn verify(secret: &Secret, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    let expected = secret.sign(id, timestamp, body);
    header.split(' ').any(|candidate| {
        candidate.len() == expected.len()
            && candidate
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convention's published example (standard-webhooks, spec and reference libraries).
    #[test]
    fn the_published_example_signs_as_specified() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotated_header_verifies_with_either_secret_and_not_a_third() {
        let (old, new, other) = (
            Secret::generate().unwrap(),
            Secret::generate().unwrap(),
            Secret::generate().unwrap(),
        );
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1700000000, b"{}");
        assert!(verify(&old, &header, "msg_1", 1700000000, b"{}"));
        assert!(verify(&new, &header, "msg_1", 1700000000, b"{}"));
        assert!(!verify(&other, &header, "msg_1", 1700000000, b"{}"));
        // Any change to what is signed breaks it.
        assert!(!verify(&new, &header, "msg_2", 1700000000, b"{}"));
        assert!(!verify(&new, &header, "msg_1", 1700000001, b"{}"));
        assert!(!verify(&new, &header, "msg_1", 1700000000, b"{ }"));
    }

    #[test]
    fn secrets_round_trip_and_malformed_ones_are_refused() {
        let s = Secret::generate().unwrap();
        assert_eq!(Secret::parse(&s.expose()).unwrap(), s);
        assert!(s.expose().starts_with("whsec_"));
        assert_ne!(Secret::generate().unwrap(), s);
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            assert_eq!(Secret::parse(bad), Err(SecretError::Malformed), "{bad:?}");
        }
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
