//! A room's composite recording: feeds every camera, screen share and microphone of the room
//! into the recording pipeline, keeps the layout up to date (arrivals, departures, mutes,
//! the active speaker), spools the MP4 bytes to disk and hands the spool to storage, which
//! uploads it while the meeting runs. A room where nobody ever turns a camera on is recorded
//! the same way: the pipeline's black base carries the video track (why not an audio-only
//! file: see `recording::pipeline`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audio::denoise::FRAME;
use crate::captions::journal::unix_ms;
use crate::config::RecordingConfig;
use crate::livekit::TrackSource;
use crate::livekit::room::ReceiveTotals;
use crate::media::VideoFrame;
use crate::recording::layout::{Scene, arrange};
use crate::recording::pipeline::{AudioInput, CompositePipeline, PipelineSettings};
use crate::recording::spool::SpoolWriter;
use crate::recording::storage::Storage;
use crate::recording::{RecordingError, RecordingMeta, SpeakerSelector};
use crate::session::media::{AudioSink, HeardAudio};

use super::per_participant::{self, PerParticipant};

pub use crate::protocol::{RECORDING_ATTRIBUTE, RECORDING_SWITCH};

/// Rooms being recorded now, and recordings delivered to storage (metrics).
pub static RECORDINGS_ACTIVE: std::sync::LazyLock<prometheus::IntGauge> =
    std::sync::LazyLock::new(|| {
        crate::metrics::gauge(
            "meeting_agent_recordings_active",
            "Rooms being recorded now.",
        )
    });
pub static RECORDINGS_STORED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        crate::metrics::counter(
            "meeting_agent_recordings_stored_total",
            "Recordings this process delivered to storage.",
        )
    });

/// Recording for the whole process: settings, storage, and where metadata goes.
#[derive(Clone)]
pub struct Recorder {
    pub config: RecordingConfig,
    pub dir: PathBuf,
    pub storage: Arc<Storage>,
    /// The recording graph, checked at start.
    pub pipeline: PipelineSettings,
    pub store: Option<crate::store::Store>,
    /// Who posts the recording's link into the meeting's thread.
    pub bot_user: String,
    /// `recording.started` and `recording.ready` for webhooks.
    pub events: Option<crate::integrations::Events>,
}

