//! The room-plugin contract. A per-room capability (captions, noise suppression, virtual
//! backgrounds, recording, the meeting log, ...) is a [`Feature`]: the process holds one, and it
//! opens a [`RoomFeature`] for each room. The session only fans the room's events out to the
//! room features, in registration order, and finishes them in reverse order when the room ends;
//! each feature owns its state, switches, metrics and teardown.
//!
//! Media is subscribed once per track by the session: a feature takes a microphone's audio by
//! adding an [`AudioSink`] (10 ms frames as the meeting hears them, after the one [`AudioStage`]
//! that may process them: noise suppression), and a track's video through its [`VideoSource`],
//! which hands the same decoded frames to every subscriber.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::SessionReport;
use super::media::{AudioSink, AudioStage, VideoSource};
use crate::livekit::{Room, RoomEvent, TrackKind, TrackSource};

pub type FinishFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A capability the process offers to every room.
pub trait Feature: Send + Sync {
    /// For logs.
    fn name(&self) -> &'static str;
    /// The feature's part in one room, or `None` when it has nothing to do there. Values put
    /// into `room.shared` are visible to the features opened after this one.
    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>>;
}

/// A feature inside one room. Every method has a default that does nothing.
pub trait RoomFeature: Send {
    /// A participant joined (its attributes are in `room` already) or left.
    fn on_participant(&mut self, _room: &RoomContext, _change: &ParticipantChange) {}
    /// A subscribed track: take its media from `track` here, or never.
    fn on_track(&mut self, _room: &RoomContext, _track: &mut TrackContext) {}
    /// A track ended (unsubscribed or unpublished); its media streams end by themselves.
    fn on_track_ended(&mut self, _room: &RoomContext, _sid: &str) {}
    /// The room's switches (its metadata) or a participant's attributes changed.
    fn on_settings(&mut self, _room: &RoomContext) {}
    /// Any other room event (mutes, active speakers, data): most features ignore them.
    fn on_room_event(&mut self, _room: &RoomContext, _event: &RoomEvent) {}
    /// The room ended: stop, and hand back what must complete before the agent leaves (a
    /// recording closing, the meeting's thread being written).
    fn finish(self: Box<Self>, _room: &mut RoomContext) -> FinishFuture {
        Box::pin(async {})
    }
}

#[derive(Debug, Clone)]
pub enum ParticipantChange {
    Joined { identity: String },
    Left { identity: String },
}

/// What a room's features see of it.
pub struct RoomContext {
    pub room: Arc<Room>,
    pub name: String,
    /// When the agent joined: track origins and meeting times count from here.
    pub started: std::time::Instant,
    pub started_unix_ms: u64,
    /// The room's switches, from its metadata (`session::switches`).
    pub switches: HashMap<String, String>,
    /// The meeting's roles, lock, spotlight and waiting room, from its metadata.
    pub meeting: crate::meeting::MeetingState,
    /// Every participant's attributes, by identity.
    pub attributes: HashMap<String, HashMap<String, String>>,
    /// Values features share with the features opened after them (one per type), such as the
    /// meeting's log that captions write into.
    pub shared: Shared,
    pub(super) reports: broadcast::Sender<SessionReport>,
}

impl RoomContext {
    /// `identity`'s attributes (empty for one the room has not announced).
    pub fn attributes_of(&self, identity: &str) -> &HashMap<String, String> {
        static NONE: std::sync::LazyLock<HashMap<String, String>> =
            std::sync::LazyLock::new(HashMap::new);
        self.attributes.get(identity).unwrap_or(&NONE)
    }

    /// A switch for `identity`: its attribute wins over the room's switch, which wins over
    /// `default`. A value that is not a flag is ignored with a warning.
    pub fn flag(&self, identity: &str, key: &str, default: bool) -> bool {
        super::switches::flag(key, default, &self.switches, self.attributes_of(identity))
    }

    /// Milliseconds since the agent joined.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Where reports go, for tasks that outlive this borrow.
    pub fn reports(&self) -> broadcast::Sender<SessionReport> {
        self.reports.clone()
    }

    /// Tells the session's subscribers (tests, the demo) what happened.
    pub fn report(&self, report: SessionReport) {
        let _ = self.reports.send(report);
    }
}

/// One value per type, shared between a room's features.
#[derive(Default)]
pub struct Shared(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Shared {
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.0
            .remove(&TypeId::of::<T>())
            .and_then(|v| v.downcast().ok())
            .map(|v| *v)
    }
}

/// A subscribed track as features see it while the session opens it.
pub struct TrackContext {
    pub sid: String,
    pub participant: String,
    pub kind: TrackKind,
    pub source: TrackSource,
    /// When the track started, in milliseconds after the agent joined.
    pub origin_ms: u64,
    pub(super) audio_sinks: Vec<Box<dyn AudioSink>>,
    pub(super) audio_stage: Option<Box<dyn AudioStage>>,
    pub(super) video: VideoSource,
}

impl TrackContext {
    pub(super) fn new(
        sid: String,
        participant: String,
        kind: TrackKind,
        source: TrackSource,
        origin_ms: u64,
    ) -> Self {
        Self {
            sid,
            participant,
            kind,
            source,
            origin_ms,
            audio_sinks: Vec::new(),
            audio_stage: None,
            video: VideoSource::default(),
        }
    }

    /// A microphone's audio, as the meeting hears it (after the stage), frame by frame.
    pub fn add_audio_sink(&mut self, sink: Box<dyn AudioSink>) {
        self.audio_sinks.push(sink);
    }

    /// Processes a microphone's audio before any sink hears it. One stage per track: a second
    /// one is refused (logged) and the first kept.
    pub fn set_audio_stage(&mut self, stage: Box<dyn AudioStage>) {
        if self.audio_stage.is_some() {
            return tracing::error!(sid = %self.sid, "a second audio stage was refused");
        }
        self.audio_stage = Some(stage);
    }

    /// The video track's frames, for subscribers now or later (see [`VideoSource`]).
    pub fn video(&self) -> VideoSource {
        self.video.clone()
    }
}
