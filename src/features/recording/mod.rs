//! Composite recording of a room: on when `recording.auto` says so or the room's
//! `recording.enabled` switch asks for it; every camera and screen share (the same decoded
//! frames the other features see) and every microphone as the meeting hears it, into one
//! recording (see `recorder`). The agent's `recording` attribute tells participants whether
//! they are recorded.

pub mod per_participant;
pub mod recorder;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::livekit::{Room, RoomEvent, TrackKind, TrackSource};
use crate::protocol::{RECORDING_ATTRIBUTE, RECORDING_SWITCH};
use crate::session::feature::FinishFuture;
use crate::session::media::VideoSource;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature, TrackContext};
pub use per_participant::{PerParticipant, RECORDING_PER_PARTICIPANT};
pub use recorder::{AudioTap, Recorder, RoomRecording};

/// Decoded frames a recorded video track may have waiting.
const VIDEO_QUEUE: usize = 2;

/// So `/metrics` lists them before their first event.
pub fn register_metrics() {
    recorder::RECORDINGS_STORED.get();
    recorder::RECORDINGS_ACTIVE.get();
}

impl Feature for Recorder {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        let mut opened = RoomRecorder {
            recorder: self.clone(),
            recording: None,
            videos: HashMap::new(),
            microphones: HashMap::new(),
            announcer: None,
        };
        opened.reconcile(room);
        Some(Box::new(opened))
    }
}

struct RoomRecorder {
    recorder: Recorder,
    recording: Option<RoomRecording>,
    /// Subscribed video tracks, for a recording started later: identity, source, frames.
    videos: HashMap<String, (String, TrackSource, VideoSource)>,
    /// Every audio track's way into the recording, by track sid: identity, tap, and whether
    /// it is a microphone (not a screen share's sound).
    microphones: HashMap<String, (String, AudioTap, bool)>,
    /// The latest recording state for the agent's `recording` attribute.
    announcer: Option<watch::Sender<bool>>,
}

impl RoomRecorder {
    /// Starts or stops the room's recording to match the configuration and the room's switch.
    fn reconcile(&mut self, room: &RoomContext) {
        let wanted = room
            .switches
            .get(RECORDING_SWITCH)
            .and_then(|v| crate::config::parse_flag(v))
            .unwrap_or(self.recorder.config.auto);
        match (self.recording.take(), wanted) {
            (None, true) => {
                match RoomRecording::start(&self.recorder, &room.name, Some(room.room.clone())) {
                    Ok(r) => {
                        for (sid, (identity, source, video)) in &self.videos {
                            r.add_video(sid, identity, *source, video.subscribe(VIDEO_QUEUE));
                        }
                        r.per_participant(per_participant_request(room));
                        for (sid, (identity, tap, microphone)) in &self.microphones {
                            r.add_audio(sid, identity, tap.clone(), *microphone);
                        }
                        self.announce(&room.room, true);
                        self.recording = Some(r);
                        self.follow_spotlight(room);
                    }
                    Err(e) => {
                        tracing::error!(room = %room.name, error = %e, "cannot start recording")
                    }
                }
            }
            (Some(r), false) => {
                self.announce(&room.room, false);
                tokio::spawn(r.stop());
            }
            (current, _) => {
                if let Some(r) = &current {
                    r.per_participant(per_participant_request(room));
                }
                self.recording = current
            }
        }
    }

    /// Passes the room's spotlight (a host's choice, in its metadata) to the recording.
    fn follow_spotlight(&self, room: &RoomContext) {
        if let Some(r) = &self.recording {
            r.spotlight(room.meeting.spotlight.clone());
        }
    }

    /// Tells the room through the agent's attribute that it records (`recording=active`) or not.
    fn announce(&mut self, room: &Arc<Room>, on: bool) {
        self.announcer
            .get_or_insert_with(|| recording_announcer(room))
            .send_replace(on);
    }
}

impl RoomFeature for RoomRecorder {
    fn on_participant(&mut self, _room: &RoomContext, change: &ParticipantChange) {
        if let (ParticipantChange::Left { identity }, Some(r)) = (change, &self.recording) {
            r.participant_left(identity);
        }
    }

    fn on_track(&mut self, _room: &RoomContext, track: &mut TrackContext) {
        match track.kind {
            TrackKind::KindAudio => {
                let tap = AudioTap::default();
                track.add_audio_sink(Box::new(tap.clone()));
                let microphone = track.source == TrackSource::SourceMicrophone;
                if let Some(r) = &self.recording {
                    r.add_audio(&track.sid, &track.participant, tap.clone(), microphone);
                }
                self.microphones.insert(
                    track.sid.clone(),
                    (track.participant.clone(), tap, microphone),
                );
            }
            TrackKind::KindVideo => {
                let video = track.video();
                if let Some(r) = &self.recording {
                    r.add_video(
                        &track.sid,
                        &track.participant,
                        track.source,
                        video.subscribe(VIDEO_QUEUE),
                    );
                }
                self.videos.insert(
                    track.sid.clone(),
                    (track.participant.clone(), track.source, video),
                );
            }
            TrackKind::KindUnknown => {}
        }
    }

    fn on_track_ended(&mut self, _room: &RoomContext, sid: &str) {
        self.videos.remove(sid);
        self.microphones.remove(sid);
        if let Some(r) = &self.recording {
            r.remove(sid);
        }
    }

    fn on_settings(&mut self, room: &RoomContext) {
        self.reconcile(room);
        self.follow_spotlight(room);
    }

    fn on_room_event(&mut self, _room: &RoomContext, event: &RoomEvent) {
        let Some(r) = &self.recording else { return };
        match event {
            RoomEvent::TrackMuted { sid, .. } => r.muted(sid, true),
            RoomEvent::TrackUnmuted { sid, .. } => r.muted(sid, false),
            RoomEvent::ActiveSpeakersChanged { identities } => r.speakers(identities.clone()),
            _ => {}
        }
    }

    fn finish(self: Box<Self>, room: &mut RoomContext) -> FinishFuture {
        let name = room.name.clone();
        let recording = self.recording;
        Box::pin(async move {
            if let Some(recording) = recording
                && let Some(meta) = recording.stop().await
            {
                tracing::info!(room = %name, id = %meta.id, "recording closed; storage takes it from here");
            }
        })
    }
}

/// The room's request for per-participant recordings (its `recording.per_participant` switch).
fn per_participant_request(room: &RoomContext) -> Option<PerParticipant> {
    PerParticipant::from_switch(room.switches.get(RECORDING_PER_PARTICIPANT))
}

/// Keeps the agent's `recording` attribute at the room's latest recording state. An update
/// the server leaves unanswered (on a busy machine its reply can take longer than the SDK's
/// 5 s) is retried until it takes, and a newer state replaces an older one still being tried:
/// the participants must learn that they are recorded. Ends with the room's tasks.
fn recording_announcer(room: &Arc<Room>) -> watch::Sender<bool> {
    let (tx, mut rx) = watch::channel(false);
    let room = room.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let mut backoff = std::time::Duration::from_millis(500);
            loop {
                let value = if *rx.borrow_and_update() {
                    "active"
                } else {
                    "off"
                };
                let attributes =
                    HashMap::from([(RECORDING_ATTRIBUTE.to_string(), value.to_string())]);
                match room.set_attributes(&attributes).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, value, retry_in_ms = backoff.as_millis() as u64, "cannot announce the recording state yet");
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() { return },
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            }
        }
    });
    tx
}