impl Recorder {
    /// A recorder that records: GStreamer, its plug-ins and the graphs are checked here.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, RecordingError> {
        crate::recording::pipeline::init()?;
        let recorder = Self::for_storage(config)?;
        recorder.pipeline.check()?;
        Ok(recorder)
    }

    /// For what only manages stored recordings (list, link, delete, retention): the graphs are
    /// read but GStreamer is neither started nor probed.
    pub fn for_storage(config: &crate::config::Config) -> Result<Self, RecordingError> {
        let pipeline = PipelineSettings::from_config(&config.recording)?;
        let dir = config.recordings_dir();
        Ok(Self {
            config: config.recording.clone(),
            pipeline,
            storage: Arc::new(Storage::from_config(&config.recording, &dir)?),
            dir,
            store: None,
            bot_user: config.store.bot_user.clone(),
            events: None,
        })
    }

    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.store = Some(store);
        self
    }

    pub fn with_events(mut self, events: crate::integrations::Events) -> Self {
        self.events = Some(events);
        self
    }

    /// A `recording.*` webhook event about `meta` (the link comes from the control API:
    /// `GET /v1/recordings/{id}/link`, with the receiver's own key).
    fn event(&self, event_type: &'static str, meta: &RecordingMeta) {
        if let Some(events) = &self.events {
            let data = serde_json::json!({
                "recording_id": meta.id,
                "room": meta.room,
                "started_at_ms": meta.started_unix_ms,
                "ended_at_ms": meta.ended_unix_ms,
                "duration_ms": meta.duration_ms,
                "size_bytes": meta.size_bytes,
                "layout": meta.layout,
                "status": meta.status,
                "kind": meta.kind,
                "participant": meta.participant,
                "parent": meta.parent,
                "link": format!("/v1/recordings/{}/link", meta.id),
            });
            events.emit_in_background(crate::integrations::Event::new(
                event_type,
                Some(&meta.room),
                &meta.id,
                unix_ms() as i64,
                data,
            ));
        }
    }

    /// Posts the recording into the thread of the meeting it belongs to (the room's newest
    /// meeting that started before it), with a playback link.
    async fn post_to_thread(
        &self,
        store: &crate::store::Store,
        meta: &RecordingMeta,
    ) -> Result<(), String> {
        let meetings = store
            .meetings(Some(&meta.room))
            .await
            .map_err(|e| e.to_string())?;
        let Some(meeting) = meetings
            .into_iter()
            .find(|m| m.started_at_ms <= meta.started_unix_ms + 5_000)
        else {
            return Ok(()); // recorded without a meeting thread (store attached later)
        };
        let expiry = Duration::from_secs(self.config.link_expiry_secs);
        let link = self
            .storage
            .link(meta, expiry)
            .await
            .map_err(|e| e.to_string())?;
        let minutes = meta.duration_ms.unwrap_or(0) as f64 / 60_000.0;
        let text = format!(
            "Recording ({minutes:.1} min, {layout} layout, {who}): {link}\nThis link works for {hours:.0} h; \
             a fresh one: GET /v1/recordings/{id}/link or `meeting-agent recordings link {id}`.",
            layout = meta.layout,
            who = meta.participants.join(", "),
            hours = expiry.as_secs_f64() / 3600.0,
            id = meta.id,
        );
        let message = crate::store::Message {
            id: format!("{}/recording/{}", meeting.id, meta.id),
            conversation_id: meeting.id.clone(),
            sender_id: self.bot_user.clone(),
            recipient_id: None,
            reply_to: Some(meeting.thread_id.clone()),
            kind: "recording".into(),
            text,
            created_at_ms: unix_ms() as i64,
        };
        store.post(&[message]).await.map_err(|e| e.to_string())
    }

    /// How recordings are published as live HLS, if they are: two-second segments, the
    /// encoder's key-frame interval (`pipelines/video-encoder.gst`'s `keyframe_frames`).
    pub fn live_settings(&self) -> Option<crate::recording::LiveHlsSettings> {
        self.config
            .live_hls
            .then_some(crate::recording::LiveHlsSettings {
                segment_secs: LIVE_SEGMENT_SECS,
                window: self.config.live_hls_window_segments,
            })
    }

    /// Delivers what earlier processes left in the spool (a crash, an upload cut short).
    pub fn recover_in_background(&self) -> JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let live = recorder.live_settings();
            for result in recorder
                .storage
                .recover_with_live(&recorder.dir, live)
                .await
            {
                match result {
                    Ok(meta) => recorder.delivered(meta).await,
                    Err(e) => tracing::error!(error = %e, "recovering a spooled recording failed"),
                }
            }
        })
    }

    /// Deletes recordings older than `retention_days`, now and every hour (0: never).
    pub fn retention_in_background(&self) -> Option<JoinHandle<()>> {
        let days = self.config.retention_days;
        if days == 0 {
            return None;
        }
        let recorder = self.clone();
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                let cutoff = unix_ms() as i64 - days as i64 * 86_400_000;
                match recorder.delete_older_than(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, days, "recordings past retention deleted"),
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; retried in an hour")
                    }
                }
            }
        }))
    }

    /// Deletes every stored recording that started before `cutoff_unix_ms`; how many.
    pub async fn delete_older_than(&self, cutoff_unix_ms: i64) -> Result<usize, RecordingError> {
        let mut deleted = 0;
        for meta in self.storage.list().await? {
            if meta.started_unix_ms < cutoff_unix_ms {
                self.delete(&meta).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes a recording from storage and from the store.
    pub async fn delete(&self, meta: &RecordingMeta) -> Result<(), RecordingError> {
        self.storage.delete(meta).await?;
        if let Some(store) = &self.store
            && let Err(e) = store.delete_recording(&meta.id).await
        {
            tracing::warn!(error = %e, id = %meta.id, "recording deleted from storage but not from the store");
        }
        Ok(())
    }

    async fn delivered(&self, meta: RecordingMeta) {
        RECORDINGS_STORED.inc();
        tracing::info!(room = %meta.room, id = %meta.id, key = %meta.key, status = ?meta.status, size = meta.size_bytes, "recording stored");
        self.event("recording.ready", &meta);
        let Some(store) = &self.store else { return };
        if let Err(e) = store.save_recording(&meta).await {
            tracing::error!(error = %e, id = %meta.id, "cannot save the recording's metadata in the store (it is kept beside the recording)");
        }
        // The thread gets the room's recording; per-participant files are listed beside it.
        if meta.kind == crate::recording::meta::RecordingKind::Participant {
            return;
        }
        if let Err(e) = self.post_to_thread(store, &meta).await {
            tracing::warn!(error = %e, id = %meta.id, "cannot post the recording into the meeting's thread");
        }
    }
}

/// A microphone's way into the room's recording, and into its own recording when the room
/// asked for per-participant recordings: empty while nothing records.
#[derive(Clone, Default)]
pub struct AudioTap(Arc<Mutex<TapInputs>>);

#[derive(Default)]
struct TapInputs {
    composite: Option<AudioInput>,
    own: Option<AudioInput>,
}

impl AudioTap {
    /// One 10 ms frame in i16 scale, as the meeting hears it.
    pub fn push(&self, frame: &[f32; FRAME], arrival_us: i64) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.composite.is_none() && slot.own.is_none() {
            return;
        }
        let mut samples = [0i16; FRAME];
        for (o, &s) in samples.iter_mut().zip(frame) {
            *o = s.round().clamp(-32768.0, 32767.0) as i16;
        }
        let TapInputs { composite, own } = &mut *slot;
        for input in [composite, own].into_iter().flatten() {
            if let Err(e) = input.push(&samples, arrival_us) {
                tracing::debug!(error = %e, "recording audio push");
            }
        }
    }

    fn set(&self, input: Option<AudioInput>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).composite = input;
    }

    /// The microphone's own recording (per-participant), or none.
    fn set_own(&self, input: Option<AudioInput>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).own = input;
    }
}

/// A camera's way into its owner's own recording (per-participant video): empty unless one
/// runs with video.
#[derive(Clone, Default)]
struct VideoTap(Arc<Mutex<Option<crate::recording::pipeline::VideoInput>>>);

impl VideoTap {
    /// `frame` at its render time, held back by the composite's alignment delay `delay_us`.
    fn push(&self, frame: &VideoFrame, delay_us: i64) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(input) = slot.as_mut() {
            input
                .delay()
                .store(delay_us, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = input.push(frame, frame.timestamp_us) {
                tracing::debug!(error = %e, "participant recording video push");
            }
        }
    }

    fn set(&self, input: Option<crate::recording::pipeline::VideoInput>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = input;
    }
}

