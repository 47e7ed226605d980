//! The events integrators subscribe to, and the body each is delivered as: Standard Webhooks'
//! `{"type", "timestamp", "data"}`. An event's id is derived from what happened (the meeting,
//! the participant, the recording...), so an event noticed twice (a retried write, two workers)
//! is one event, and receivers deduplicate on `webhook-id`.

use serde::Serialize;
use serde_json::Value;

/// Every event type, as an endpoint's filter names them.
pub const EVENT_TYPES: &[&str] = &[
    "meeting.started",
    "meeting.ended",
    "participant.joined",
    "participant.left",
    "recording.started",
    "recording.ready",
    "transcript.ready",
    "summary.ready",
    "media_message.transcribed",
    "control.action",
];

/// One thing that happened, as the outbox keeps it until every endpoint has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `msg_<...>`: the same for every endpoint and every retry.
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// The room it happened in (`None`: none, as for a voice message).
    #[serde(skip)]
    pub room: Option<String>,
    #[serde(skip)]
    pub at_ms: i64,
    pub data: Value,
}

impl Event {
    /// `event_type` (one of [`EVENT_TYPES`]) in `room` at `at_ms`; `key` names the occurrence
    /// (unique per type), from which the id is derived.
    pub fn new(
        event_type: &'static str,
        room: Option<&str>,
        key: &str,
        at_ms: i64,
        data: Value,
    ) -> Self {
        debug_assert!(EVENT_TYPES.contains(&event_type), "{event_type}");
        Self {
            id: event_id(event_type, key),
            event_type,
            timestamp: rfc3339(at_ms),
            room: room.map(str::to_string),
            at_ms,
            data,
        }
    }

    /// The body delivered.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("an event serialises")
    }
}

/// `msg_` and the first 24 hex digits of SHA-256 over type and key: stable and opaque (a room
/// name or identity is not readable from it).
pub(crate) fn event_id(event_type: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(event_type.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Unix ms as `2026-11-26T23:20:08.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_735_102_995), "2026-11-26T23:18:22.995Z");
    }

    #[test]
    fn one_occurrence_is_one_id_and_the_body_is_standard() {
        let a = Event::new("meeting.started", Some("r"), "r-1", 0, Value::Null);
        let b = Event::new("meeting.started", Some("r"), "r-1", 5, Value::Null);
        let c = Event::new("meeting.ended", Some("r"), "r-1", 0, Value::Null);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("msg_") && a.id.len() == 28);
        let body: Value = serde_json::from_str(&a.body()).unwrap();
        assert_eq!(body["type"], "meeting.started");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00.000Z");
        assert!(body.get("data").is_some());
        assert_eq!(body.as_object().unwrap().len(), 3);
    }
}
