//! What the agent does inside one room: follow participants, open a pipeline per subscribed
//! track (microphones through noise suppression, cameras through frame figures), and report
//! what flows. Later features (captions, backgrounds, recording) attach to these pipelines.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::captions::Recognizer;
use crate::captions::journal::{Journal, unix_ms};
use crate::captions::publisher::CaptionPublisher;
use crate::captions::segmenter::SegmenterConfig;
use crate::captions::speaker::CaptionContext;
use crate::config::AudioConfig;
use crate::livekit::{ConnectOptions, Room, RoomEvent, TrackKind, TrackSource};
use crate::worker::{JobContext, JobError, JobFuture, JobHandler};

pub mod camera;
pub mod controls;
pub mod meeting_log;
pub mod microphone;
pub mod recording;
mod track_budget;
pub mod video;

use controls::MicSettings;
use meeting_log::{MeetingLog, MeetingLogOptions};
use track_budget::TrackBudget;
pub use track_budget::{
    MAX_AUDIO_TRACKS_PER_PARTICIPANT, MAX_TRACKS_PER_ROOM, MAX_VIDEO_TRACKS_PER_PARTICIPANT,
    TRACKS_IGNORED,
};

/// Audio is taken from the engine at 48 kHz mono in 10 ms frames: the rate the denoiser and
/// the recording mixer work at.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_FRAME_MS: u32 = 10;

/// Registers the metrics of every per-room feature, so `/metrics` lists each at 0 before its
/// first event.
pub fn register_metrics() {
    use std::sync::LazyLock;
    for counter in [
        &camera::VB_FRAMES,
        &camera::VB_FRAMES_SKIPPED,
        &camera::VB_FRAMES_FAILED,
        &microphone::CLEAN_FRAMES_DROPPED,
        &TRACKS_IGNORED,
        &recording::RECORDINGS_STORED,
        &crate::captions::recognizer::FINALS_REFUSED,
    ] {
        LazyLock::force(counter);
    }
    LazyLock::force(&recording::RECORDINGS_ACTIVE);
    LazyLock::force(&crate::captions::recognizer::FINALS_QUEUED);
}

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
    Left {
        room: String,
        reason: String,
    },
}

/// The default job: joins the room and runs the per-track pipelines.
/// Captioning for the whole process: one recognizer, transcripts under `data_dir`.
#[derive(Clone)]
pub struct Captioning {
    pub recognizer: Arc<Recognizer>,
    pub data_dir: std::path::PathBuf,
    pub segmenter: SegmenterConfig,
}

impl Captioning {
    /// Loads the configured model (checked by sha256) and starts the recognizer; `None` when
    /// captions are switched off.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Option<Self>, crate::captions::ModelError> {
        let c = &config.captions;
        if !c.enabled {
            return Ok(None);
        }
        let model = crate::captions::WhisperModel::load(&c.model, c.expected_sha256())?;
        let options = crate::captions::recognizer::RecognizerOptions {
            // Validated with the configuration; names become codes, `auto` detection.
            language: match crate::captions::CaptionLanguage::parse(&c.language) {
                Ok(crate::captions::CaptionLanguage::Code(code)) => Some(code.to_string()),
                _ => None,
            },
            translate: c.translate,
            threads: c.threads,
        };
        let recognizer =
            Recognizer::start(model, options).map_err(|e| crate::captions::ModelError::Load {
                path: c.model.clone(),
                message: e.to_string(),
            })?;
        Ok(Some(Self {
            recognizer,
            data_dir: config.data_dir(),
            segmenter: SegmenterConfig {
                interim_every_ms: c.interim_ms,
                ..Default::default()
            },
        }))
    }
}