impl AudioSink for AudioTap {
    fn push(&mut self, audio: &HeardAudio) {
        AudioTap::push(self, audio.samples, audio.arrival_us);
    }
}

enum Command {
    Video {
        sid: String,
        identity: String,
        source: TrackSource,
        stream: mpsc::Receiver<Arc<VideoFrame>>,
    },
    Audio {
        sid: String,
        identity: String,
        tap: AudioTap,
        /// A microphone (not a screen share's sound): what per-participant recordings take.
        microphone: bool,
    },
    PerParticipant(Option<PerParticipant>),
    Remove {
        sid: String,
    },
    Muted {
        sid: String,
        muted: bool,
    },
    Speakers(Vec<String>),
    Spotlight(Option<String>),
    ParticipantLeft(String),
}

/// What the writer thread gets from the pipeline.
enum Spooled {
    Bytes(Vec<u8>),
    Finish(Box<RecordingMeta>),
}

/// The recording of one room while it runs.
pub struct RoomRecording {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<RecordingMeta>,
    pub id: String,
}

struct VideoSlot {
    identity: String,
    screen: bool,
    muted: bool,
    feeder: JoinHandle<()>,
    /// Into its owner's own recording, when that records video.
    own: VideoTap,
    delay_us: Arc<std::sync::atomic::AtomicI64>,
    /// Milliseconds into the recording of its first picture (0: none yet).
    first_frame_ms: Arc<std::sync::atomic::AtomicU64>,
    /// A screen share already reported as sending no picture.
    reported_late: bool,
}

/// `identity`'s screen share that has not ended.
fn open_share<'a>(
    meta: &'a mut RecordingMeta,
    identity: &str,
) -> Option<&'a mut crate::recording::meta::ShareSpan> {
    meta.screen_shares
        .iter_mut()
        .rev()
        .find(|s| s.identity == identity && s.ended_ms.is_none())
}

/// A screen share with no picture this long after its subscription is reported (once).
const SHARE_WITHOUT_PICTURE: Duration = Duration::from_secs(5);

/// The audio codec's sample rate, which WebRTC's sample counters are in (Opus: 48 kHz).
const RECEIVER_SAMPLE_RATE: f64 = 48_000.0;
/// Delay readings the audio estimate's median runs over (one a second).
const AUDIO_DELAY_WINDOWS: usize = 8;

/// A track's receive delay, from successive WebRTC stats readings.
#[derive(Default)]
struct ReceiveDelay {
    last: Option<ReceiveTotals>,
    /// Video: the delay the last window's frames' render times were set by, seconds.
    /// Audio: how much later than its running sample count the sound now plays, seconds.
    estimate_s: Option<f64>,
    /// Audio: the last windows' mean jitter-buffer delay less the stretch at their end.
    residuals_s: std::collections::VecDeque<f64>,
}

impl ReceiveDelay {
    fn update(&mut self, totals: ReceiveTotals, video: bool) {
        let last = self.last.replace(totals).unwrap_or_default();
        let count = totals.emitted.saturating_sub(last.emitted);
        if count == 0 {
            return;
        }
        if video {
            self.estimate_s = Some((totals.target_delay_s - last.target_delay_s) / count as f64);
            return;
        }
        // Audio goes into the recording laid end to end, so what moves its sound against
        // the picture is exactly the receiver's stretching (concealment, speeding up, slowing
        // down), which it counts. The jitter-buffer delay gives the constant part, but its
        // window means also move with how late a busy machine hands packets to the receiver
        // (which moves no sound): the median of the recent residuals keeps that noise out.
        let stretch_s = totals.stretched_samples as f64 / RECEIVER_SAMPLE_RATE;
        let window_s = (totals.jitter_buffer_delay_s - last.jitter_buffer_delay_s) / count as f64;
        if self.residuals_s.len() == AUDIO_DELAY_WINDOWS {
            self.residuals_s.pop_front();
        }
        self.residuals_s.push_back(window_s - stretch_s);
        let mut sorted: Vec<f64> = self.residuals_s.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        self.estimate_s = Some(sorted[sorted.len() / 2] + stretch_s);
    }
}

/// How long the end of a recording may take (the muxer writing its last fragment).
const FINISH_TIMEOUT: Duration = Duration::from_secs(15);
/// How often receive delays are read (ticks of 250 ms), and the largest correction applied.
/// Every second: a receiver's audio delay settles by tens of ms within its first seconds,
/// and a correction that lags it puts the picture out of step meanwhile.
const DELAY_EVERY_TICKS: u32 = 4;
const MAX_VIDEO_DELAY_US: i64 = 600_000;
/// Live HLS segments last the key-frame interval the recording graph asks the encoder for.
const LIVE_SEGMENT_SECS: f64 = 2.0;

