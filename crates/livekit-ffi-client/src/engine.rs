//! The process-wide LiveKit engine: one loaded FFI library, one event callback, and a router
//! that hands each event to whoever waits for it (an async request, a room, a media stream).
//!
//! Handle ownership: every handle the engine hands over is released exactly once, by this
//! process, through [`Engine::drop_handle`]. The engine keeps the handles it owns, so a
//! second release of the same handle never reaches the library (it is counted in
//! `handles_drop_failed` and logged). Once the library is disposed (at exit) it has closed
//! every room and forgets its handles: later releases are no-ops (`handles_after_dispose`).
//! Remote track handles are kept until their room is closed (see `livekit::room`), because the
//! library releases every track handle of a room itself when it closes it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::library::{FfiLibrary, LibraryError};
use super::proto;
use crate::frames::{AudioFrame, VideoFrame};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error("the LiveKit engine was already started with {0}")]
    AlreadyStarted(String),
    #[error("the LiveKit engine is not started")]
    NotStarted,
    #[error("FFI response could not be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("FFI request {0} got an unexpected response")]
    UnexpectedResponse(&'static str),
    #[error("FFI request {request} failed: {message}")]
    Request {
        request: &'static str,
        message: String,
    },
    #[error("the engine dropped the reply to {0}")]
    ReplyLost(&'static str),
}

/// Counters of what crossed the FFI boundary: tests and the soak benchmark use them to show
/// that every owned handle is released exactly once.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Handles this process took ownership of (each must be dropped once).
    pub handles_taken: AtomicU64,
    pub handles_dropped: AtomicU64,
    /// Releases of a handle this process did not own (any longer): a second release, stopped
    /// here, or one the library did not know.
    pub handles_drop_failed: AtomicU64,
    /// Handles let go after the library was disposed (it forgot them; nothing to release).
    pub handles_after_dispose: AtomicU64,
    /// The library's own "Attempted to drop unknown FFI handle" warnings: it released a
    /// handle this process had already released (a room closed after its tracks were let go).
    pub library_unknown_drops: AtomicU64,
    pub audio_frames: AtomicU64,
    pub video_frames: AtomicU64,
    pub frames_dropped_full: AtomicU64,
    pub frames_unrouted: AtomicU64,
}

type Pending = HashMap<u64, oneshot::Sender<proto::ffi_event::Message>>;

#[derive(Default)]
struct Router {
    pending: Mutex<Pending>,
    rooms: Mutex<HashMap<u64, mpsc::UnboundedSender<proto::room_event::Message>>>,
    audio: Mutex<HashMap<u64, mpsc::Sender<AudioFrame>>>,
    video: Mutex<HashMap<u64, mpsc::Sender<VideoFrame>>>,
}

pub struct Engine {
    lib: FfiLibrary,
    router: Router,
    next_async_id: AtomicU64,
    /// Handles this process owns and has not released, with how many times each was handed
    /// over (once, but for a handle the library hands over again).
    owned: Mutex<HashMap<u64, u32>>,
    pub stats: EngineStats,
}

static ENGINE: OnceLock<Engine> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());
/// Set when the library is disposed (or being disposed): no handle is released after it.
static DISPOSED: AtomicBool = AtomicBool::new(false);

