//! A joined LiveKit room: connect, typed room events, remote track streams, publishing.
//!
//! Handles: the library releases every remote track handle of a room itself when it closes
//! the room (leaving a placeholder for the client to release), and warns about each one the
//! client already let go. So remote track handles that end (unsubscribed, their participant
//! gone) are kept until the room is closed, and released after it: on `disconnect` (which
//! waits for the close), or, for a room dropped without it, on the thread that leaves in the
//! background once the library confirms. After the library is disposed nothing is released.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::engine::{Engine, EngineError, OwnedHandle, SharedHandle, release_room_event_handles};
use super::proto;
use super::proto::ffi_event::Message as Ev;
use super::proto::ffi_request::Message as Req;
use super::tracks::{AudioStream, LocalAudioTrack, LocalVideoTrack, VideoStream};

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

/// An incoming text stream; read it with [`TextStreamReader::read_all`].
#[derive(Debug)]
pub struct TextStreamReader {
    handle: OwnedHandle,
    pub participant: String,
    pub stream_id: String,
    pub topic: String,
    pub attributes: HashMap<String, String>,
}

impl TextStreamReader {
    pub async fn read_all(self) -> Result<String, RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        // The read request takes the reader's handle over; an unread reader releases it on drop.
        let req = proto::TextStreamReaderReadAllRequest {
            reader_handle: self.handle.hand_over(),
            request_async_id: Some(async_id),
        };
        match engine
            .request_async("text_read_all", async_id, Req::TextReadAll(req))
            .await?
        {
            Ev::TextStreamReaderReadAll(cb) => match cb.result {
                Some(proto::text_stream_reader_read_all_callback::Result::Content(text)) => {
                    Ok(text)
                }
                Some(proto::text_stream_reader_read_all_callback::Result::Error(e)) => {
                    Err(RoomError::Operation {
                        operation: "read text stream",
                        message: e.description,
                    })
                }
                None => Ok(String::new()),
            },
            _ => Err(EngineError::UnexpectedResponse("text_read_all").into()),
        }
    }
}

#[derive(Debug)]
pub enum RoomEvent {
    ParticipantConnected(ParticipantSummary),
    ParticipantDisconnected {
        identity: String,
        reason: DisconnectReason,
    },
    ParticipantAttributesChanged {
        identity: String,
        attributes: HashMap<String, String>,
        changed: HashMap<String, String>,
    },
    TrackPublished(TrackSummary),
    TrackUnpublished {
        participant: String,
        sid: String,
    },
    TrackSubscribed(TrackSummary),
    TrackUnsubscribed {
        participant: String,
        sid: String,
    },
    TrackSubscriptionFailed {
        participant: String,
        sid: String,
        error: String,
    },
    TrackMuted {
        participant: String,
        sid: String,
    },
    TrackUnmuted {
        participant: String,
        sid: String,
    },
    ActiveSpeakersChanged {
        identities: Vec<String>,
    },
    ConnectionQualityChanged {
        identity: String,
        quality: ConnectionQuality,
    },
    DataReceived {
        participant: String,
        topic: Option<String>,
        payload: Vec<u8>,
        reliable: bool,
    },
    TextStream(TextStreamReader),
    TranscriptionReceived {
        participant: Option<String>,
        track_sid: Option<String>,
        segments: Vec<proto::TranscriptionSegment>,
    },
    RoomMetadataChanged {
        metadata: String,
    },
    Reconnecting,
    Reconnected,
    Disconnected {
        reason: DisconnectReason,
    },
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
/// Ended remote tracks whose handles wait for the room to close; past this, the oldest is
/// released at once (the library then warns about it when the room closes).
const MAX_ENDED_TRACKS: usize = 1024;

struct RemoteTrackEntry {
    handle: SharedHandle,
    summary: TrackSummary,
}

#[derive(Default)]
struct RoomState {
    participants: HashMap<String, (OwnedHandle, ParticipantSummary)>,
    publications: HashMap<String, (OwnedHandle, TrackSummary)>,
    tracks: HashMap<String, RemoteTrackEntry>,
    /// Handles of remote tracks that ended, by track sid, kept until the room is closed.
    ended_tracks: VecDeque<(String, SharedHandle)>,
}

impl RoomState {
    /// A remote track ended: its handle waits for the room to close.
    fn track_ended(&mut self, sid: String, entry: RemoteTrackEntry) {
        if self.ended_tracks.len() >= MAX_ENDED_TRACKS {
            self.ended_tracks.pop_front();
        }
        self.ended_tracks.push_back((sid, entry.handle));
    }