impl RoomRecording {
    /// Starts recording `room`; with the `Room` itself, video is lined up with audio from the
    /// receiver's jitter-buffer delays.
    pub fn start(
        recorder: &Recorder,
        room: &str,
        live_room: Option<Arc<crate::livekit::Room>>,
    ) -> Result<Self, RecordingError> {
        let c = &recorder.config;
        let meta = RecordingMeta::new(
            room,
            unix_ms() as i64,
            c.layout.as_str(),
            recorder.storage.kind().as_str(),
        );
        // The poster and thumbnails, rendered when the recording ends (none after a crash:
        // the recovered file is stored without them).
        let (thumbs_tx, thumbs_rx) = tokio::sync::oneshot::channel();
        let spool_tx = spool_and_deliver(recorder, &meta, Some(thumbs_rx))?;
        let bytes_tx = spool_tx.clone();
        let pipeline = CompositePipeline::start(&recorder.pipeline, move |bytes: &[u8]| {
            let _ = bytes_tx.send(Spooled::Bytes(bytes.to_vec()));
        })?;
        let id = meta.id.clone();
        tracing::info!(%room, id = %meta.id, layout = %meta.layout, storage = %meta.storage, "recording started");
        recorder.event("recording.started", &meta);
        let (commands, rx) = mpsc::unbounded_channel();
        let state = Control {
            recorder: recorder.clone(),
            selection: None,
            own: HashMap::new(),
            microphones: HashMap::new(),
            finishing: Vec::new(),
            pipeline,
            meta,
            layout: c.layout,
            width: c.width,
            height: c.height,
            videos: HashMap::new(),
            cameras_in_order: Vec::new(),
            taps: HashMap::new(),
            speakers: SpeakerSelector::default(),
            spotlight: None,
            started: std::time::Instant::now(),
            room: live_room,
            audio_identity: HashMap::new(),
            delays: HashMap::new(),
            fixed_delay_us: c.audio_delay_ms as i64 * 1000,
            thumbs: Some(thumbs_tx),
        };
        RECORDINGS_ACTIVE.inc();
        let task = tokio::spawn(state.run(rx, spool_tx));
        Ok(Self { commands, task, id })
    }

    /// Records a video track from `stream` (a subscription to its `session::media::VideoSource`).
    pub fn add_video(
        &self,
        sid: &str,
        identity: &str,
        source: TrackSource,
        stream: mpsc::Receiver<Arc<VideoFrame>>,
    ) {
        let _ = self.commands.send(Command::Video {
            sid: sid.into(),
            identity: identity.into(),
            source,
            stream,
        });
    }

    pub fn add_audio(&self, sid: &str, identity: &str, tap: AudioTap, microphone: bool) {
        let _ = self.commands.send(Command::Audio {
            sid: sid.into(),
            identity: identity.into(),
            tap,
            microphone,
        });
    }

    /// Records the selected participants' microphones on their own too (None: no longer).
    pub fn per_participant(&self, selection: Option<PerParticipant>) {
        let _ = self.commands.send(Command::PerParticipant(selection));
    }

    pub fn remove(&self, sid: &str) {
        let _ = self.commands.send(Command::Remove { sid: sid.into() });
    }

    pub fn muted(&self, sid: &str, muted: bool) {
        let _ = self.commands.send(Command::Muted {
            sid: sid.into(),
            muted,
        });
    }

    pub fn speakers(&self, identities: Vec<String>) {
        let _ = self.commands.send(Command::Speakers(identities));
    }

    /// Shows `identity`'s camera large (None: the layout's own choice again).
    pub fn spotlight(&self, identity: Option<String>) {
        let _ = self.commands.send(Command::Spotlight(identity));
    }

    pub fn participant_left(&self, identity: &str) {
        let _ = self
            .commands
            .send(Command::ParticipantLeft(identity.into()));
    }

    /// Ends the recording: the file is closed and handed to storage (which goes on
    /// uploading in the background). Returns its metadata.
    pub async fn stop(self) -> Option<RecordingMeta> {
        drop(self.commands);
        self.task.await.ok()
    }
}

/// Spools a recording's bytes (sent as [`Spooled`]) on a thread of its own and hands the spool
/// to storage, which uploads it while it is written; once delivered, the poster and
/// thumbnails from `thumbs` (if any) are stored and the recording is announced.
fn spool_and_deliver(
    recorder: &Recorder,
    meta: &RecordingMeta,
    thumbs: Option<tokio::sync::oneshot::Receiver<Option<crate::recording::thumbnails::Rendered>>>,
) -> Result<std::sync::mpsc::Sender<Spooled>, RecordingError> {
    let mut writer = SpoolWriter::create(&recorder.dir, meta)?;
    let follower = writer.follow();
    let (spool_tx, spool_rx) = std::sync::mpsc::channel::<Spooled>();
    std::thread::Builder::new()
        .name("rec-spool".into())
        .spawn(move || {
            let mut failed = false;
            for item in spool_rx {
                match item {
                    Spooled::Bytes(bytes) => {
                        if let Err(e) = writer.append(&bytes)
                            && !failed
                        {
                            failed = true;
                            tracing::error!(error = %e, "recording spool write failed");
                        }
                    }
                    Spooled::Finish(meta) => {
                        if let Err(e) = writer.finish(&meta) {
                            tracing::error!(error = %e, "cannot finish the recording spool");
                        }
                        return;
                    }
                }
            }
            // Dropped without Finish: the follower sees the writer abandon the spool.
        })
        .map_err(|e| RecordingError::Pipeline(format!("spool thread: {e}")))?;
    let storage = recorder.storage.clone();
    let delivering = recorder.clone();
    // Live HLS is the composite's (a participant's file is for editing, not for watching).
    let live = recorder
        .live_settings()
        .filter(|_| meta.kind == crate::recording::meta::RecordingKind::Composite);
    // Listed (status `recording`) while it is written, so the live playlist can be found.
    let listed = recorder.store.clone().map(|store| (store, meta.clone()));
    tokio::spawn(async move {
        if let Some((store, meta)) = listed {
            let saved = tokio::time::timeout(Duration::from_secs(5), store.save_recording(&meta));
            if !matches!(saved.await, Ok(Ok(()))) {
                tracing::warn!(id = %meta.id, "the recording is not listed in the store until it is stored");
            }
        }
        match storage.deliver_with_live(follower, live).await {
            Ok(meta) => {
                if let Some(thumbs) = thumbs
                    && let Ok(Some(rendered)) = thumbs.await
                {
                    match storage.put_thumbnails(&meta, &rendered).await {
                        Ok(()) => {
                            tracing::info!(id = %meta.id, thumbnails = rendered.count, "poster and thumbnails stored")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, id = %meta.id, "poster and thumbnails not stored")
                        }
                    }
                }
                delivering.delivered(meta).await
            }
            Err(e) => {
                tracing::error!(error = %e, "recording delivery failed; the spool stays for the next start")
            }
        }
    });
    Ok(spool_tx)
}