#[derive(Clone)]
pub struct MeetingSession {
    reports: broadcast::Sender<SessionReport>,
    audio: AudioConfig,
    captioning: Option<Captioning>,
    /// Where meetings' threads, transcripts and summaries go.
    store: Option<(crate::store::Store, MeetingLogOptions)>,
    /// Segmentation for virtual backgrounds, when the models are there.
    backgrounds: Option<Arc<crate::video::processor::SegmenterPool>>,
    /// Where background images may come from (uploads of the room, allow-listed URLs).
    background_sources: Arc<crate::video::background_source::SourcePolicy>,
    /// Composite recording, when configured.
    recorder: Option<recording::Recorder>,
}

impl Default for MeetingSession {
    fn default() -> Self {
        Self::new(AudioConfig::default(), None)
    }
}

/// Per-room state the event loop keeps.
#[derive(Default)]
struct RoomTasks {
    captions: Option<CaptionContext>,
    started: Option<std::time::Instant>,
    pipelines: HashMap<String, JoinHandle<()>>,
    mic_settings: HashMap<String, watch::Sender<MicSettings>>,
    attributes: HashMap<String, HashMap<String, String>>,
    log: Option<MeetingLog>,
    vb_requests: HashMap<String, watch::Sender<camera::VbRequest>>,
    /// Switches for the whole room, from its metadata.
    room_switches: HashMap<String, String>,
    recording: Option<recording::RoomRecording>,
    /// Subscribed video tracks (identity, source), for a recording started later.
    video_tracks: HashMap<String, (String, TrackSource)>,
    /// Every microphone's way into the recording, by track sid.
    audio_taps: HashMap<String, (String, recording::AudioTap)>,
    /// The latest recording state for the agent's `recording` attribute (see
    /// `recording_announcer`).
    recording_announcer: Option<watch::Sender<bool>>,
    /// Media tracks per participant and in the room (caps).
    track_budget: TrackBudget,
}

impl MeetingSession {
    pub fn new(audio: AudioConfig, captioning: Option<Captioning>) -> Self {
        Self {
            reports: broadcast::channel(1024).0,
            audio,
            captioning,
            store: None,
            backgrounds: None,
            background_sources: Arc::new(
                crate::video::background_source::SourcePolicy::from_config(
                    &crate::config::Config::default(),
                ),
            ),
            recorder: None,
        }
    }

