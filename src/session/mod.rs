//! What the agent does inside one room: follow participants and tracks, take each subscribed
//! track's media once (`media`), and fan the room's events out to the room features
//! (`feature`): captions, noise suppression, virtual backgrounds, recording, the meeting log and
//! any other registered one (`crate::features`). The session itself knows none of them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::livekit::{ConnectOptions, Room, RoomEvent, TrackKind, TrackSource};
use crate::worker::{JobContext, JobError, JobFuture, JobHandler};

pub mod feature;
pub mod media;
pub mod switches;
mod track_budget;
pub mod video;

pub use feature::{Feature, ParticipantChange, RoomContext, RoomFeature, TrackContext};
use track_budget::TrackBudget;
pub use track_budget::{
    MAX_AUDIO_TRACKS_PER_PARTICIPANT, MAX_TRACKS_PER_ROOM, MAX_VIDEO_TRACKS_PER_PARTICIPANT,
    TRACKS_IGNORED,
};

/// Audio is taken from the engine at 48 kHz mono in 10 ms frames: the rate the denoiser and
/// the recording mixer work at.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_FRAME_MS: u32 = 10;
/// Decoded frames the engine queues per video track before it drops the oldest.
const VIDEO_QUEUE: usize = 2;
/// How long a track's task may take to finish its sinks when the room ends.
const TRACK_FINISH: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq)]
pub enum SessionReport {
    Joined {
        room: String,
        identity: String,
    },
    ParticipantJoined {
        room: String,
        identity: String,
    },
    ParticipantLeft {
        room: String,
        identity: String,
    },
    TrackSubscribed {
        room: String,
        participant: String,
        sid: String,
        kind: TrackKind,
        source: TrackSource,
    },
    /// One window of a remote audio track.
    AudioStats {
        room: String,
        participant: String,
        sid: String,
        seconds: f64,
        frequency_hz: f64,
        rms_dbfs: f64,
    },
    /// One window of a remote video track: `distinct` counts frames whose content differed from the previous one.
    VideoStats {
        room: String,
        participant: String,
        sid: String,
        frames: u64,
        distinct: u64,
        width: u32,
        height: u32,
    },
    /// The agent published `<participant>-clean`.
    CleanTrackPublished {
        room: String,
        participant: String,
        sid: String,
    },
    /// The suppression model one of `participant`'s microphones runs, when it asked for
    /// another than the default or that changed: `refused` says why it did not get the one it
    /// asked for (`busy`: over the process's budget; `unavailable`: the model is not loaded).
    NoiseModel {
        room: String,
        participant: String,
        sid: String,
        model: crate::config::NsModel,
        requested: crate::config::NsModel,
        refused: Option<&'static str>,
    },
    Left {
        room: String,
        reason: String,
    },
}

/// The job every room runs: joins, and serves the room with the registered features.
#[derive(Clone)]
pub struct MeetingSession {
    reports: broadcast::Sender<SessionReport>,
    features: Vec<Arc<dyn Feature>>,
}

impl Default for MeetingSession {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscribed track's task and the switch that ends it.
struct TrackTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Per-room state the event loop keeps.
struct RoomState {
    ctx: RoomContext,
    features: Vec<(&'static str, Box<dyn RoomFeature>)>,
    tracks: HashMap<String, TrackTask>,
    /// Media tracks per participant and in the room (caps).
    track_budget: TrackBudget,
}

impl MeetingSession {
    /// A session with no features: it joins, follows tracks and reports what flows.
    pub fn new() -> Self {
        Self {
            reports: broadcast::channel(1024).0,
            features: Vec::new(),
        }
    }