/// One microphone recorded on its own while the room's recording runs.
struct OwnRecording {
    pipeline: CompositePipeline,
    meta: RecordingMeta,
    spool: std::sync::mpsc::Sender<Spooled>,
    tap: AudioTap,
    /// With the owner's camera (a canvas of this size), or audio only.
    video: Option<(u32, u32)>,
    /// Camera track sids feeding it.
    cameras: Vec<String>,
}

impl OwnRecording {
    /// Closes the file and hands it to storage; done when the muxer wrote its end.
    fn stop(self) -> JoinHandle<()> {
        let OwnRecording {
            pipeline,
            mut meta,
            spool,
            tap,
            ..
        } = self;
        tap.set_own(None);
        meta.duration_ms = Some(pipeline.elapsed().as_millis() as i64);
        meta.ended_unix_ms = Some(unix_ms() as i64);
        tokio::spawn(async move {
            let finished =
                tokio::task::spawn_blocking(move || pipeline.finish(FINISH_TIMEOUT)).await;
            let failure = match finished {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("the end panicked: {e}")),
            };
            if let Some(error) = failure {
                tracing::error!(id = %meta.id, %error, "participant recording did not end cleanly; stored as partial");
                meta.status = crate::recording::meta::RecordingStatus::Partial;
            }
            tracing::info!(id = %meta.id, participant = ?meta.participant, duration_ms = meta.duration_ms, "participant recording ended");
            let _ = spool.send(Spooled::Finish(Box::new(meta)));
        })
    }
}

struct Control {
    recorder: Recorder,
    /// Which microphones the room wants recorded on their own too.
    selection: Option<PerParticipant>,
    /// Those being recorded on their own, by microphone track sid.
    own: HashMap<String, OwnRecording>,
    /// Every microphone (not screen-share sound) being recorded: sid -> identity.
    microphones: HashMap<String, String>,
    /// Per-participant recordings still writing their end.
    finishing: Vec<JoinHandle<()>>,
    pipeline: CompositePipeline,
    meta: RecordingMeta,
    layout: crate::recording::Layout,
    width: u32,
    height: u32,
    videos: HashMap<String, VideoSlot>,
    cameras_in_order: Vec<String>,
    taps: HashMap<String, AudioTap>,
    speakers: SpeakerSelector,
    /// The spotlit participant's identity.
    spotlight: Option<String>,
    started: std::time::Instant,
    room: Option<Arc<crate::livekit::Room>>,
    /// Microphone track sid -> participant.
    audio_identity: HashMap<String, String>,
    delays: HashMap<String, ReceiveDelay>,
    /// `recording.audio_delay_ms`.
    fixed_delay_us: i64,
    /// Where the rendered poster and thumbnails go at the end.
    thumbs: Option<tokio::sync::oneshot::Sender<Option<crate::recording::thumbnails::Rendered>>>,
}