    /// Records meetings (always, or when a room switches recording on).
    pub fn with_recorder(mut self, recorder: recording::Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Offers virtual backgrounds (`vb.*` attributes) on every camera.
    pub fn with_virtual_backgrounds(
        mut self,
        pool: Arc<crate::video::processor::SegmenterPool>,
    ) -> Self {
        self.backgrounds = Some(pool);
        self
    }

    /// Background images come from `policy`'s upload folders and URL allow-list.
    pub fn with_background_sources(
        mut self,
        policy: crate::video::background_source::SourcePolicy,
    ) -> Self {
        self.background_sources = Arc::new(policy);
        self
    }

    /// Writes every meeting (thread, transcript, summary) into `store`.
    pub fn with_store(mut self, store: crate::store::Store, options: MeetingLogOptions) -> Self {
        self.store = Some((store, options));
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionReport> {
        self.reports.subscribe()
    }

    pub(crate) fn report(&self, report: SessionReport) {
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
        let room = Arc::new(room);
        let room_name = room.name.clone();
        tracing::info!(room = %room_name, identity = %room.identity, "joined room");
        self.report(SessionReport::Joined {
            room: room_name.clone(),
            identity: room.identity.clone(),
        });
        let mut tasks = RoomTasks {
            started: Some(std::time::Instant::now()),
            room_switches: controls::room_switches(&room.metadata),
            ..Default::default()
        };
        let started_unix_ms = unix_ms();
        let log_task = self.store.as_ref().map(|(store, options)| {
            let meeting = crate::store::Meeting::new(&room_name, started_unix_ms as i64)
                .with_room_sid(&room.sid);
            let (log, task) = MeetingLog::start(store.clone(), meeting, options.clone());
            tasks.log = Some(log);
            (task, options.flush_timeout)
        });
        if let Some(c) = &self.captioning {
            let journal = match Journal::open(&c.data_dir, &room_name, started_unix_ms) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::error!(error = %e, dir = %c.data_dir.display(), "cannot open the transcript journal; captions are not kept");
                    None
                }
            };
            tasks.captions = Some(CaptionContext {
                recognizer: c.recognizer.clone(),
                publisher: CaptionPublisher::Room(room.clone()),
                journal,
                segmenter: c.segmenter.clone(),
                log: tasks.log.clone(),
            });
        }
        self.reconcile_recording(&room, &mut tasks);
        let reason = loop {
            tokio::select! {
                event = events.recv() => match event {
                    None => break "event stream ended".to_string(),
                    Some(RoomEvent::Disconnected { reason }) => break format!("disconnected: {}", reason.as_str_name()),
                    Some(event) => self.on_event(&room, event, &mut tasks),
                },
                changed = terminate.changed() => {
                    if changed.is_err() || *terminate.borrow() {
                        break "terminated".to_string();
                    }
                }
            }
        };
        if let Some(recording) = tasks.recording.take()
            && let Some(meta) = recording.stop().await
        {
            tracing::info!(room = %room_name, id = %meta.id, "recording closed; storage takes it from here");
        }
        // Microphones finalise what they were captioning when their settings channel closes.
        tasks.mic_settings.clear();
        tasks.vb_requests.clear();
        for (_, task) in tasks.pipelines.drain() {
            if tokio::time::timeout(std::time::Duration::from_millis(500), async {
                while !task.is_finished() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
            })
            .await
            .is_err()
            {
                task.abort();
            }
        }
        // The meeting's thread gets what is left and its summary once every handle is gone.
        tasks.captions = None;
        tasks.log = None;
        if let Some((task, timeout)) = log_task {
            // Finals still being transcribed hold a handle; they finish within seconds.
            if tokio::time::timeout(timeout + std::time::Duration::from_secs(20), task)
                .await
                .is_err()
            {
                tracing::error!(room = %room_name, "the meeting's thread was not finished in time");
            }
        }
        if let Some(c) = &self.captioning {
            let stats = &c.recognizer.stats;
            let load =
                |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                finals = load(&stats.finals),
                interims = load(&stats.interims),
                interims_superseded = load(&stats.interims_superseded),
                finals_fitted = load(&stats.finals_fitted),
                busy_ms = load(&stats.busy_ms),
                "captioning totals for this process"
            );
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

    fn resolve_settings(&self, tasks: &RoomTasks, identity: &str) -> MicSettings {
        let none = HashMap::new();
        MicSettings::resolve(
            &self.audio,
            self.captioning.is_some(),
            &tasks.room_switches,
            tasks.attributes.get(identity).unwrap_or(&none),
        )
    }

    /// Hands every running pipeline its settings again, where they changed.
    fn refresh_settings(&self, tasks: &RoomTasks) {
        for (identity, tx) in &tasks.mic_settings {
            let settings = self.resolve_settings(tasks, identity);
            tx.send_if_modified(|current| std::mem::replace(current, settings) != settings);
        }
        for (identity, tx) in &tasks.vb_requests {
            let request = self.vb_request(tasks, identity);
            tx.send_if_modified(|current| {
                let changed = *current != request;
                *current = request;
                changed
            });
        }
    }

    fn vb_request(&self, tasks: &RoomTasks, identity: &str) -> camera::VbRequest {
        tasks
            .attributes
            .get(identity)
            .map(camera::VbRequest::from_attributes)
            .unwrap_or_default()
    }

    fn mic_settings_for(
        &self,
        tasks: &mut RoomTasks,
        identity: &str,
    ) -> watch::Receiver<MicSettings> {
        let settings = self.resolve_settings(tasks, identity);
        tasks
            .mic_settings
            .entry(identity.to_string())
            .or_insert_with(|| watch::channel(settings).0)
            .subscribe()
    }

    fn on_event(&self, room: &Arc<Room>, event: RoomEvent, tasks: &mut RoomTasks) {
        let room_name = room.name.clone();
        match event {
            RoomEvent::ParticipantConnected(p) => {
                tracing::info!(room = %room_name, identity = %p.identity, "participant joined");
                if let Some(log) = &tasks.log {
                    log.presence(&p.identity, true);
                }
                tasks.attributes.insert(p.identity.clone(), p.attributes);
                self.report(SessionReport::ParticipantJoined {
                    room: room_name,
                    identity: p.identity,
                });
            }
            RoomEvent::ParticipantDisconnected { identity, reason } => {
                tracing::info!(room = %room_name, %identity, reason = reason.as_str_name(), "participant left");
                if let Some(log) = &tasks.log {
                    log.presence(&identity, false);
                }
                tasks.attributes.remove(&identity);
                if let Some(r) = &tasks.recording {
                    r.participant_left(&identity);
                }
                tasks.mic_settings.remove(&identity);
                tasks.vb_requests.remove(&identity);
                tasks.track_budget.release_participant(&identity);
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
                tasks.attributes.insert(identity, attributes);
                self.refresh_settings(tasks);
            }
            RoomEvent::RoomMetadataChanged { metadata } => {
                tasks.room_switches = controls::room_switches(&metadata);
                tracing::info!(room = %room_name, switches = ?tasks.room_switches, "room switches changed");
                self.refresh_settings(tasks);
                self.reconcile_recording(room, tasks);
            }
            RoomEvent::TrackSubscribed(track) => {
                if let Err((refusal, first)) =
                    tasks
                        .track_budget
                        .admit(&track.participant, &track.sid, track.kind)
                {
                    if first {
                        let (cap, what) = refusal.cap(track.kind);
                        tracing::warn!(room = %room_name, participant = %track.participant, sid = %track.sid, cap, "track ignored: the agent takes at most {cap} {what} (further ones are ignored and counted in meeting_agent_tracks_ignored_total)");
                    }
                    return;
                }
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
                            Ok(stream) => {
                                let tap = recording::AudioTap::default();
                                if let Some(r) = &tasks.recording {
                                    r.add_audio(&track.sid, &track.participant, tap.clone());
                                }
                                tasks.audio_taps.insert(
                                    track.sid.clone(),
                                    (track.participant.clone(), tap.clone()),
                                );
                                let mic = microphone::Microphone {
                                    recording: tap,
                                    room: room.clone(),
                                    session: self.clone(),
                                    settings: self.mic_settings_for(tasks, &track.participant),
                                    participant: track.participant,
                                    sid: track.sid.clone(),
                                    captions: tasks.captions.clone(),
                                    origin_ms: tasks
                                        .started
                                        .map(|t| t.elapsed().as_millis() as u64)
                                        .unwrap_or(0),
                                };
                                tokio::spawn(mic.run(stream))
                            }
                            Err(e) => {
                                tasks.track_budget.release(&track.sid);
                                return tracing::warn!(error = %e, sid = %track.sid, "cannot open audio stream");
                            }
                        }
                    }
                    TrackKind::KindVideo => {
                        tasks
                            .video_tracks
                            .insert(track.sid.clone(), (track.participant.clone(), track.source));
                        if let Some(r) = &tasks.recording {
                            record_video(room, r, &track.sid, &track.participant, track.source);
                        }
                        match room.video_stream(&track.sid, 2) {
                            Ok(stream) => {
                                let stats = video::FrameStats::new(
                                    self.clone(),
                                    room_name,
                                    track.participant.clone(),
                                    track.sid.clone(),
                                );
                                match (&self.backgrounds, track.source) {
                                    (Some(pool), TrackSource::SourceCamera) => {
                                        let request = self.vb_request(tasks, &track.participant);
                                        let rx = tasks
                                            .vb_requests
                                            .entry(track.participant.clone())
                                            .or_insert_with(|| watch::channel(request).0)
                                            .subscribe();
                                        let camera = camera::Camera {
                                            room: room.clone(),
                                            participant: track.participant,
                                            pool: pool.clone(),
                                            request: rx,
                                            sources: self.background_sources.clone(),
                                        };
                                        tokio::spawn(camera.run(stream, stats))
                                    }
                                    _ => tokio::spawn(video::run(stream, stats)),
                                }
                            }
                            Err(e) => {
                                tasks.track_budget.release(&track.sid);
                                return tracing::warn!(error = %e, sid = %track.sid, "cannot open video stream");
                            }
                        }
                    }
                    TrackKind::KindUnknown => return,
                };
                if let Some(old) = tasks.pipelines.insert(track.sid, task) {
                    old.abort();
                }
            }
            RoomEvent::TrackUnsubscribed { sid, .. } | RoomEvent::TrackUnpublished { sid, .. } => {
                if let Some(task) = tasks.pipelines.remove(&sid) {
                    task.abort();
                }
                tasks.track_budget.release(&sid);
                tasks.video_tracks.remove(&sid);
                tasks.audio_taps.remove(&sid);
                if let Some(r) = &tasks.recording {
                    r.remove(&sid);
                }
            }
            RoomEvent::TrackMuted { sid, .. } => {
                if let Some(r) = &tasks.recording {
                    r.muted(&sid, true);
                }
            }
            RoomEvent::TrackUnmuted { sid, .. } => {
                if let Some(r) = &tasks.recording {
                    r.muted(&sid, false);
                }
            }
            RoomEvent::ActiveSpeakersChanged { identities } => {
                if let Some(r) = &tasks.recording {
                    r.speakers(identities);
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

impl MeetingSession {
    /// Starts or stops the room's recording to match the configuration and the room's switch.
    fn reconcile_recording(&self, room: &Arc<Room>, tasks: &mut RoomTasks) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let wanted = tasks
            .room_switches
            .get(recording::RECORDING_SWITCH)
            .and_then(|v| crate::config::parse_flag(v))
            .unwrap_or(recorder.config.auto);
        match (tasks.recording.take(), wanted) {
            (None, true) => {
                match recording::RoomRecording::start(recorder, &room.name, Some(room.clone())) {
                    Ok(r) => {
                        for (sid, (identity, source)) in &tasks.video_tracks {
                            record_video(room, &r, sid, identity, *source);
                        }
                        for (sid, (identity, tap)) in &tasks.audio_taps {
                            r.add_audio(sid, identity, tap.clone());
                        }
                        announce_recording(room, tasks, true);
                        tasks.recording = Some(r);
                    }
                    Err(e) => {
                        tracing::error!(room = %room.name, error = %e, "cannot start recording")
                    }
                }
            }
            (Some(r), false) => {
                announce_recording(room, tasks, false);
                tokio::spawn(r.stop());
            }
            (current, _) => tasks.recording = current,
        }
    }
}

/// Gives the recording its own stream of a video track.
fn record_video(
    room: &Room,
    recording: &recording::RoomRecording,
    sid: &str,
    identity: &str,
    source: TrackSource,
) {
    match room.video_stream(sid, 2) {
        Ok(stream) => recording.add_video(sid, identity, source, stream),
        Err(e) => tracing::warn!(error = %e, %sid, "cannot record video track"),
    }
}

/// Tells the room through the agent's attribute that it records (`recording=active`) or not.
fn announce_recording(room: &Arc<Room>, tasks: &mut RoomTasks, on: bool) {
    tasks
        .recording_announcer
        .get_or_insert_with(|| recording_announcer(room))
        .send_replace(on);
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
                let attributes = HashMap::from([(
                    recording::RECORDING_ATTRIBUTE.to_string(),
                    value.to_string(),
                )]);
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
