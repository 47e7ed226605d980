//! A joined LiveKit room: connecting and its state, remote track streams and their statistics,
//! leaving (here); its events (`events`), what this participant does in it (`local`), incoming
//! data streams (`data_stream`).
//!
//! Handles: the library releases every remote track handle of a room itself when it closes
//! the room (leaving a placeholder for the client to release), and warns about each one the
//! client already let go. So remote track handles that end (unsubscribed, their participant
//! gone) are kept until the room is closed, and released after it: on `disconnect` (which
//! waits for the close), or, for a room dropped without it, on the thread that leaves in the
//! background once the library confirms. After the library is disposed nothing is released.

mod data_stream;
mod events;
mod local;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::engine::{Engine, EngineError, OwnedHandle, SharedHandle};
use crate::proto;
use crate::proto::ffi_event::Message as Ev;
use crate::proto::ffi_request::Message as Req;
use crate::tracks::{AudioStream, VideoStream};
pub use data_stream::TextStreamReader;
pub use events::RoomEvent;
use events::{RoomState, participant_summary, run_room_events, track_summary};

#[derive(Debug, Error)]
pub enum RoomError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{operation} failed: {message}")]
    Operation {
        operation: &'static str,
        message: String,
    },
    #[error("no subscribed track {0}")]
    NoSuchTrack(String),
}

pub use proto::{ConnectionQuality, DisconnectReason, TrackKind, TrackSource};

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantSummary {
    pub identity: String,
    pub name: String,
    pub sid: String,
    pub kind: proto::ParticipantKind,
    pub attributes: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackSummary {
    pub participant: String,
    pub sid: String,
    pub name: String,
    pub kind: TrackKind,
    pub source: TrackSource,
    pub width: u32,
    pub height: u32,
    pub muted: bool,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub auto_subscribe: bool,
    pub connect_timeout_ms: u64,
    pub join_retries: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            connect_timeout_ms: 10_000,
            join_retries: 1,
        }
    }
}

/// Whether the room's connection to the server is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    /// Lost, being re-established (`Reconnecting` until `Reconnected`).
    Reconnecting,
    /// Left or closed: nothing goes through any more.
    Disconnected,
}

/// How long leaving a room dropped without `disconnect` may take before its handles go anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `disconnect` waits for the library to close the room.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub struct Room {
    handle: OwnedHandle,
    local: OwnedHandle,
    pub name: String,
    pub sid: String,
    pub identity: String,
    /// The room's metadata when this participant joined (changes arrive as `RoomMetadataChanged`).
    pub metadata: String,
    state: Arc<Mutex<RoomState>>,
    /// Set once [`Room::disconnect`] was asked for.
    left: std::sync::atomic::AtomicBool,
    connection: watch::Sender<ConnectionState>,
}

