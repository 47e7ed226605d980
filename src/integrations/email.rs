//! The meeting's follow-up by e-mail: its summary (key points, decisions, action items with
//! owners, attendance, the recording's link) to every attendee whose address the platform
//! gives, in plain text and HTML, through SMTP. A follow-up is an outbox row per recipient,
//! sent `email.delay_secs` after the meeting (its recording is stored by then) and retried like
//! a webhook. Each message carries an unsubscribe link for its room (`List-Unsubscribe`,
//! one-click), signed with a key derived from the server's secret.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use super::dispatcher::Outcome;
use crate::config::{Config, EmailConfig};
use crate::store::outbox::{NewDelivery, OutboxItem};
use crate::store::{Meeting, Store, StoreError};
use crate::summary::Summary;

#[derive(Debug, Error)]
pub enum EmailError {
    #[error("email.smtp_url: {0}")]
    Url(String),
    #[error("email.from: {0}")]
    From(String),
}

/// A follow-up as the outbox keeps it until it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub room: String,
    pub meeting_id: String,
    pub address: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

/// Sends follow-ups through the configured SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
    unsubscribe_key: Vec<u8>,
    recorder: Option<crate::features::recording::Recorder>,
}

impl Mailer {
    /// The SMTP transport `[email]` describes; `recorder` gives recordings' links.
    pub fn from_config(
        config: &Config,
        recorder: Option<crate::features::recording::Recorder>,
    ) -> Result<Self, EmailError> {
        let email = &config.email;
        let url = url::Url::parse(&email.smtp_url).map_err(|e| EmailError::Url(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| EmailError::Url("no host".into()))?;
        let mut builder = match (url.scheme(), email.smtp_plaintext) {
            (_, true) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(url.port().unwrap_or(25)),
            ("smtps", false) => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| EmailError::Url(e.to_string()))?
                .port(url.port().unwrap_or(465)),
            (_, false) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| EmailError::Url(e.to_string()))?
                .port(url.port().unwrap_or(587)),
        };
        if !email.username.is_empty() {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    email.username.clone(),
                    email.password.clone(),
                ));
        }
        Ok(Self {
            transport: builder.timeout(Some(Duration::from_secs(20))).build(),
            from: email
                .from
                .parse()
                .map_err(|e: lettre::address::AddressError| EmailError::From(e.to_string()))?,
            public_url: email.public_url.trim_end_matches('/').to_string(),
            unsubscribe_key: unsubscribe_key(&config.livekit.api_secret),
            recorder,
        })
    }

    pub(super) async fn deliver(&self, store: &Store, item: &OutboxItem) -> Outcome {
        let Ok(follow_up) = serde_json::from_str::<FollowUp>(&item.payload) else {
            return Outcome::Undeliverable("the follow-up's payload is unreadable".into());
        };
        match store.opted_out(&follow_up.room, &follow_up.address).await {
            Ok(true) => return Outcome::Undeliverable("the recipient unsubscribed".into()),
            Ok(false) => {}
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: e.to_string(),
                };
            }
        }
        let link = self.recording_link(store, &follow_up).await;
        let message = match self.message(&follow_up, &item.event_id, link.as_deref()) {
            Ok(m) => m,
            Err(e) => return Outcome::Undeliverable(e),
        };
        match self.transport.send(message).await {
            Ok(response) => Outcome::Delivered(Some(i64::from(u16::from(response.code())))),
            Err(e) if e.is_permanent() => {
                Outcome::Undeliverable(format!("the server refused it: {e}"))
            }
            Err(e) => Outcome::Failed {
                status: e.status().map(|c| i64::from(u16::from(c))),
                error: e.to_string(),
            },
        }
    }

    /// The message for `follow_up`, with the recording's link and the unsubscribe link.
    pub fn message(
        &self,
        follow_up: &FollowUp,
        event_id: &str,
        recording_link: Option<&str>,
    ) -> Result<lettre::Message, String> {
        let to: Mailbox = follow_up
            .address
            .parse()
            .map_err(|e| format!("the address is invalid: {e}"))?;
        let (mut text, mut html) = (follow_up.text.clone(), follow_up.html.clone());
        if let Some(link) = recording_link {
            text.push_str(&format!("\nRecording: {link}\n"));
            html.push_str(&format!(
                "<h3>Recording</h3><p><a href=\"{0}\">{0}</a></p>",
                escape_html(link)
            ));
        }
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(follow_up.subject.clone())
            .message_id(Some(format!("<{event_id}@meeting-agent>")));
        if !self.public_url.is_empty() {
            let token =
                unsubscribe_token(&self.unsubscribe_key, &follow_up.room, &follow_up.address);
            let link = format!("{}/v1/email/unsubscribe?token={token}", self.public_url);
            text.push_str(&format!("\nTo stop these e-mails for this room: {link}\n"));
            html.push_str(&format!(
                "<p style=\"color:#666\"><a href=\"{}\">Stop these e-mails for this room</a></p>",
                escape_html(&link)
            ));
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{link}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, wrap_html(&html)))
            .map_err(|e| e.to_string())
    }

    /// A link to the meeting's recording, when one was stored and links can be made.
    async fn recording_link(&self, store: &Store, f: &FollowUp) -> Option<String> {
        let recorder = self.recorder.as_ref()?;
        let recordings = store.recordings(Some(&f.room)).await.ok()?;
        let meta = recordings.into_iter().find(|m| {
            let started = m.started_unix_ms;
            started >= f.started_at_ms - 60_000 && started <= f.ended_at_ms
        })?;
        // As long as S3 presigned links may last: a week.
        let expiry = Duration::from_secs(7 * 86_400);
        recorder.storage.link(&meta, expiry).await.ok()
    }

    pub fn unsubscribe_key(&self) -> &[u8] {
        &self.unsubscribe_key
    }
}