    /// Every handle, remote tracks first (ended ones included); the room's own go after.
    fn release_all(&mut self) {
        self.tracks.clear();
        self.ended_tracks.clear();
        self.publications.clear();
        self.participants.clear();
    }
}

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
        let async_id = engine.next_async_id();
        let req = proto::ConnectRequest {
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
        };
        let result = match engine
            .request_async("connect", async_id, Req::Connect(req))
            .await?
        {
            Ev::Connect(cb) => match cb.message {
                Some(proto::connect_callback::Message::Result(r)) => r,
                Some(proto::connect_callback::Message::Error(message)) => {
                    return Err(RoomError::Connect {
                        url: url.to_string(),
                        message,
                    });
                }
                None => return Err(EngineError::UnexpectedResponse("connect").into()),
            },
            _ => return Err(EngineError::UnexpectedResponse("connect").into()),
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
        let handle = self.track_handle(track_sid)?;
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::GetStatsRequest {
            track_handle: handle.id(),
            request_async_id: Some(async_id),
        };
        let Ev::GetStats(cb) = engine
            .request_async("get_stats", async_id, Req::GetStats(req))
            .await?
        else {
            return Err(EngineError::UnexpectedResponse("get_stats").into());
        };
        if let Some(message) = cb.error {
            return Err(RoomError::Operation {
                operation: "get stats",
                message,
            });
        }
        Ok(cb.stats.iter().find_map(|s| match &s.stats {
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

    /// I420 frames of a subscribed video track.
    pub fn video_stream(
        &self,
        track_sid: &str,
        queue_frames: usize,
    ) -> Result<VideoStream, RoomError> {
        VideoStream::open(self.track_handle(track_sid)?, queue_frames)
    }

    pub async fn publish_audio(
        &self,
        name: &str,
        source: TrackSource,
        sample_rate: u32,
        channels: u32,
    ) -> Result<LocalAudioTrack, RoomError> {
        LocalAudioTrack::publish(&self.local, name, source, sample_rate, channels).await
    }

    pub async fn publish_video(
        &self,
        name: &str,
        source: TrackSource,
        width: u32,
        height: u32,
    ) -> Result<LocalVideoTrack, RoomError> {
        LocalVideoTrack::publish(&self.local, name, source, width, height).await
    }

    pub async fn publish_data(
        &self,
        payload: &[u8],
        topic: Option<&str>,
        reliable: bool,
        destinations: &[String],
    ) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let owned = payload.to_vec();
        let req = proto::PublishDataRequest {
            local_participant_handle: self.local.id(),
            data_ptr: owned.as_ptr() as u64,
            data_len: owned.len() as u64,
            reliable,
            topic: topic.map(str::to_string),
            destination_identities: destinations.to_vec(),
            request_async_id: Some(async_id),
            ..Default::default()
        };
        // The payload stays owned by the task until the engine confirms, even if the caller gives up.
        let done = tokio::spawn(async move {
            let r = engine
                .request_async("publish_data", async_id, Req::PublishData(req))
                .await;
            drop(owned);
            r
        });
        match done.await.map_err(|e| RoomError::Operation {
            operation: "publish data",
            message: e.to_string(),
        })?? {
            Ev::PublishData(cb) => callback_result("publish data", cb.error),
            _ => Err(EngineError::UnexpectedResponse("publish_data").into()),
        }
    }

    /// Sends a whole text stream (LiveKit data streams) on `topic` with attributes; with
    /// `sender_identity` the stream is attributed to that participant (as agents do for the
    /// transcriptions of the people they caption).
    pub async fn send_text(
        &self,
        topic: &str,
        text: &str,
        attributes: &HashMap<String, String>,
        stream_id: Option<&str>,
        sender_identity: Option<&str>,
    ) -> Result<String, RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::StreamSendTextRequest {
            local_participant_handle: self.local.id(),
            options: proto::StreamTextOptions {
                topic: topic.to_string(),
                attributes: attributes.clone(),
                id: stream_id.map(str::to_string),
                sender_identity: sender_identity.map(str::to_string),
                ..Default::default()
            },
            text: text.to_string(),
            request_async_id: Some(async_id),
        };
        match engine
            .request_async("send_text", async_id, Req::SendText(req))
            .await?
        {
            Ev::SendText(cb) => match cb.result {
                Some(proto::stream_send_text_callback::Result::Info(info)) => Ok(info.stream_id),
                Some(proto::stream_send_text_callback::Result::Error(e)) => {
                    Err(RoomError::Operation {
                        operation: "send text",
                        message: e.description,
                    })
                }
                None => Err(EngineError::UnexpectedResponse("send_text").into()),
            },
            _ => Err(EngineError::UnexpectedResponse("send_text").into()),
        }
    }

    /// Legacy transcription packet attributed to `participant_identity`'s track.
    pub async fn publish_transcription(
        &self,
        participant_identity: &str,
        track_sid: &str,
        segments: Vec<proto::TranscriptionSegment>,
    ) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::PublishTranscriptionRequest {
            local_participant_handle: self.local.id(),
            participant_identity: participant_identity.to_string(),
            track_id: track_sid.to_string(),
            segments,
            request_async_id: Some(async_id),
        };
        match engine
            .request_async(
                "publish_transcription",
                async_id,
                Req::PublishTranscription(req),
            )
            .await?
        {
            Ev::PublishTranscription(cb) => callback_result("publish transcription", cb.error),
            _ => Err(EngineError::UnexpectedResponse("publish_transcription").into()),
        }
    }

    pub async fn set_attributes(
        &self,
        attributes: &HashMap<String, String>,
    ) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::SetLocalAttributesRequest {
            local_participant_handle: self.local.id(),
            attributes: attributes
                .iter()
                .map(|(k, v)| proto::AttributesEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            request_async_id: Some(async_id),
        };
        match engine
            .request_async("set_attributes", async_id, Req::SetLocalAttributes(req))
            .await?
        {
            Ev::SetLocalAttributes(cb) => callback_result("set attributes", cb.error),
            _ => Err(EngineError::UnexpectedResponse("set_local_attributes").into()),
        }
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

    /// Stops publishing one of this participant's tracks.
    pub async fn unpublish(&self, track_sid: &str) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::UnpublishTrackRequest {
            local_participant_handle: self.local.id(),
            track_sid: track_sid.to_string(),
            stop_on_unpublish: true,
            request_async_id: Some(async_id),
        };
        match engine
            .request_async("unpublish_track", async_id, Req::UnpublishTrack(req))
            .await?
        {
            Ev::UnpublishTrack(cb) => callback_result("unpublish track", cb.error),
            _ => Err(EngineError::UnexpectedResponse("unpublish_track").into()),
        }
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

fn callback_result(operation: &'static str, error: Option<String>) -> Result<(), RoomError> {
    match error {
        Some(message) if !message.is_empty() => Err(RoomError::Operation { operation, message }),
        _ => Ok(()),
    }
}

fn participant_summary(info: proto::ParticipantInfo) -> ParticipantSummary {
    ParticipantSummary {
        kind: proto::ParticipantKind::try_from(info.kind)
            .unwrap_or(proto::ParticipantKind::Standard),
        attributes: info.attributes,
        identity: info.identity,
        name: info.name,
        sid: info.sid,
    }
}

fn track_summary(participant: &str, info: proto::TrackPublicationInfo) -> TrackSummary {
    TrackSummary {
        participant: participant.to_string(),
        kind: TrackKind::try_from(info.kind).unwrap_or(TrackKind::KindUnknown),
        source: TrackSource::try_from(info.source).unwrap_or(TrackSource::SourceUnknown),
        sid: info.sid,
        name: info.name,
        width: info.width,
        height: info.height,
        muted: info.muted,
    }
}

fn attributes_map(entries: Vec<proto::AttributesEntry>) -> HashMap<String, String> {
    entries.into_iter().map(|a| (a.key, a.value)).collect()
}

/// Turns raw engine events into [`RoomEvent`]s, taking ownership of every handle they carry.
/// Moves the connection's state from `from` to `to`; from any other state nothing changes
/// (a `Reconnected` after the room was left does not bring it back).
fn move_connection(
    connection: &watch::Sender<ConnectionState>,
    from: ConnectionState,
    to: ConnectionState,
) {
    connection.send_if_modified(|state| {
        let change = *state == from;
        if change {
            *state = to;
        }
        change
    });
}

async fn run_room_events(
    mut raw: mpsc::UnboundedReceiver<proto::room_event::Message>,
    events: mpsc::UnboundedSender<RoomEvent>,
    state: Arc<Mutex<RoomState>>,
    connection: watch::Sender<ConnectionState>,
) {
    use proto::room_event::Message as R;
    while let Some(raw_event) = raw.recv().await {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let event = match raw_event {
            R::ParticipantConnected(p) => {
                let owned = p.info;
                let summary = participant_summary(owned.info);
                st.participants.insert(
                    summary.identity.clone(),
                    (OwnedHandle::from_proto(owned.handle), summary.clone()),
                );
                Some(RoomEvent::ParticipantConnected(summary))
            }
            R::ParticipantDisconnected(p) => {
                st.participants.remove(&p.participant_identity);
                st.publications
                    .retain(|_, (_, t)| t.participant != p.participant_identity);
                let gone: Vec<String> = st
                    .tracks
                    .iter()
                    .filter(|(_, t)| t.summary.participant == p.participant_identity)
                    .map(|(sid, _)| sid.clone())
                    .collect();
                for sid in gone {
                    if let Some(entry) = st.tracks.remove(&sid) {
                        st.track_ended(sid, entry);
                    }
                }
                Some(RoomEvent::ParticipantDisconnected {
                    identity: p.participant_identity,
                    reason: DisconnectReason::try_from(p.disconnect_reason)
                        .unwrap_or(DisconnectReason::UnknownReason),
                })
            }
            R::ParticipantAttributesChanged(a) => {
                let attributes = attributes_map(a.attributes);
                if let Some((_, p)) = st.participants.get_mut(&a.participant_identity) {
                    p.attributes = attributes.clone();
                }
                Some(RoomEvent::ParticipantAttributesChanged {
                    identity: a.participant_identity,
                    attributes,
                    changed: attributes_map(a.changed_attributes),
                })
            }
            R::TrackPublished(t) => {
                let publication = t.publication;
                let summary = track_summary(&t.participant_identity, publication.info);
                st.publications.insert(
                    summary.sid.clone(),
                    (OwnedHandle::from_proto(publication.handle), summary.clone()),
                );
                Some(RoomEvent::TrackPublished(summary))
            }
            R::TrackUnpublished(t) => {
                st.publications.remove(&t.publication_sid);
                Some(RoomEvent::TrackUnpublished {
                    participant: t.participant_identity,
                    sid: t.publication_sid,
                })
            }
            R::TrackSubscribed(t) => {
                let track = t.track;
                let info = track.info;
                let summary = match st.publications.get(&info.sid) {
                    Some((_, s)) => s.clone(),
                    None => TrackSummary {
                        participant: t.participant_identity.clone(),
                        sid: info.sid.clone(),
                        name: info.name.clone(),
                        kind: TrackKind::try_from(info.kind).unwrap_or(TrackKind::KindUnknown),
                        source: TrackSource::SourceUnknown,
                        width: 0,
                        height: 0,
                        muted: info.muted,
                    },
                };
                // The library now knows this sid by the new handle only: an earlier one of
                // the same track is released now (it would not be at the close).
                st.ended_tracks.retain(|(sid, _)| *sid != info.sid);
                st.tracks.insert(
                    info.sid,
                    RemoteTrackEntry {
                        handle: Arc::new(OwnedHandle::from_proto(track.handle)),
                        summary: summary.clone(),
                    },
                );
                Some(RoomEvent::TrackSubscribed(summary))
            }
            R::TrackUnsubscribed(t) => {
                if let Some(entry) = st.tracks.remove(&t.track_sid) {
                    st.track_ended(t.track_sid.clone(), entry);
                }
                Some(RoomEvent::TrackUnsubscribed {
                    participant: t.participant_identity,
                    sid: t.track_sid,
                })
            }
            R::TrackSubscriptionFailed(t) => Some(RoomEvent::TrackSubscriptionFailed {
                participant: t.participant_identity,
                sid: t.track_sid,
                error: t.error,
            }),
            R::TrackMuted(t) => Some(RoomEvent::TrackMuted {
                participant: t.participant_identity,
                sid: t.track_sid,
            }),
            R::TrackUnmuted(t) => Some(RoomEvent::TrackUnmuted {
                participant: t.participant_identity,
                sid: t.track_sid,
            }),
            R::ActiveSpeakersChanged(a) => Some(RoomEvent::ActiveSpeakersChanged {
                identities: a.participant_identities,
            }),
            R::ConnectionQualityChanged(c) => Some(RoomEvent::ConnectionQualityChanged {
                identity: c.participant_identity,
                quality: ConnectionQuality::try_from(c.quality)
                    .unwrap_or(ConnectionQuality::QualityPoor),
            }),
            R::DataPacketReceived(d) => match d.value {
                Some(proto::data_packet_received::Value::User(user)) => {
                    let handle = OwnedHandle::from_proto(user.data.handle);
                    let info = user.data.data;
                    let payload = if info.data_ptr == 0 || info.data_len == 0 {
                        Vec::new()
                    } else {
                        // SAFETY: the engine keeps data_len bytes at data_ptr alive until `handle` drops.
                        unsafe {
                            std::slice::from_raw_parts(
                                info.data_ptr as *const u8,
                                info.data_len as usize,
                            )
                        }
                        .to_vec()
                    };
                    drop(handle);
                    Some(RoomEvent::DataReceived {
                        participant: d.participant_identity,
                        topic: user.topic,
                        payload,
                        reliable: d.kind == proto::DataPacketKind::KindReliable as i32,
                    })
                }
                _ => None,
            },
            R::TextStreamOpened(t) => {
                let reader = t.reader;
                let info = reader.info;
                Some(RoomEvent::TextStream(TextStreamReader {
                    handle: OwnedHandle::from_proto(reader.handle),
                    participant: t.participant_identity,
                    stream_id: info.stream_id,
                    topic: info.topic,
                    attributes: info.attributes,
                }))
            }
            R::TranscriptionReceived(t) => Some(RoomEvent::TranscriptionReceived {
                participant: t.participant_identity,
                track_sid: t.track_sid,
                segments: t.segments,
            }),
            R::RoomMetadataChanged(m) => Some(RoomEvent::RoomMetadataChanged {
                metadata: m.metadata,
            }),
            R::Reconnecting(_) => {
                move_connection(
                    &connection,
                    ConnectionState::Connected,
                    ConnectionState::Reconnecting,
                );
                Some(RoomEvent::Reconnecting)
            }
            R::Reconnected(_) => {
                move_connection(
                    &connection,
                    ConnectionState::Reconnecting,
                    ConnectionState::Connected,
                );
                Some(RoomEvent::Reconnected)
            }
            R::Disconnected(d) => {
                connection.send_replace(ConnectionState::Disconnected);
                Some(RoomEvent::Disconnected {
                    reason: DisconnectReason::try_from(d.reason)
                        .unwrap_or(DisconnectReason::UnknownReason),
                })
            }
            other => {
                if let Ok(engine) = Engine::get() {
                    release_room_event_handles(engine, other);
                }
                None
            }
        };
        drop(st);
        if let Some(event) = event {
            let end = matches!(event, RoomEvent::Disconnected { .. });
            if let Err(unsent) = events.send(event) {
                drop(unsent); // nobody listens; handles inside (text readers) release on drop
            }
            if end {
                break;
            }
        }
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