impl Room {
    /// Joins a room. The returned receiver yields every room event until disconnect.
    pub async fn connect(
        url: &str,
        token: &str,
        options: ConnectOptions,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>), RoomError> {
        let engine = Engine::get()?;
        let cb = engine
            .call(
                "connect",
                |async_id| {
                    Req::Connect(proto::ConnectRequest {
                        url: url.to_string(),
                        token: token.to_string(),
                        options: proto::RoomOptions {
                            auto_subscribe: Some(options.auto_subscribe),
                            adaptive_stream: Some(false),
                            dynacast: Some(false),
                            join_retries: Some(options.join_retries),
                            connect_timeout_ms: Some(options.connect_timeout_ms),
                            ..Default::default()
                        },
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::Connect(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        let result = match cb.message {
            Some(proto::connect_callback::Message::Result(r)) => r,
            Some(proto::connect_callback::Message::Error(message)) => {
                return Err(RoomError::Connect {
                    url: url.to_string(),
                    message,
                });
            }
            None => return Err(EngineError::UnexpectedResponse("connect").into()),
        };
        let handle = OwnedHandle::from_proto(result.room.handle);
        let info = result.room.info;
        let local = OwnedHandle::from_proto(result.local_participant.handle);
        let identity = result.local_participant.info.identity;

        let state = Arc::new(Mutex::new(RoomState::default()));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            for p in result.participants {
                let owned = p.participant;
                let summary = participant_summary(owned.info);
                let identity = summary.identity.clone();
                let _ = events_tx.send(RoomEvent::ParticipantConnected(summary.clone()));
                st.participants.insert(
                    identity.clone(),
                    (OwnedHandle::from_proto(owned.handle), summary),
                );
                for publication in p.publications {
                    let track = track_summary(&identity, publication.info);
                    let _ = events_tx.send(RoomEvent::TrackPublished(track.clone()));
                    st.publications.insert(
                        track.sid.clone(),
                        (OwnedHandle::from_proto(publication.handle), track),
                    );
                }
            }
        }

        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        engine.route_room(handle.id(), raw_tx);
        let connection = watch::Sender::new(ConnectionState::Connected);
        tokio::spawn(run_room_events(
            raw_rx,
            events_tx,
            state.clone(),
            connection.clone(),
        ));
        engine.request(Req::ReadyForRoomEvent(proto::ReadyForRoomEventRequest {
            room_handle: handle.id(),
        }))?;

        let room = Room {
            handle,
            local,
            name: info.name,
            sid: info.sid.unwrap_or_default(),
            metadata: info.metadata,
            identity,
            state,
            left: Default::default(),
            connection,
        };
        Ok((room, events_rx))
    }

    /// The connection's state now.
    pub fn connection_state(&self) -> ConnectionState {
        *self.connection.borrow()
    }

    /// Follows the connection's state (reconnecting, reconnected, left).
    pub fn connection(&self) -> watch::Receiver<ConnectionState> {
        self.connection.subscribe()
    }

    /// Participants currently in the room (not counting this one).
    pub fn participants(&self) -> Vec<ParticipantSummary> {
        self.lock()
            .participants
            .values()
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn subscribed_tracks(&self) -> Vec<TrackSummary> {
        self.lock()
            .tracks
            .values()
            .map(|t| t.summary.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track_handle(&self, sid: &str) -> Result<SharedHandle, RoomError> {
        self.lock()
            .tracks
            .get(sid)
            .map(|t| t.handle.clone())
            .ok_or_else(|| RoomError::NoSuchTrack(sid.to_string()))
    }

    /// PCM frames of a subscribed audio track, resampled and remixed by the engine.
    pub fn audio_stream(
        &self,
        track_sid: &str,
        sample_rate: u32,
        channels: u32,
        frame_ms: u32,
    ) -> Result<AudioStream, RoomError> {
        AudioStream::open(
            self.track_handle(track_sid)?,
            sample_rate,
            channels,
            frame_ms,
        )
    }

    /// How long the receiver holds a subscribed track's media before handing it over, as
    /// WebRTC's inbound-rtp running totals since the track started. `None` until the track
    /// has emitted anything.
    pub async fn receive_delay(&self, track_sid: &str) -> Result<Option<ReceiveTotals>, RoomError> {
        Ok(self
            .stats(track_sid)
            .await?
            .iter()
            .find_map(|s| match &s.stats {
                Some(proto::rtc_stats::Stats::InboundRtp(r))
                    if r.inbound.jitter_buffer_emitted_count > 0 =>
                {
                    Some(ReceiveTotals {
                        emitted: r.inbound.jitter_buffer_emitted_count,
                        jitter_buffer_delay_s: r.inbound.jitter_buffer_delay,
                        target_delay_s: r.inbound.jitter_buffer_target_delay,
                        stretched_samples: (r.inbound.concealed_samples
                            + r.inbound.inserted_samples_for_deceleration)
                            as i64
                            - r.inbound.removed_samples_for_acceleration as i64,
                    })
                }
                _ => None,
            }))
    }

    /// What the receiver has taken in of a subscribed track so far, as WebRTC's inbound-rtp
    /// running totals (bytes, packets, losses, frames, freezes) and its current jitter, frame
    /// rate and size. `None` until the track's first packet.
    pub async fn inbound_stats(&self, track_sid: &str) -> Result<Option<InboundTotals>, RoomError> {
        Ok(self
            .stats(track_sid)
            .await?
            .iter()
            .find_map(|s| match &s.stats {
                Some(proto::rtc_stats::Stats::InboundRtp(r)) if r.received.packets_received > 0 => {
                    let i = &r.inbound;
                    Some(InboundTotals {
                        bytes_received: i.bytes_received,
                        packets_received: r.received.packets_received,
                        // Negative while duplicates outnumber losses (RFC 3550): none lost.
                        packets_lost: r.received.packets_lost.max(0) as u64,
                        jitter_s: r.received.jitter,
                        frames_decoded: u64::from(i.frames_decoded),
                        frames_per_second: i.frames_per_second,
                        frame_width: i.frame_width,
                        frame_height: i.frame_height,
                        freeze_count: u64::from(i.freeze_count),
                        total_freeze_duration_s: i.total_freeze_duration,
                        concealed_samples: i.concealed_samples,
                        total_samples_received: i.total_samples_received,
                    })
                }
                _ => None,
            }))
    }

    /// WebRTC's statistics of a subscribed track (GetStats on its handle).
    async fn stats(&self, track_sid: &str) -> Result<Vec<proto::RtcStats>, RoomError> {
        let handle = self.track_handle(track_sid)?;
        track_stats(handle.id()).await
    }

    /// I420 frames of a subscribed video track.
    pub fn video_stream(
        &self,
        track_sid: &str,
        queue_frames: usize,
    ) -> Result<VideoStream, RoomError> {
        VideoStream::open(self.track_handle(track_sid)?, queue_frames)
    }

    /// Leaves the room; returns once the library has closed it (at most 15 s). Handles are
    /// released when the `Room` is dropped.
    pub async fn disconnect(&self) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        self.left.store(true, std::sync::atomic::Ordering::Relaxed);
        self.connection.send_replace(ConnectionState::Disconnected);
        if Engine::is_disposed() {
            return Ok(()); // the library closed every room, and answers nothing any more
        }
        let async_id = engine.next_async_id();
        let reply = engine.request_async(
            "disconnect",
            async_id,
            Req::Disconnect(self.disconnect_request(async_id)),
        );
        match tokio::time::timeout(DISCONNECT_TIMEOUT, reply).await {
            Ok(reply) => reply.map(|_| ()).map_err(RoomError::from),
            Err(_) => Err(RoomError::Operation {
                operation: "disconnect",
                message: format!("the engine did not close the room within {DISCONNECT_TIMEOUT:?}"),
            }),
        }
    }

    /// Asks the engine to leave, and once it has closed the room (or after
    /// [`LEAVE_TIMEOUT`]) stops routing its events and releases its handles: remote tracks
    /// first, the room's own last (the engine looks the room up by its handle while leaving).
    /// On a thread of its own, so a runtime shutting down cannot cut it short and release the
    /// handles before the close.
    fn leave_in_background(&mut self, engine: &'static Engine) {
        let async_id = engine.next_async_id();
        let request = Req::Disconnect(self.disconnect_request(async_id));
        let handle = std::mem::replace(&mut self.handle, OwnedHandle::none());
        let local = std::mem::replace(&mut self.local, OwnedHandle::none());
        let state = self.state.clone();
        let room = self.name.clone();
        let reply = match engine.request_with_reply(async_id, request) {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::warn!(%room, error = %e, "cannot leave a dropped room");
                None
            }
        };
        tracing::info!(%room, "leaving a room dropped without disconnecting");
        let spawned = std::thread::Builder::new()
            .name("lk-leave".into())
            .spawn(move || {
                if let Some(mut reply) = reply {
                    let deadline = std::time::Instant::now() + LEAVE_TIMEOUT;
                    loop {
                        match reply.try_recv() {
                            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                                if std::time::Instant::now() < deadline
                                    && !Engine::is_disposed() =>
                            {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                                if !Engine::is_disposed() {
                                    tracing::warn!(%room, "the engine did not confirm leaving in time");
                                }
                                break;
                            }
                            _ => break,
                        }
                    }
                }
                engine.unroute_room(handle.id());
                state.lock().unwrap_or_else(|e| e.into_inner()).release_all();
                drop(local);
                drop(handle);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread leaving a dropped room");
        }
    }

    fn disconnect_request(&self, async_id: u64) -> proto::DisconnectRequest {
        proto::DisconnectRequest {
            room_handle: self.handle.id(),
            request_async_id: Some(async_id),
            reason: Some(DisconnectReason::ClientInitiated as i32),
        }
    }
}

/// WebRTC's statistics of a track, remote or local (GetStats on its handle). The caller keeps
/// the handle alive until this returns.
pub(crate) async fn track_stats(track_handle: u64) -> Result<Vec<proto::RtcStats>, RoomError> {
    let cb = Engine::get()?
        .call(
            "get_stats",
            |async_id| {
                Req::GetStats(proto::GetStatsRequest {
                    track_handle,
                    request_async_id: Some(async_id),
                })
            },
            |event| match event {
                Ev::GetStats(cb) => Some(cb),
                _ => None,
            },
        )
        .await?;
    match cb.error {
        Some(message) => Err(RoomError::Operation {
            operation: "get stats",
            message,
        }),
        None => Ok(cb.stats),
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.connection.send_replace(ConnectionState::Disconnected);
        let Ok(engine) = Engine::get() else { return };
        // The engine keeps a room it was never told to leave connected (and reconnecting)
        // even once its handle is gone: a job ended by a panic or an abort would leave a
        // ghost participant behind. Leave now; the handles go once it has left. (After
        // dispose the library closed every room and answers nothing: nothing to leave.)
        if !self.left.load(std::sync::atomic::Ordering::Relaxed) && !Engine::is_disposed() {
            return self.leave_in_background(engine);
        }
        engine.unroute_room(self.handle.id());
        // Closed (or disposed): remote handles go before the room's own handle.
        self.lock().release_all();
    }
}

/// A subscribed track's receive-delay totals (WebRTC inbound-rtp), summed over every sample
/// (audio) or frame (video) emitted so far: the mean over a window is the difference of two
/// readings divided by the difference of their counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceiveTotals {
    /// `jitterBufferEmittedCount`: samples (audio) or frames (video) handed over.
    pub emitted: u64,
    /// `jitterBufferDelay`, seconds: how long each actually waited in the jitter buffer.
    pub jitter_buffer_delay_s: f64,
    /// `jitterBufferTargetDelay`, seconds: the delay the receiver aimed for. For video this
    /// is what a frame's render time is set by (jitter, the expected decode time and the
    /// render delay), so it grows when decoding slows down on a busy machine.
    pub target_delay_s: f64,
    /// Audio: samples the receiver made up (concealment, slowing down) less those it cut
    /// (speeding up). Each one moves all later sound by a sample against the count of
    /// samples handed over: exact, where the delay means above are only sampled.
    pub stretched_samples: i64,
}

/// A subscribed track's inbound-rtp figures: running totals since the track started (a window's
/// figure is the difference of two readings) and the receiver's current estimates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InboundTotals {
    pub bytes_received: u64,
    pub packets_received: u64,
    /// Packets expected but never received (RTCP's cumulative loss).
    pub packets_lost: u64,
    /// Interarrival jitter now, seconds.
    pub jitter_s: f64,
    /// Video: frames decoded.
    pub frames_decoded: u64,
    /// Video: the decoded frame rate over the last second, as WebRTC measures it.
    pub frames_per_second: f64,
    pub frame_width: u32,
    pub frame_height: u32,
    /// Video: freezes (a frame later than max(3 x the mean gap, mean + 150 ms)) and their time.
    pub freeze_count: u64,
    pub total_freeze_duration_s: f64,
    /// Audio: samples made up for lost or late packets, and samples received.
    pub concealed_samples: u64,
    pub total_samples_received: u64,
}