/// The follow-ups of a meeting, one per recipient: `addresses` (identity, address) of its
/// attendees, without opted-out ones, at most `email.max_recipients`.
pub async fn enqueue_follow_ups(
    store: &Store,
    config: &EmailConfig,
    meeting: &Meeting,
    ended_at_ms: i64,
    summary: &Summary,
    addresses: &[(String, String)],
) -> Result<u64, StoreError> {
    if !config.enabled || config.disabled_rooms.contains(&meeting.room) {
        return Ok(0);
    }
    let (subject, text, html) = compose(&meeting.room, meeting.started_at_ms, summary);
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (_, address) in addresses.iter().take(config.max_recipients) {
        let address = address.trim().to_ascii_lowercase();
        if !seen.insert(address.clone()) || store.opted_out(&meeting.room, &address).await? {
            continue;
        }
        let follow_up = FollowUp {
            room: meeting.room.clone(),
            meeting_id: meeting.id.clone(),
            address: address.clone(),
            subject: subject.clone(),
            text: text.clone(),
            html: html.clone(),
            started_at_ms: meeting.started_at_ms,
            ended_at_ms,
        };
        let id = format!("followup.{}.{address}", meeting.id);
        rows.push((
            NewDelivery {
                event_id: super::events::event_id("summary.ready", &id),
                id: id.clone(),
                channel: "email",
                target: address,
                event_type: "meeting.follow_up".into(),
                room: Some(meeting.room.clone()),
                order_key: format!("email/{id}"),
                payload: serde_json::to_string(&follow_up).expect("a follow-up serialises"),
                not_before_ms: ended_at_ms + config.delay_secs as i64 * 1000,
            },
            None,
        ));
    }
    if rows.is_empty() {
        return Ok(0);
    }
    store.add_to_outbox(&rows, ended_at_ms).await
}

/// An attribute's address, when its domain is one the configuration trusts.
pub fn trusted_attribute_address(config: &EmailConfig, value: &str) -> Option<String> {
    let address: lettre::Address = value.trim().parse().ok()?;
    let domain = address.domain().to_ascii_lowercase();
    config
        .attribute_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
        .then(|| address.to_string())
}

/// Subject, plain text and HTML of a meeting's follow-up.
pub fn compose(room: &str, started_at_ms: i64, summary: &Summary) -> (String, String, String) {
    let when = crate::integrations::events::rfc3339(started_at_ms);
    let day = &when[..10];
    let time = &when[11..16];
    let minutes = (summary.duration_ms + 30_000) / 60_000;
    let subject = format!("Meeting summary: {room} ({day})");
    let mut text = format!("Meeting in {room}, {day} {time} UTC, {minutes} min.\n");
    let mut html = format!(
        "<h2>Meeting in {}</h2><p>{day} {time} UTC, {minutes} min.</p>",
        escape_html(room)
    );
    let mut section = |title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        text.push_str(&format!("\n{title}\n"));
        html.push_str(&format!("<h3>{title}</h3><ul>"));
        for item in items {
            text.push_str(&format!("- {item}\n"));
            html.push_str(&format!("<li>{}</li>", escape_html(&item)));
        }
        html.push_str("</ul>");
    };
    section("Key points", summary.key_points.clone());
    section("Decisions", summary.decisions.clone());
    section(
        "Action items",
        summary
            .action_items
            .iter()
            .map(|a| match &a.owner {
                Some(owner) => format!("{owner}: {}", a.text),
                None => a.text.clone(),
            })
            .collect(),
    );
    section(
        "Attendees",
        summary
            .attendance
            .iter()
            .map(|a| a.identity.clone())
            .collect(),
    );
    (subject, text, html)
}