impl Engine {
    /// Loads the library and installs the event callback, once per process.
    pub fn start(library: &Path) -> Result<&'static Engine, EngineError> {
        let _guard = START.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = ENGINE.get() {
            if engine.lib.path != library {
                tracing::debug!(loaded = %engine.lib.path.display(), requested = %library.display(), "engine already started");
            }
            return Ok(engine);
        }
        let lib = FfiLibrary::load(library)?;
        let engine = Engine {
            lib,
            router: Router::default(),
            next_async_id: AtomicU64::new(1),
            owned: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
        };
        let engine = ENGINE.get_or_init(|| engine);
        engine.lib.initialize(on_ffi_event, true);
        tracing::info!(library = %library.display(), "LiveKit engine started");
        Ok(engine)
    }

    /// Closes the rooms the engine still holds, as LiveKit's own SDKs do at exit: a process
    /// that exits with rooms open races the library's threads against its teardown and can
    /// die with a signal after its work is done. Waits at most `limit` (closing a room
    /// whose server is gone can hang); a no-op when the engine never started or was already
    /// shut down. From here on releasing a handle does nothing: the library closes every room
    /// (releasing their track handles itself) and lets go of every handle it handed out.
    pub fn shutdown(limit: std::time::Duration) {
        let Some(engine) = ENGINE.get() else { return };
        if DISPOSED.swap(true, Ordering::SeqCst) {
            return;
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            engine.lib.dispose();
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(limit).is_err() {
            tracing::warn!(?limit, "LiveKit engine did not close its rooms in time");
        }
    }

    pub fn get() -> Result<&'static Engine, EngineError> {
        ENGINE.get().ok_or(EngineError::NotStarted)
    }

    /// The library was disposed ([`Engine::shutdown`]): its rooms are closed, its handles gone.
    pub fn is_disposed() -> bool {
        DISPOSED.load(Ordering::SeqCst)
    }

    pub fn next_async_id(&self) -> u64 {
        self.next_async_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A synchronous request: the response is the answer.
    pub fn request(
        &self,
        message: proto::ffi_request::Message,
    ) -> Result<proto::ffi_response::Message, EngineError> {
        let bytes = proto::FfiRequest {
            message: Some(message),
        }
        .encode_to_vec();
        let response = proto::FfiResponse::decode(self.lib.request(&bytes).as_slice())?;
        response
            .message
            .ok_or(EngineError::UnexpectedResponse("(empty)"))
    }

    /// An asynchronous request: registers for the callback carrying `async_id` before sending,
    /// so a fast callback cannot be missed.
    pub async fn request_async(
        &self,
        name: &'static str,
        async_id: u64,
        message: proto::ffi_request::Message,
    ) -> Result<proto::ffi_event::Message, EngineError> {
        self.request_with_reply(async_id, message)?
            .await
            .map_err(|_| EngineError::ReplyLost(name))
    }

    /// One asynchronous call, the path every FFI call with a callback takes: `request` builds
    /// the message around the call's async id, and `reply` picks the callback it expects out of
    /// the event that answers it (anything else is an unexpected response).
    pub async fn call<T>(
        &self,
        name: &'static str,
        request: impl FnOnce(u64) -> proto::ffi_request::Message,
        reply: impl FnOnce(proto::ffi_event::Message) -> Option<T>,
    ) -> Result<T, EngineError> {
        let async_id = self.next_async_id();
        let event = self
            .request_async(name, async_id, request(async_id))
            .await?;
        reply(event).ok_or(EngineError::UnexpectedResponse(name))
    }

    /// Sends an asynchronous request; the receiver gets its callback.
    pub fn request_with_reply(
        &self,
        async_id: u64,
        message: proto::ffi_request::Message,
    ) -> Result<oneshot::Receiver<proto::ffi_event::Message>, EngineError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.router.pending).insert(async_id, tx);
        if let Err(e) = self.request(message) {
            lock(&self.router.pending).remove(&async_id);
            return Err(e);
        }
        Ok(rx)
    }

    /// Owned handles not yet released.
    pub fn live_handles(&self) -> i64 {
        self.stats.handles_taken.load(Ordering::Relaxed) as i64
            - self.stats.handles_dropped.load(Ordering::Relaxed) as i64
            - self.stats.handles_after_dispose.load(Ordering::Relaxed) as i64
    }

    fn take_handle(&self, handle: u64) -> u64 {
        if handle != 0 {
            self.stats.handles_taken.fetch_add(1, Ordering::Relaxed);
            *lock(&self.owned).entry(handle).or_insert(0) += 1;
        }
        handle
    }

    /// Gives up one ownership of `handle`: `None` when it was not owned (any longer), else
    /// whether that was the last one.
    fn disown(&self, handle: u64) -> Option<bool> {
        let mut owned = lock(&self.owned);
        let count = owned.get_mut(&handle)?;
        *count -= 1;
        let last = *count == 0;
        if last {
            owned.remove(&handle);
        }
        Some(last)
    }

    /// Releases an owned handle, once: a handle not owned (any longer) is not passed to the
    /// library (counted in `handles_drop_failed`), and after dispose nothing is.
    pub fn drop_handle(&self, handle: u64) {
        if handle == 0 {
            return;
        }
        if DISPOSED.load(Ordering::SeqCst) {
            // The library closed its rooms and let go of everything.
            if self.disown(handle).is_some() {
                self.stats
                    .handles_after_dispose
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match self.disown(handle) {
            None => {
                self.stats
                    .handles_drop_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    handle,
                    "FFI handle released twice (the second release is ignored)"
                );
            }
            // Handed over more than once by the library; it is released with the last owner.
            Some(false) => {
                self.stats.handles_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(true) => {
                if self.lib.drop_handle(handle) {
                    self.stats.handles_dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats
                        .handles_drop_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        handle,
                        "the engine did not know an FFI handle it had handed over"
                    );
                }
            }
        }
    }

    /// A handle given to the library with a request that takes it over: no longer ours.
    fn handed_over(&self, handle: u64) {
        if handle != 0 && self.disown(handle).is_some() {
            self.stats.handles_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn route_room(
        &self,
        room: u64,
        tx: mpsc::UnboundedSender<proto::room_event::Message>,
    ) {
        lock(&self.router.rooms).insert(room, tx);
    }

    pub(crate) fn unroute_room(&self, room: u64) {
        lock(&self.router.rooms).remove(&room);
    }

    pub(crate) fn route_audio(&self, stream: u64, tx: mpsc::Sender<AudioFrame>) {
        lock(&self.router.audio).insert(stream, tx);
    }

    pub(crate) fn unroute_audio(&self, stream: u64) {
        lock(&self.router.audio).remove(&stream);
    }

    pub(crate) fn route_video(&self, stream: u64, tx: mpsc::Sender<VideoFrame>) {
        lock(&self.router.video).insert(stream, tx);
    }

    pub(crate) fn unroute_video(&self, stream: u64) {
        lock(&self.router.video).remove(&stream);
    }

    fn dispatch(&self, event: proto::FfiEvent) {
        use proto::ffi_event::Message as E;
        let Some(message) = event.message else { return };
        match message {
            E::RoomEvent(ev) => {
                let Some(inner) = ev.message else { return };
                let tx = lock(&self.router.rooms).get(&ev.room_handle).cloned();
                let unsent = match tx {
                    Some(tx) => tx.send(inner).err().map(|e| e.0),
                    None => Some(inner),
                };
                if let Some(event) = unsent {
                    release_room_event_handles(self, event);
                }
            }
            E::AudioStreamEvent(ev) => self.on_audio(ev),
            E::VideoStreamEvent(ev) => self.on_video(ev),
            E::Logs(batch) => self.forward_logs(batch),
            E::Panic(p) => tracing::error!(message = %p.message, "LiveKit engine panicked"),
            other => {
                let Some(id) = async_id_of(&other) else {
                    return;
                };
                match lock(&self.router.pending).remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(other);
                    }
                    None => tracing::debug!(async_id = id, "callback nobody waits for"),
                }
            }
        }
    }

    fn on_audio(&self, ev: proto::AudioStreamEvent) {
        use proto::audio_stream_event::Message as A;
        let Some(A::FrameReceived(received)) = ev.message else {
            return; // end of stream: the stream's owner sees the channel close when it drops it
        };
        let frame = received.frame;
        let handle = self.take_handle(frame.handle.id);
        let info = frame.info;
        let n = (info.samples_per_channel * info.num_channels) as usize;
        let tx = lock(&self.router.audio).get(&ev.stream_handle).cloned();
        if let Some(tx) = tx {
            // SAFETY: the buffer holds n interleaved i16 samples and lives until its handle is dropped below.
            let samples =
                unsafe { std::slice::from_raw_parts(info.data_ptr as *const i16, n) }.to_vec();
            let frame = AudioFrame {
                samples,
                sample_rate: info.sample_rate,
                channels: info.num_channels,
                timestamp_us: monotonic_us(),
            };
            self.stats.audio_frames.fetch_add(1, Ordering::Relaxed);
            if tx.try_send(frame).is_err() {
                self.stats
                    .frames_dropped_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.stats.frames_unrouted.fetch_add(1, Ordering::Relaxed);
        }
        self.drop_handle(handle);
    }

    fn on_video(&self, ev: proto::VideoStreamEvent) {
        use proto::video_stream_event::Message as V;
        let Some(V::FrameReceived(received)) = ev.message else {
            return;
        };
        let buffer = received.buffer;
        let handle = self.take_handle(buffer.handle.id);
        let info = buffer.info;
        let tx = lock(&self.router.video).get(&ev.stream_handle).cloned();
        match tx {
            Some(tx) => {
                match copy_i420(&info, engine_time_to_monotonic_us(received.timestamp_us)) {
                    Some(frame) => {
                        self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
                        if tx.try_send(frame).is_err() {
                            self.stats
                                .frames_dropped_full
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => tracing::warn!(kind = info.r#type, "video frame is not I420; dropped"),
                }
            }
            None => {
                self.stats.frames_unrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.drop_handle(handle);
    }
}

/// Copies an engine-owned I420 buffer (planes with their own strides) into a packed frame.
fn copy_i420(info: &proto::VideoBufferInfo, timestamp_us: i64) -> Option<VideoFrame> {
    if info.r#type != proto::VideoBufferType::I420 as i32 || info.components.len() != 3 {
        return None;
    }
    let (w, h) = (info.width, info.height);
    let mut data = Vec::with_capacity(VideoFrame::i420_len(w, h));
    let chroma = (VideoFrame::chroma_width(w), VideoFrame::chroma_height(h));
    let plane_dims = [(w, h), chroma, chroma];
    for (component, (pw, ph)) in info.components.iter().zip(plane_dims) {
        if (component.stride as u64) < pw as u64
            || (component.size as u64) < component.stride as u64 * (ph as u64 - 1) + pw as u64
        {
            return None;
        }
        for row in 0..ph as usize {
            // SAFETY: the component is `size` bytes with `stride`, checked above to cover ph rows of pw bytes.
            let line = unsafe {
                std::slice::from_raw_parts(
                    (component.data_ptr as *const u8).add(row * component.stride as usize),
                    pw as usize,
                )
            };
            data.extend_from_slice(line);
        }
    }
    VideoFrame::from_i420(w, h, data, timestamp_us).ok()
}

/// Owned handles inside a room event that nobody will receive must still be released.
pub(crate) fn release_room_event_handles(engine: &Engine, event: proto::room_event::Message) {
    use proto::room_event::Message as R;
    let handles: Vec<u64> = match event {
        R::ParticipantConnected(p) => vec![p.info.handle.id],
        R::TrackPublished(p) => vec![p.publication.handle.id],
        R::TrackSubscribed(t) => vec![t.track.handle.id],
        R::TextStreamOpened(t) => vec![t.reader.handle.id],
        R::ByteStreamOpened(b) => vec![b.reader.handle.id],
        R::DataPacketReceived(d) => match d.value {
            Some(proto::data_packet_received::Value::User(u)) => vec![u.data.handle.id],
            _ => vec![],
        },
        R::DataTrackPublished(d) => vec![d.track.handle.id],
        R::LocalTrackRepublished(r) => vec![r.publication_handle],
        _ => vec![],
    };
    for h in handles {
        engine.drop_handle(engine.take_handle(h));
    }
}

fn async_id_of(message: &proto::ffi_event::Message) -> Option<u64> {
    use proto::ffi_event::Message as E;
    Some(match message {
        E::Connect(c) => c.async_id,
        E::Disconnect(c) => c.async_id,
        E::Dispose(c) => c.async_id,
        E::PublishTrack(c) => c.async_id,
        E::UnpublishTrack(c) => c.async_id,
        E::PublishData(c) => c.async_id,
        E::PublishTranscription(c) => c.async_id,
        E::CaptureAudioFrame(c) => c.async_id,
        E::SetLocalMetadata(c) => c.async_id,
        E::SetLocalName(c) => c.async_id,
        E::SetLocalAttributes(c) => c.async_id,
        E::GetStats(c) => c.async_id,
        E::GetSessionStats(c) => c.async_id,
        E::ChatMessage(c) => c.async_id,
        E::SendText(c) => c.async_id,
        E::TextStreamReaderReadAll(c) => c.async_id,
        E::SendStreamHeader(c) => c.async_id,
        E::SendStreamChunk(c) => c.async_id,
        E::SendStreamTrailer(c) => c.async_id,
        E::SendBytes(c) => c.async_id,
        E::SimulateScenario(c) => c.async_id,
        _ => return None,
    })
}

impl Engine {
    fn forward_logs(&self, batch: proto::LogBatch) {
        for record in &batch.records {
            if record
                .message
                .starts_with("Attempted to drop unknown FFI handle")
            {
                self.stats
                    .library_unknown_drops
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        forward_logs(batch);
    }
}

fn forward_logs(batch: proto::LogBatch) {
    for record in batch.records {
        let level = proto::LogLevel::try_from(record.level).unwrap_or(proto::LogLevel::LogInfo);
        let (target, message) = (record.target.as_str(), record.message.as_str());
        match level {
            proto::LogLevel::LogError => {
                tracing::error!(target: "livekit", ffi_target = target, "{message}")
            }
            proto::LogLevel::LogWarn => {
                tracing::warn!(target: "livekit", ffi_target = target, "{message}")
            }
            proto::LogLevel::LogInfo => {
                tracing::debug!(target: "livekit", ffi_target = target, "{message}")
            }
            _ => tracing::trace!(target: "livekit", ffi_target = target, "{message}"),
        }
    }
}

/// The process's clock origin: an `Instant` and the same moment on CLOCK_MONOTONIC.
fn origin() -> &'static (std::time::Instant, i64) {
    static ORIGIN: OnceLock<(std::time::Instant, i64)> = OnceLock::new();
    ORIGIN.get_or_init(|| (std::time::Instant::now(), clock_monotonic_us()))
}

/// Microseconds on a process-wide monotonic clock.
pub fn monotonic_us() -> i64 {
    origin().0.elapsed().as_micros() as i64
}

fn clock_monotonic_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

/// How far an engine timestamp may lie from the moment its frame is handed over and still
/// be believed (render times run a few to a few hundred ms ahead).
const ENGINE_TIME_PLAUSIBLE_US: i64 = 2_000_000;

/// A received frame's time on the `monotonic_us` clock. libwebrtc stamps each decoded video
/// frame with its render time on CLOCK_MONOTONIC, derived from the sender's capture
/// timestamps and the receiver's jitter buffer: unlike the moment the frame reaches this
/// process, it does not move with how late a busy machine runs the callback. A missing or
/// implausible stamp falls back to that moment.
pub fn engine_time_to_monotonic_us(engine_us: i64) -> i64 {
    let now = monotonic_us();
    if engine_us <= 0 {
        return now;
    }
    let mapped = engine_us - origin().1;
    if (mapped - now).abs() > ENGINE_TIME_PLAUSIBLE_US {
        now
    } else {
        mapped
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a router lock cannot leave the maps inconsistent (single inserts
    // and removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn on_ffi_event(data: *const u8, len: usize) {
    // Never unwind into the library's thread.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the library passes a valid buffer for the duration of the call.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        let Some(engine) = ENGINE.get() else { return };
        match proto::FfiEvent::decode(bytes) {
            Ok(event) => engine.dispatch(event),
            Err(e) => tracing::error!(error = %e, "undecodable FFI event"),
        }
    });
}

/// An FFI handle owned by this process, released exactly once when dropped.
#[derive(Debug)]
pub struct OwnedHandle(u64);

impl OwnedHandle {
    pub fn new(id: u64) -> Self {
        if let Some(engine) = ENGINE.get() {
            engine.take_handle(id);
        }
        Self(id)
    }

    /// Owns nothing: what a handle given away elsewhere leaves in its place.
    pub fn none() -> Self {
        Self(0)
    }

    pub fn from_proto(h: proto::FfiOwnedHandle) -> Self {
        Self::new(h.id)
    }

    pub fn id(&self) -> u64 {
        self.0
    }

    /// For requests that take ownership of the handle (reading a data stream consumes its
    /// reader): counted as released, never dropped a second time.
    pub fn hand_over(self) -> u64 {
        let id = self.0;
        if let Some(engine) = ENGINE.get() {
            engine.handed_over(id);
        }
        std::mem::forget(self);
        id
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        if let Some(engine) = ENGINE.get() {
            engine.drop_handle(self.0);
        }
    }
}

/// Keeps an `Arc` handle shareable between a track and its streams.
pub type SharedHandle = Arc<OwnedHandle>;
