//! Room events for webhooks: the meeting starting and ending, participants joining and leaving,
//! written into the outbox as they happen. It also hands the meeting log the addresses that
//! participants' attributes give (for the follow-up e-mail), when `[email]` trusts their
//! domain.

use std::collections::HashMap;

use serde_json::json;

use crate::captions::journal::unix_ms;
use crate::config::EmailConfig;
use crate::features::meeting_log::MeetingLog;
use crate::integrations::{Event, Events};

use crate::session::feature::FinishFuture;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature};
use crate::store::Meeting;

/// Participants a room remembers joins of (a room of guests coming and going cannot grow it).
const MAX_TRACKED: usize = 10_000;
/// Events of one room waiting to be written; more (the store away for long) are dropped, and
/// said so.
const MAX_WAITING: usize = 1_000;
/// How long a room's end waits for its events to be written.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

pub struct RoomEvents {
    pub events: Events,
    pub email: EmailConfig,
}

impl Feature for RoomEvents {
    fn name(&self) -> &'static str {
        "room-events"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        let meeting = Meeting::new(&room.name, room.started_unix_ms as i64);
        // One writer per room, so its events reach the outbox (and receivers) in the order
        // they happened.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(MAX_WAITING);
        let events = self.events.clone();
        let writer = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = events.emit(&event, unix_ms() as i64).await {
                    tracing::warn!(error = %e, event = event.event_type, id = %event.id, "webhook event not written");
                }
            }
        });
        let opened = RoomEventsOpen {
            tx,
            writer,
            email: self.email.clone(),
            meeting_id: meeting.id.clone(),
            started_at_ms: meeting.started_at_ms,
            joins: HashMap::new(),
            seen: 0,
        };
        opened.emit(
            "meeting.started",
            &room.name,
            &meeting.id,
            json!({
                "meeting_id": meeting.id,
                "room": room.name,
                "room_sid": room.room.sid,
                "started_at_ms": meeting.started_at_ms,
                "breakout_of": room.meeting.breakout_of,
            }),
        );
        Some(Box::new(opened))
    }
}

struct RoomEventsOpen {
    tx: tokio::sync::mpsc::Sender<Event>,
    writer: tokio::task::JoinHandle<()>,
    email: EmailConfig,
    meeting_id: String,
    started_at_ms: i64,
    /// Joins so far per identity: each join and leave is an event of its own.
    joins: HashMap<String, u32>,
    /// Everyone who joined, for `meeting.ended`.
    seen: usize,
}

impl RoomEventsOpen {
    fn emit(&self, event_type: &'static str, room: &str, key: &str, data: serde_json::Value) {
        let event = Event::new(event_type, Some(room), key, unix_ms() as i64, data);
        if self.tx.try_send(event).is_err() {
            tracing::warn!(
                room,
                event = event_type,
                "webhook event dropped: {MAX_WAITING} are waiting to be written"
            );
        }
    }
}

impl RoomFeature for RoomEventsOpen {
    fn on_participant(&mut self, room: &RoomContext, change: &ParticipantChange) {
        let (event_type, identity) = match change {
            ParticipantChange::Joined { identity } => ("participant.joined", identity),
            ParticipantChange::Left { identity } => ("participant.left", identity),
        };
        if !self.joins.contains_key(identity) && self.joins.len() >= MAX_TRACKED {
            return tracing::warn!(room = %room.name, "participant events beyond {MAX_TRACKED} identities are not sent");
        }
        let joins = self.joins.entry(identity.clone()).or_default();
        if event_type == "participant.joined" {
            *joins += 1;
            if *joins == 1 {
                self.seen += 1;
            }
            self.hand_over_address(room, identity);
        }
        let key = format!("{}/{identity}/{}", self.meeting_id, self.joins[identity]);
        self.emit(
            event_type,
            &room.name,
            &key,
            json!({
                "meeting_id": self.meeting_id,
                "room": room.name,
                "identity": identity,
                "name": room
                    .room
                    .participants()
                    .into_iter()
                    .find(|p| &p.identity == identity)
                    .map(|p| p.name),
            }),
        );
    }

    fn finish(self: Box<Self>, room: &mut RoomContext) -> FinishFuture {
        let ended = unix_ms() as i64;
        self.emit(
            "meeting.ended",
            &room.name,
            &self.meeting_id,
            json!({
                "meeting_id": self.meeting_id,
                "room": room.name,
                "started_at_ms": self.started_at_ms,
                "ended_at_ms": ended,
                "duration_ms": ended - self.started_at_ms,
                "participants": self.seen,
            }),
        );
        let Self { tx, writer, .. } = *self;
        drop(tx);
        let name = room.name.clone();
        Box::pin(async move {
            if tokio::time::timeout(DRAIN, writer).await.is_err() {
                tracing::warn!(room = %name, "the room's last webhook events were not written in time");
            }
        })
    }
}

impl RoomEventsOpen {
    /// The address in `identity`'s attribute, to the meeting log, if its domain is trusted.
    fn hand_over_address(&self, room: &RoomContext, identity: &str) {
        if !self.email.enabled || self.email.address_attribute.is_empty() {
            return;
        }
        let Some(value) = room
            .attributes_of(identity)
            .get(&self.email.address_attribute)
        else {
            return;
        };
        match crate::integrations::email::trusted_attribute_address(&self.email, value) {
            Some(address) => {
                if let Some(log) = room.shared.get::<MeetingLog>() {
                    log.attendee_address(identity, &address);
                }
            }
            None => {
                tracing::info!(room = %room.name, %identity, "an attribute address outside email.attribute_domains is ignored")
            }
        }
    }
}