fn wrap_html(body: &str) -> String {
    format!("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">{body}</body></html>")
}

/// Text made safe inside HTML (participants' words and names are theirs to choose).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The key unsubscribe links are signed with: derived from the LiveKit API secret, so it
/// needs no setting of its own and is never the secret itself.
pub fn unsubscribe_key(server_secret: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(server_secret.as_bytes()).expect("any key");
    mac.update(b"meeting-agent e-mail unsubscribe v1");
    mac.finalize().into_bytes().to_vec()
}

fn mac(key: &[u8], room: &str, address: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key");
    mac.update(room.as_bytes());
    mac.update(&[0]);
    mac.update(address.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `<room>.<address>.<mac>`, each base64url.
pub fn unsubscribe_token(key: &[u8], room: &str, address: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(room),
        URL_SAFE_NO_PAD.encode(address),
        URL_SAFE_NO_PAD.encode(mac(key, room, address))
    )
}

/// The (room, address) a token was made for, if it is genuine.
pub fn check_unsubscribe_token(key: &[u8], token: &str) -> Option<(String, String)> {
    if token.len() > 2048 {
        return None;
    }
    let mut parts = token.split('.');
    let (room, address, given) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let room = String::from_utf8(URL_SAFE_NO_PAD.decode(room).ok()?).ok()?;
    let address = String::from_utf8(URL_SAFE_NO_PAD.decode(address).ok()?).ok()?;
    let given = URL_SAFE_NO_PAD.decode(given).ok()?;
    let expected = mac(key, &room, &address);
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(&expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then_some((room, address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{ActionItem, Attendance};

    fn summary() -> Summary {
        Summary {
            key_points: vec!["We ship on <Friday> & test".into()],
            decisions: vec!["Use PostgreSQL".into()],
            action_items: vec![ActionItem {
                owner: Some("bob".into()),
                text: "write the release notes".into(),
            }],
            attendance: vec![Attendance {
                identity: "alice".into(),
                joined_ms: 0,
                left_ms: None,
            }],
            duration_ms: 125_000,
            speaking_ms: vec![],
            participant_count: vec![],
            recording_link: None,
        }
    }

    #[test]
    fn the_follow_up_has_every_part_and_escapes_what_participants_said() {
        let (subject, text, html) = compose("team<x>", 1_795_735_102_995, &summary());
        assert_eq!(subject, "Meeting summary: team<x> (2026-11-26)");
        assert!(text.contains("2026-11-26 23:18 UTC, 2 min."), "{text}");
        assert!(text.contains("- We ship on <Friday> & test"));
        assert!(text.contains("Action items\n- bob: write the release notes"));
        assert!(text.contains("Attendees\n- alice"));
        assert!(
            html.contains("We ship on &lt;Friday&gt; &amp; test"),
            "{html}"
        );
        assert!(html.contains("team&lt;x&gt;"));
        assert!(!html.contains("<Friday>"));
    }

    #[test]
    fn unsubscribe_tokens_are_bound_to_room_and_address() {
        let key = unsubscribe_key("server-secret");
        let token = unsubscribe_token(&key, "room-a", "bob@example.com");
        assert_eq!(
            check_unsubscribe_token(&key, &token),
            Some(("room-a".into(), "bob@example.com".into()))
        );
        // Another key, a changed room or address, a truncated mac: refused.
        assert_eq!(
            check_unsubscribe_token(&unsubscribe_key("other"), &token),
            None
        );
        let forged = unsubscribe_token(&key, "room-b", "bob@example.com");
        let (_, mac_b) = forged.rsplit_once('.').unwrap();
        let (head, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            check_unsubscribe_token(&key, &format!("{head}.{mac_b}")),
            None
        );
        assert_eq!(
            check_unsubscribe_token(&key, &token[..token.len() - 2]),
            None
        );
        assert_eq!(check_unsubscribe_token(&key, "a.b"), None);
        assert_eq!(check_unsubscribe_token(&key, &"a.".repeat(2000)), None);
    }

    #[test]
    fn attribute_addresses_are_trusted_for_listed_domains_only() {
        let config = EmailConfig {
            attribute_domains: vec!["example.com".into()],
            ..Default::default()
        };
        assert_eq!(
            trusted_attribute_address(&config, " bob@Example.com "),
            Some("bob@Example.com".into())
        );
        assert_eq!(trusted_attribute_address(&config, "eve@evil.test"), None);
        assert_eq!(
            trusted_attribute_address(&config, "bob@example.com\r\nBcc: x@y"),
            None
        );
        assert_eq!(trusted_attribute_address(&config, "not an address"), None);
        assert_eq!(
            trusted_attribute_address(&EmailConfig::default(), "bob@example.com"),
            None
        );
    }
}
