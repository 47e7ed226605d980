//! What the agent does inside one room: follow participants, open a pipeline per subscribed
//! track, and report what flows. Later features (captions, denoise, backgrounds, recording)
//! hang their per-track pipelines here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::livekit::{
    AudioStream, ConnectOptions, Room, RoomEvent, TrackKind, TrackSource, VideoStream,
};
use crate::media::analysis::{ToneMeter, luma_digest};
use crate::worker::{JobContext, JobError, JobFuture, JobHandler};

/// Audio is taken from the engine at 48 kHz mono in 10 ms frames: the rate the denoiser and
/// the recording mixer work at.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_FRAME_MS: u32 = 10;
const REPORT_EVERY: Duration = Duration::from_secs(1);

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
    Left {
        room: String,
        reason: String,
    },
}

/// The default job: joins the room and runs the per-track pipelines.
#[derive(Clone)]
pub struct MeetingSession {
    reports: broadcast::Sender<SessionReport>,
}

impl Default for MeetingSession {
    fn default() -> Self {
        Self::new()
    }
}

impl MeetingSession {
    pub fn new() -> Self {
        Self {
            reports: broadcast::channel(1024).0,
        }
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
        mut terminate: watch::Receiver<bool>,
    ) -> Result<(), JobError> {
        let (room, mut events) = Room::connect(url, token, ConnectOptions::default()).await?;
        let room_name = room.name.clone();
        tracing::info!(room = %room_name, identity = %room.identity, "joined room");
        self.report(SessionReport::Joined {
            room: room_name.clone(),
            identity: room.identity.clone(),
        });
        let mut pipelines: HashMap<String, JoinHandle<()>> = HashMap::new();
        let reason = loop {
            tokio::select! {
                event = events.recv() => match event {
                    None => break "event stream ended".to_string(),
                    Some(RoomEvent::Disconnected { reason }) => break format!("disconnected: {}", reason.as_str_name()),
                    Some(event) => self.on_event(&room, event, &mut pipelines),
                },
                changed = terminate.changed() => {
                    if changed.is_err() || *terminate.borrow() {
                        break "terminated".to_string();
                    }
                }
            }
        };
        for (_, task) in pipelines.drain() {
            task.abort();
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

    fn on_event(
        &self,
        room: &Room,
        event: RoomEvent,
        pipelines: &mut HashMap<String, JoinHandle<()>>,
    ) {
        let room_name = room.name.clone();
        match event {
            RoomEvent::ParticipantConnected(p) => {
                tracing::info!(room = %room_name, identity = %p.identity, "participant joined");
                self.report(SessionReport::ParticipantJoined {
                    room: room_name,
                    identity: p.identity,
                });
            }
            RoomEvent::ParticipantDisconnected { identity, reason } => {
                tracing::info!(room = %room_name, %identity, reason = reason.as_str_name(), "participant left");
                self.report(SessionReport::ParticipantLeft {
                    room: room_name,
                    identity,
                });
            }
            RoomEvent::TrackSubscribed(track) => {
                tracing::info!(room = %room_name, participant = %track.participant, sid = %track.sid, kind = track.kind.as_str_name(), "track subscribed");
                self.report(SessionReport::TrackSubscribed {
                    room: room_name.clone(),
                    participant: track.participant.clone(),
                    sid: track.sid.clone(),
                    kind: track.kind,
                    source: track.source,
                });
                let task = match track.kind {
                    TrackKind::KindAudio => {
                        match room.audio_stream(&track.sid, AUDIO_RATE, 1, AUDIO_FRAME_MS) {
                            Ok(stream) => tokio::spawn(audio_pipeline(
                                stream,
                                self.clone(),
                                room_name,
                                track.participant,
                                track.sid.clone(),
                            )),
                            Err(e) => {
                                return tracing::warn!(error = %e, sid = %track.sid, "cannot open audio stream");
                            }
                        }
                    }
                    TrackKind::KindVideo => match room.video_stream(&track.sid, 2) {
                        Ok(stream) => tokio::spawn(video_pipeline(
                            stream,
                            self.clone(),
                            room_name,
                            track.participant,
                            track.sid.clone(),
                        )),
                        Err(e) => {
                            return tracing::warn!(error = %e, sid = %track.sid, "cannot open video stream");
                        }
                    },
                    TrackKind::KindUnknown => return,
                };
                if let Some(old) = pipelines.insert(track.sid, task) {
                    old.abort();
                }
            }
            RoomEvent::TrackUnsubscribed { sid, .. } | RoomEvent::TrackUnpublished { sid, .. } => {
                if let Some(task) = pipelines.remove(&sid) {
                    task.abort();
                }
            }
            RoomEvent::TextStream(reader) => {
                tracing::debug!(room = %room_name, topic = %reader.topic, from = %reader.participant, "text stream received");
            }
            RoomEvent::Reconnecting => {
                tracing::warn!(room = %room_name, "connection lost; reconnecting")
            }
            RoomEvent::Reconnected => tracing::info!(room = %room_name, "reconnected"),
            other => tracing::trace!(room = %room_name, event = ?other, "room event"),
        }
    }
}

async fn audio_pipeline(
    mut stream: AudioStream,
    session: MeetingSession,
    room: String,
    participant: String,
    sid: String,
) {
    let mut window = ToneMeter::default();
    while let Some(frame) = stream.recv().await {
        window.push(&frame);
        if window.seconds() >= REPORT_EVERY.as_secs_f64() {
            tracing::debug!(%room, %participant, %sid, hz = window.frequency_hz(), dbfs = window.rms_dbfs(), "audio");
            session.report(SessionReport::AudioStats {
                room: room.clone(),
                participant: participant.clone(),
                sid: sid.clone(),
                seconds: window.seconds(),
                frequency_hz: window.frequency_hz(),
                rms_dbfs: window.rms_dbfs(),
            });
            window = ToneMeter::default();
        }
    }
}

async fn video_pipeline(
    mut stream: VideoStream,
    session: MeetingSession,
    room: String,
    participant: String,
    sid: String,
) {
    let (mut frames, mut distinct, mut last_digest) = (0u64, 0u64, None);
    let mut window_start = tokio::time::Instant::now();
    while let Some(frame) = stream.recv().await {
        frames += 1;
        let digest = luma_digest(&frame);
        if last_digest != Some(digest) {
            distinct += 1;
        }
        last_digest = Some(digest);
        if window_start.elapsed() >= REPORT_EVERY {
            tracing::debug!(%room, %participant, %sid, frames, distinct, width = frame.width, height = frame.height, "video");
            session.report(SessionReport::VideoStats {
                room: room.clone(),
                participant: participant.clone(),
                sid: sid.clone(),
                frames,
                distinct,
                width: frame.width,
                height: frame.height,
            });
            (frames, distinct) = (0, 0);
            window_start = tokio::time::Instant::now();
        }
    }
}

impl JobHandler for MeetingSession {
    fn run(&self, ctx: JobContext) -> JobFuture {
        let session = self.clone();
        Box::pin(async move {
            session
                .run_in_room(&ctx.url, &ctx.token, ctx.terminate.clone())
                .await
        })
    }
}

/// Shares one session between the worker and observers.
pub fn shared(session: MeetingSession) -> Arc<dyn JobHandler> {
    Arc::new(session)
}