    /// Adds a feature: each room opens it after the ones added before.
    pub fn with_feature(mut self, feature: Arc<dyn Feature>) -> Self {
        self.features.push(feature);
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionReport> {
        self.reports.subscribe()
    }

    fn report(&self, report: SessionReport) {
        let _ = self.reports.send(report);
    }

    /// Joins with `token` and serves the room until it ends or `terminate` becomes true.
    pub async fn run_in_room(
        &self,
        url: &str,
        token: &str,
        terminate: watch::Receiver<bool>,
    ) -> Result<(), JobError> {
        self.run_in_room_since(url, token, terminate, None).await
    }

    /// [`Self::run_in_room`] for a meeting that began at `meeting_start_unix_ms` (the room
    /// instance's creation, from the job): the meeting is the room instance, not this agent,
    /// so an agent that takes over from one that died continues the same meeting (its id,
    /// thread and times).
    pub async fn run_in_room_since(
        &self,
        url: &str,
        token: &str,
        mut terminate: watch::Receiver<bool>,
        meeting_start_unix_ms: Option<u64>,
    ) -> Result<(), JobError> {
        let (room, mut events) = Room::connect(url, token, ConnectOptions::default()).await?;
        let room = Arc::new(room);
        let room_name = room.name.clone();
        tracing::info!(room = %room_name, identity = %room.identity, "joined room");
        self.report(SessionReport::Joined {
            room: room_name.clone(),
            identity: room.identity.clone(),
        });
        let (started, started_unix_ms) = meeting_clock(meeting_start_unix_ms);
        let mut ctx = RoomContext {
            name: room_name.clone(),
            switches: switches::room_switches(&room.metadata),
            meeting: crate::meeting::MeetingState::from_metadata(&room.metadata),
            room: room.clone(),
            started,
            started_unix_ms,
            attributes: HashMap::new(),
            shared: Default::default(),
            reports: self.reports.clone(),
        };
        let mut features = Vec::new();
        for feature in &self.features {
            if let Some(opened) = feature.open(&mut ctx) {
                features.push((feature.name(), opened));
            }
        }
        tracing::debug!(room = %room_name, features = ?features.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "room features");
        let mut state = RoomState {
            ctx,
            features,
            tracks: HashMap::new(),
            track_budget: TrackBudget::default(),
        };
        let reason = loop {
            tokio::select! {
                event = events.recv() => match event {
                    None => break "event stream ended".to_string(),
                    Some(RoomEvent::Disconnected { reason }) => break format!("disconnected: {}", reason.as_str_name()),
                    Some(event) => self.on_event(event, &mut state),
                },
                changed = terminate.changed() => {
                    if changed.is_err() || *terminate.borrow() {
                        break "terminated".to_string();
                    }
                }
            }
        };
        // Tracks first (their sinks finish what they hold), then the features, newest first:
        // the ones opened earlier (the meeting log) take what the later ones leave behind.
        for (_, track) in state.tracks.drain() {
            let _ = track.stop.send(true);
            let mut task = track.task;
            if tokio::time::timeout(TRACK_FINISH, &mut task).await.is_err() {
                task.abort();
            }
        }
        while let Some((name, feature)) = state.features.pop() {
            tracing::debug!(room = %room_name, feature = name, "finishing");
            feature.finish(&mut state.ctx).await;
        }
        tracing::info!(room = %room_name, %reason, "leaving room");
        self.report(SessionReport::Left {
            room: room_name,
            reason,
        });
        if let Err(e) = room.disconnect().await {
            tracing::debug!(error = %e, "disconnect after the room ended");
        }
        Ok(())
    }

    fn on_event(&self, event: RoomEvent, state: &mut RoomState) {
        let room_name = state.ctx.name.clone();
        match event {
            RoomEvent::ParticipantConnected(p) => {
                tracing::info!(room = %room_name, identity = %p.identity, "participant joined");
                state
                    .ctx
                    .attributes
                    .insert(p.identity.clone(), p.attributes);
                let change = ParticipantChange::Joined {
                    identity: p.identity.clone(),
                };
                for (_, f) in state.features.iter_mut() {
                    f.on_participant(&state.ctx, &change);
                }
                self.report(SessionReport::ParticipantJoined {
                    room: room_name,
                    identity: p.identity,
                });
            }
            RoomEvent::ParticipantDisconnected { identity, reason } => {
                tracing::info!(room = %room_name, %identity, reason = reason.as_str_name(), "participant left");
                let change = ParticipantChange::Left {
                    identity: identity.clone(),
                };
                for (_, f) in state.features.iter_mut() {
                    f.on_participant(&state.ctx, &change);
                }
                state.ctx.attributes.remove(&identity);
                state.track_budget.release_participant(&identity);
                self.report(SessionReport::ParticipantLeft {
                    room: room_name,
                    identity,
                });
            }
            RoomEvent::ParticipantAttributesChanged {
                identity,
                attributes,
                ..
            } => {
                state.ctx.attributes.insert(identity, attributes);
                for (_, f) in state.features.iter_mut() {
                    f.on_settings(&state.ctx);
                }
            }
            RoomEvent::RoomMetadataChanged { metadata } => {
                state.ctx.switches = switches::room_switches(&metadata);
                state.ctx.meeting = crate::meeting::MeetingState::from_metadata(&metadata);
                tracing::info!(room = %room_name, switches = ?state.ctx.switches, "room switches changed");
                for (_, f) in state.features.iter_mut() {
                    f.on_settings(&state.ctx);
                }
            }
            RoomEvent::TrackSubscribed(track) => {
                if let Err((refusal, first)) =
                    state
                        .track_budget
                        .admit(&track.participant, &track.sid, track.kind)
                {
                    if first {
                        let (cap, what) = refusal.cap(track.kind);
                        tracing::warn!(room = %room_name, participant = %track.participant, sid = %track.sid, cap, "track ignored: the agent takes at most {cap} {what} (further ones are ignored and counted in meeting_agent_tracks_ignored_total)");
                    }
                    return;
                }
                if track.kind == TrackKind::KindUnknown {
                    return state.track_budget.release(&track.sid);
                }
                tracing::info!(room = %room_name, participant = %track.participant, sid = %track.sid, kind = track.kind.as_str_name(), "track subscribed");
                self.report(SessionReport::TrackSubscribed {
                    room: room_name.clone(),
                    participant: track.participant.clone(),
                    sid: track.sid.clone(),
                    kind: track.kind,
                    source: track.source,
                });
                self.open_track(
                    state,
                    TrackContext::new(
                        track.sid,
                        track.participant,
                        track.kind,
                        track.source,
                        state.ctx.elapsed_ms(),
                    ),
                );
            }
            RoomEvent::TrackUnsubscribed { sid, .. } | RoomEvent::TrackUnpublished { sid, .. } => {
                if let Some(track) = state.tracks.remove(&sid) {
                    // The task finishes its sinks (a caption in progress is finalised) and ends.
                    let _ = track.stop.send(true);
                }
                state.track_budget.release(&sid);
                for (_, f) in state.features.iter_mut() {
                    f.on_track_ended(&state.ctx, &sid);
                }
            }
            RoomEvent::Reconnecting => {
                tracing::warn!(room = %room_name, "connection lost; reconnecting")
            }
            RoomEvent::Reconnected => tracing::info!(room = %room_name, "reconnected"),
            other => {
                if let RoomEvent::TextStream(reader) = &other {
                    tracing::debug!(room = %room_name, topic = %reader.topic, from = %reader.participant, "text stream received");
                }
                for (_, f) in state.features.iter_mut() {
                    f.on_room_event(&state.ctx, &other);
                }
            }
        }
    }

    /// Lets every feature take the track's media, then starts the track's one task.
    fn open_track(&self, state: &mut RoomState, mut track: TrackContext) {
        for (_, f) in state.features.iter_mut() {
            f.on_track(&state.ctx, &mut track);
        }
        let room = &state.ctx.room;
        let (stop, stopped) = watch::channel(false);
        let task = match track.kind {
            TrackKind::KindAudio => {
                match room.audio_stream(&track.sid, AUDIO_RATE, 1, AUDIO_FRAME_MS) {
                    Ok(stream) => {
                        let report = media::AudioReport {
                            reports: self.reports.clone(),
                            room: state.ctx.name.clone(),
                            participant: track.participant.clone(),
                            sid: track.sid.clone(),
                        };
                        tokio::spawn(media::run_audio(
                            stream,
                            track.audio_stage,
                            track.audio_sinks,
                            stopped,
                            report,
                        ))
                    }
                    Err(e) => {
                        state.track_budget.release(&track.sid);
                        return tracing::warn!(error = %e, sid = %track.sid, "cannot open audio stream");
                    }
                }
            }
            _ => match room.video_stream(&track.sid, VIDEO_QUEUE) {
                Ok(stream) => {
                    let stats = video::FrameStats::new(
                        self.reports.clone(),
                        state.ctx.name.clone(),
                        track.participant.clone(),
                        track.sid.clone(),
                    );
                    tokio::spawn(media::run_video(stream, track.video, stats, stopped))
                }
                Err(e) => {
                    state.track_budget.release(&track.sid);
                    return tracing::warn!(error = %e, sid = %track.sid, "cannot open video stream");
                }
            },
        };
        if let Some(old) = state.tracks.insert(track.sid, TrackTask { stop, task }) {
            old.task.abort();
        }
    }
}

/// Meetings older than this are not believed to have started at the room's creation time (a
/// wrong clock): they start when the agent joins.
const MAX_MEETING_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

/// The meeting's start as an instant and in Unix ms: `start_unix_ms` when it is plausible (in
/// the past, within a week), else now.
fn meeting_clock(start_unix_ms: Option<u64>) -> (std::time::Instant, u64) {
    let now_ms = crate::captions::journal::unix_ms();
    let now = std::time::Instant::now();
    start_unix_ms
        .filter(|&start| start > 0 && start <= now_ms && now_ms - start <= MAX_MEETING_AGE_MS)
        .and_then(|start| {
            now.checked_sub(std::time::Duration::from_millis(now_ms - start))
                .map(|instant| (instant, start))
        })
        .unwrap_or((now, now_ms))
}

impl JobHandler for MeetingSession {
    fn run(&self, ctx: JobContext) -> JobFuture {
        let session = self.clone();
        // The room instance's creation (ms when the server gives it, else seconds).
        let created_ms = ctx.job.room.as_ref().map(|r| {
            if r.creation_time_ms > 0 {
                r.creation_time_ms as u64
            } else {
                (r.creation_time.max(0) as u64) * 1000
            }
        });
        Box::pin(async move {
            session
                .run_in_room_since(&ctx.url, &ctx.token, ctx.terminate.clone(), created_ms)
                .await
        })
    }
}