impl Control {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        spool: std::sync::mpsc::Sender<Spooled>,
    ) -> RecordingMeta {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.apply(command),
                    None => break,
                },
                _ = tick.tick() => {
                    if self.speakers.tick(self.now_ms()) {
                        self.relayout();
                    }
                    ticks += 1;
                    if ticks % DELAY_EVERY_TICKS == 2 {
                        self.align_video_to_audio().await;
                        self.check_shares();
                    }
                    if let Some(failure) = self.pipeline.failure() {
                        tracing::error!(error = %failure, id = %self.meta.id, "recording stopped by a pipeline failure");
                        break;
                    }
                }
            }
        }
        for tap in self.taps.values() {
            tap.set(None);
        }
        for (_, own) in std::mem::take(&mut self.own) {
            self.detach_cameras(&own);
            self.finishing.push(own.stop());
        }
        for (_, slot) in std::mem::take(&mut self.videos) {
            slot.feeder.abort();
            self.share_ended(&slot);
        }
        let mut meta = self.meta.clone();
        meta.duration_ms = Some(self.pipeline.elapsed().as_millis() as i64);
        meta.ended_unix_ms = Some(unix_ms() as i64);
        let pipeline = self.pipeline.clone();
        // Bounded: a pipeline that cannot reach its end is given up after this, and the
        // recording is stored as far as the muxer wrote it, marked partial.
        let finished = tokio::task::spawn_blocking(move || pipeline.finish(FINISH_TIMEOUT)).await;
        let failure = match finished {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the end panicked: {e}")),
        };
        if let Some(error) = failure {
            tracing::error!(id = %meta.id, %error, "recording did not end cleanly; stored as partial");
            meta.status = crate::recording::meta::RecordingStatus::Partial;
        }
        RECORDINGS_ACTIVE.dec();
        tracing::info!(id = %meta.id, duration_ms = meta.duration_ms, participants = ?meta.participants, "recording ended");
        // Rendered before the spool is finished, so its delivery finds them waiting.
        let thumbnails = self.pipeline.thumbnails();
        let (name, duration) = (
            crate::recording::thumbnails::sprite_name(&meta.key),
            meta.duration_ms.unwrap_or(0).max(0) as u64,
        );
        let rendered = tokio::task::spawn_blocking(move || thumbnails.render(&name, duration))
            .await
            .ok()
            .flatten();
        if let Some(tx) = self.thumbs.take() {
            let _ = tx.send(rendered);
        }
        let _ = spool.send(Spooled::Finish(Box::new(meta.clone())));
        for finishing in std::mem::take(&mut self.finishing) {
            let _ = finishing.await;
        }
        meta
    }

    /// Video frames go in at their render time and audio at the moment it is handed over;
    /// the receiver holds each for its own time (audio in its jitter buffer, video until
    /// the render time its target delay sets), and, unlike a player, nothing here
    /// re-synchronises them. So each camera is delayed by how much longer its owner's
    /// microphone is held than the camera, re-read every second as both change.
    async fn align_video_to_audio(&mut self) {
        let Some(room) = self.room.clone() else {
            return;
        };
        let sids: Vec<(String, bool)> = self
            .videos
            .keys()
            .map(|sid| (sid.clone(), true))
            .chain(self.audio_identity.keys().map(|sid| (sid.clone(), false)))
            .collect();
        // All at once: one slow answer must not hold the others (or the recording's commands).
        let reads = sids.into_iter().map(|(sid, video)| {
            let room = room.clone();
            async move {
                let read =
                    tokio::time::timeout(Duration::from_millis(500), room.receive_delay(&sid))
                        .await;
                (sid, video, read)
            }
        });
        for (sid, video, read) in futures_util::future::join_all(reads).await {
            if let Ok(Ok(Some(totals))) = read {
                self.delays.entry(sid).or_default().update(totals, video);
            }
        }
        for (sid, slot) in &self.videos {
            let audio = self
                .audio_identity
                .iter()
                .filter(|(_, who)| **who == slot.identity)
                .find_map(|(a, _)| self.delays.get(a).and_then(|d| d.estimate_s));
            let video = self.delays.get(sid).and_then(|d| d.estimate_s);
            if let (Some(audio), Some(video)) = (audio, video) {
                let delay = (((audio - video) * 1e6) as i64 + self.fixed_delay_us)
                    .clamp(0, MAX_VIDEO_DELAY_US);
                slot.delay_us
                    .store(delay, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%sid, audio_ms = audio * 1e3, video_ms = video * 1e3, delay_us = delay, "video aligned to audio");
            }
        }
    }

    /// Closes the open `ShareSpan` of a screen share that ended.
    fn share_ended(&mut self, slot: &VideoSlot) {
        if !slot.screen {
            return;
        }
        let first = slot
            .first_frame_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = self.now_ms();
        if let Some(span) = open_share(&mut self.meta, &slot.identity) {
            span.first_frame_ms = (first > 0).then_some(first);
            span.ended_ms = Some(now);
            if first == 0 {
                tracing::warn!(identity = %slot.identity, shared_ms = now.saturating_sub(span.subscribed_ms), "a screen share ended without any picture reaching the recording");
            }
        }
    }

    /// Reports, once, a screen share still without a picture `SHARE_WITHOUT_PICTURE` after
    /// its subscription.
    fn check_shares(&mut self) {
        let now = self.now_ms();
        for slot in self.videos.values_mut().filter(|s| s.screen) {
            let first = slot
                .first_frame_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let Some(span) = open_share(&mut self.meta, &slot.identity) else {
                continue;
            };
            if first > 0 {
                span.first_frame_ms.get_or_insert(first);
            } else if !slot.reported_late
                && now.saturating_sub(span.subscribed_ms)
                    >= SHARE_WITHOUT_PICTURE.as_millis() as u64
            {
                slot.reported_late = true;
                tracing::warn!(identity = %slot.identity, waited_ms = now - span.subscribed_ms, "a screen share has sent no picture yet; the recording shows the cameras meanwhile");
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Video {
                sid,
                identity,
                source,
                mut stream,
            } => {
                let mut input = match self.pipeline.add_video(&sid) {
                    Ok(input) => input,
                    Err(e) => return tracing::warn!(error = %e, %sid, "cannot record video"),
                };
                let delay_us = input.delay();
                // Until the first statistics arrive, the fixed part.
                delay_us.store(self.fixed_delay_us, std::sync::atomic::Ordering::Relaxed);
                let first_frame_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let first = first_frame_ms.clone();
                let started = self.started;
                let own = VideoTap::default();
                let own_tap = own.clone();
                let delay = delay_us.clone();
                let feeder = tokio::spawn(async move {
                    // Each frame at its render time from the engine (capture-derived), not
                    // at the moment this task gets to it on a busy machine.
                    while let Some(frame) = stream.recv().await {
                        own_tap.push(&frame, delay.load(std::sync::atomic::Ordering::Relaxed));
                        match input.push(&frame, frame.timestamp_us) {
                            Ok(()) => {
                                let now = (started.elapsed().as_millis() as u64).max(1);
                                let _ = first.compare_exchange(
                                    0,
                                    now,
                                    std::sync::atomic::Ordering::Relaxed,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                            }
                            Err(e) => tracing::debug!(error = %e, "recording video push"),
                        }
                    }
                });
                let screen = source == TrackSource::SourceScreenshare;
                if screen {
                    self.meta
                        .screen_shares
                        .push(crate::recording::meta::ShareSpan {
                            identity: identity.clone(),
                            subscribed_ms: self.now_ms(),
                            first_frame_ms: None,
                            ended_ms: None,
                        });
                } else {
                    self.cameras_in_order.push(sid.clone());
                }
                self.meta.add_participant(&identity);
                if let Some(old) = self.videos.insert(
                    sid.clone(),
                    VideoSlot {
                        identity: identity.clone(),
                        screen,
                        muted: false,
                        feeder,
                        own,
                        delay_us,
                        first_frame_ms,
                        reported_late: false,
                    },
                ) {
                    old.feeder.abort();
                }
                if !screen {
                    self.attach_camera(&identity, &sid);
                }
                self.relayout();
            }
            Command::Audio {
                sid,
                identity,
                tap,
                microphone,
            } => match self.pipeline.add_audio(&sid) {
                Ok(input) => {
                    tap.set(Some(input));
                    self.meta.add_participant(&identity);
                    if microphone {
                        self.microphones.insert(sid.clone(), identity.clone());
                    }
                    self.audio_identity.insert(sid.clone(), identity);
                    self.taps.insert(sid, tap);
                    self.start_own_recordings();
                }
                Err(e) => tracing::warn!(error = %e, %sid, "cannot record audio"),
            },
            Command::PerParticipant(selection) => {
                if self.selection != selection {
                    tracing::info!(id = %self.meta.id, ?selection, "per-participant recordings");
                    self.selection = selection;
                    let unwanted: Vec<String> = self
                        .own
                        .iter()
                        .filter(|(_, own)| {
                            let who = own.meta.participant.as_deref().unwrap_or_default();
                            !self.selection.as_ref().is_some_and(|s| s.wants(who))
                        })
                        .map(|(sid, _)| sid.clone())
                        .collect();
                    for sid in unwanted {
                        self.stop_own(&sid);
                    }
                    self.start_own_recordings();
                }
            }
            Command::Remove { sid } => {
                self.stop_own(&sid);
                self.microphones.remove(&sid);
                if let Some(tap) = self.taps.remove(&sid) {
                    tap.set(None);
                }
                // A place may have freed for a microphone over the limit.
                self.start_own_recordings();
                self.audio_identity.remove(&sid);
                self.delays.remove(&sid);
                if let Some(slot) = self.videos.remove(&sid) {
                    slot.feeder.abort();
                    slot.own.set(None);
                    for own in self.own.values_mut() {
                        if own.cameras.contains(&sid) {
                            own.pipeline.remove(&sid);
                            own.cameras.retain(|c| *c != sid);
                        }
                    }
                    self.share_ended(&slot);
                    self.cameras_in_order.retain(|s| *s != sid);
                    self.pipeline.remove(&sid);
                    self.relayout();
                } else {
                    self.pipeline.remove(&sid);
                }
            }
            Command::Muted { sid, muted } => {
                if let Some(slot) = self.videos.get_mut(&sid) {
                    slot.muted = muted;
                    self.relayout();
                }
            }
            Command::Speakers(identities) => {
                let now = self.now_ms();
                if self.speakers.observe(now, &identities) {
                    self.relayout();
                }
            }
            Command::Spotlight(identity) => {
                if self.spotlight != identity {
                    self.spotlight = identity;
                    self.relayout();
                }
            }
            Command::ParticipantLeft(identity) => {
                if self.speakers.forget(&identity) {
                    self.relayout();
                }
            }
        }
    }

    /// Starts the per-participant recordings the room's selection wants and the limit allows.
    fn start_own_recordings(&mut self) {
        let running = self.own.keys().cloned().collect();
        let mut microphones: Vec<(&str, &str)> = self
            .microphones
            .iter()
            .map(|(sid, who)| (sid.as_str(), who.as_str()))
            .collect();
        microphones.sort();
        let limit = self.recorder.config.max_participant_recordings;
        let (start, refused) =
            per_participant::to_start(self.selection.as_ref(), microphones, &running, limit);
        for (sid, identity) in refused {
            tracing::warn!(id = %self.meta.id, %sid, %identity, limit, "not recorded on its own: the room has recording.max_participant_recordings running");
        }
        for (sid, identity) in start {
            let Some(tap) = self.taps.get(&sid).cloned() else {
                continue;
            };
            match self.start_own(&identity, tap) {
                Ok(own) => {
                    self.own.insert(sid, own);
                    // Cameras already there go in at once; later ones when they arrive.
                    let cameras: Vec<String> = self
                        .videos
                        .iter()
                        .filter(|(_, v)| v.identity == identity && !v.screen)
                        .map(|(sid, _)| sid.clone())
                        .collect();
                    for camera in cameras {
                        self.attach_camera(&identity, &camera);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, %sid, %identity, "cannot start a participant recording")
                }
            }
        }
    }

    fn start_own(&self, identity: &str, tap: AudioTap) -> Result<OwnRecording, RecordingError> {
        let recorder = &self.recorder;
        let meta = RecordingMeta::participant(
            &self.meta,
            identity,
            unix_ms() as i64,
            recorder.storage.kind().as_str(),
        );
        let with_video = self.selection.as_ref().is_some_and(|s| s.video);
        let meta = if with_video { meta.with_video() } else { meta };
        let spool = spool_and_deliver(recorder, &meta, None)?;
        let bytes_tx = spool.clone();
        let sink = move |bytes: &[u8]| {
            let _ = bytes_tx.send(Spooled::Bytes(bytes.to_vec()));
        };
        let (pipeline, video) = if with_video {
            let settings = recorder.pipeline.for_participant_video();
            let size = (settings.width, settings.height);
            (CompositePipeline::start(&settings, sink)?, Some(size))
        } else {
            let pipeline = CompositePipeline::start_participant_audio(&recorder.pipeline, sink)?;
            (pipeline, None)
        };
        let input = pipeline.add_audio("mic")?;
        tap.set_own(Some(input));
        tracing::info!(id = %meta.id, parent = %self.meta.id, %identity, key = %meta.key, "participant recording started");
        recorder.event("recording.started", &meta);
        Ok(OwnRecording {
            pipeline,
            meta,
            spool,
            tap,
            video,
            cameras: Vec::new(),
        })
    }

    /// Feeds camera `sid` of `identity` into that participant's own recording too, when it
    /// records video (its camera fills the picture; the latest camera is on top).
    fn attach_camera(&mut self, identity: &str, sid: &str) {
        let Some(slot) = self.videos.get(sid) else {
            return;
        };
        for own in self.own.values_mut() {
            let Some((width, height)) = own.video else {
                continue;
            };
            if own.meta.participant.as_deref() != Some(identity)
                || own.cameras.iter().any(|c| c == sid)
            {
                continue;
            }
            match own.pipeline.add_video(sid) {
                Ok(input) => {
                    let full = crate::recording::layout::Rect {
                        x: 0,
                        y: 0,
                        width: width as i32,
                        height: height as i32,
                    };
                    own.pipeline
                        .place(sid, Some(full), own.cameras.len() as u32);
                    slot.own.set(Some(input));
                    own.cameras.push(sid.to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, %sid, %identity, "cannot record the camera on its own")
                }
            }
        }
    }

    /// Stops feeding cameras into `own` (before it ends).
    fn detach_cameras(&self, own: &OwnRecording) {
        for sid in &own.cameras {
            if let Some(slot) = self.videos.get(sid) {
                slot.own.set(None);
            }
        }
    }

    /// Ends the per-participant recording of microphone `sid`, if there is one.
    fn stop_own(&mut self, sid: &str) {
        if let Some(own) = self.own.remove(sid) {
            self.detach_cameras(&own);
            self.finishing.retain(|f| !f.is_finished());
            self.finishing.push(own.stop());
        }
    }

    fn relayout(&mut self) {
        let camera_of = |who: &str| {
            self.cameras_in_order
                .iter()
                .find(|sid| self.videos.get(*sid).is_some_and(|v| v.identity == who))
                .cloned()
        };
        let speaker = self.speakers.current().and_then(camera_of);
        let spotlight = self.spotlight.as_deref().and_then(camera_of);
        let visible = |sid: &String| self.videos.get(sid).is_some_and(|v| !v.muted);
        let scene = Scene {
            cameras: self
                .cameras_in_order
                .iter()
                .filter(|s| visible(s))
                .cloned()
                .collect(),
            screens: self
                .videos
                .iter()
                .filter(|(sid, v)| v.screen && visible(sid))
                .map(|(sid, _)| sid.clone())
                .collect(),
            speaker,
            spotlight,
        };
        let placements = arrange(self.layout, self.width, self.height, &scene);
        for sid in self.videos.keys() {
            match placements.iter().position(|p| &p.input == sid) {
                Some(i) => self.pipeline.place(sid, Some(placements[i].rect), i as u32),
                None => self.pipeline.place(sid, None, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(emitted: u64, jitter_buffer_delay_s: f64, stretched_samples: i64) -> ReceiveTotals {
        ReceiveTotals {
            emitted,
            jitter_buffer_delay_s,
            target_delay_s: 0.0,
            stretched_samples,
        }
    }

    #[test]
    fn audio_delay_follows_the_stretch_exactly_and_the_jitter_noise_not_at_all() {
        let mut d = ReceiveDelay::default();
        // 30 ms held, nothing stretched, for a few seconds.
        let (mut emitted, mut sum) = (0u64, 0.0);
        for _ in 0..5 {
            emitted += 48_000;
            sum += 48_000.0 * 0.030;
            d.update(audio(emitted, sum, 0), false);
        }
        assert!((d.estimate_s.unwrap() - 0.030).abs() < 1e-9);
        // A busy second: packets reach the receiver late, the window mean drops to 10 ms,
        // but no sound moved (nothing stretched): the estimate stays.
        emitted += 48_000;
        sum += 48_000.0 * 0.010;
        d.update(audio(emitted, sum, 0), false);
        assert!((d.estimate_s.unwrap() - 0.030).abs() < 1e-9);
        // 960 samples of concealment: all later sound plays 20 ms later, at once.
        emitted += 48_000;
        sum += 48_000.0 * 0.050;
        d.update(audio(emitted, sum, 960), false);
        assert!((d.estimate_s.unwrap() - 0.050).abs() < 1e-9);
    }

    #[test]
    fn video_delay_is_the_last_windows_target() {
        let mut d = ReceiveDelay::default();
        let video = |emitted, target_delay_s| ReceiveTotals {
            emitted,
            target_delay_s,
            ..Default::default()
        };
        d.update(video(30, 30.0 * 0.011), true);
        d.update(video(60, 30.0 * 0.011 + 30.0 * 0.040), true);
        assert!((d.estimate_s.unwrap() - 0.040).abs() < 1e-9);
        // No frames in between: the estimate stands.
        d.update(video(60, 30.0 * 0.011 + 30.0 * 0.040), true);
        assert!((d.estimate_s.unwrap() - 0.040).abs() < 1e-9);
    }
}
