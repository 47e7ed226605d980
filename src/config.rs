//! The one typed configuration: defaults, then an optional TOML file, then environment
//! variables (LiveKit's own names for the connection), validated once at start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is malformed: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: `{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveKitConfig {
    /// `ws://`, `wss://`, `http://` or `https://` URL of the LiveKit server.
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Empty: dispatched automatically into every new room. A name: explicit dispatch only.
    pub name: String,
    /// Display name of the agent participant in rooms.
    pub participant_name: String,
    /// Report `WS_FULL` and refuse jobs while CPU load is above this (0..1]; 1 = never full by load.
    pub load_threshold: f32,
    /// Hard cap on concurrent jobs (0 = no cap).
    pub max_jobs: u32,
    /// Seconds between load reports.
    pub status_interval_secs: f32,
    /// Seconds a draining worker waits for running jobs before leaving them.
    pub drain_timeout_secs: u64,
    /// Workers sharing a store give a room whose worker died an agent again (room leases in
    /// the store, src/worker/failover.rs).
    pub failover: bool,
    /// Milliseconds between a worker's heartbeats (and failover sweeps).
    pub failover_heartbeat_ms: u64,
    /// On SQLite, a worker silent this long is taken for dead and its rooms for orphaned
    /// (PostgreSQL sees a worker dead the moment its liveness lock's connection closes).
    pub failover_stale_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            participant_name: "Meeting Agent".into(),
            load_threshold: 0.7,
            max_jobs: 0,
            status_interval_secs: 2.5,
            drain_timeout_secs: 1800,
            failover: true,
            failover_heartbeat_ms: 500,
            failover_stale_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `meeting_agent=debug,livekit=warn`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            // JSON lines by default (one event per line whatever the values hold); `text` for
            // reading by eye, with control characters escaped (src/telemetry.rs).
            format: LogFormat::Json,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Path of liblivekit_ffi.so; default: `LIVEKIT_LIB_PATH` or the set-up cache.
    pub library: PathBuf,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            library: crate::paths::engine_library(),
        }
    }
}

/// Microphone processing defaults; participants override them with attributes
/// (`ns.enabled`, `ns.clean_track`, `ns.model`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Noise suppression on every microphone, in front of captions and recordings.
    pub noise_suppression: bool,
    /// Publish every microphone's denoised audio as `<identity>-clean`, not only on request.
    pub clean_tracks: bool,
    /// The suppression model a microphone gets unless its room or participant asks otherwise.
    pub ns_model: NsModel,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            noise_suppression: true,
            clean_tracks: false,
            ns_model: NsModel::default(),
        }
    }
}

/// A noise-suppression model (`audio.ns_model`, switch `ns.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsModel {
    /// RNNoise: cheap enough for every microphone.
    #[default]
    Rnnoise,
    /// DeepFilterNet3: better suppression at several times the CPU, admitted within a budget.
    Deepfilternet,
}

impl NsModel {
    pub fn name(self) -> &'static str {
        match self {
            NsModel::Rnnoise => "rnnoise",
            NsModel::Deepfilternet => "deepfilternet",
        }
    }

    /// The model a switch's value names (ASCII case and surrounding blanks ignored).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        [NsModel::Rnnoise, NsModel::Deepfilternet]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(value))
    }
}

/// DeepFilterNet3 (`[deepfilternet]`): loaded once per process when `enabled` and its
/// files are there; microphones asking for it beyond the admission budget get RNNoise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepFilterNetConfig {
    /// Load the model at start (off: every request for it gets RNNoise).
    pub enabled: bool,
    /// Folder of `deepfilternet3_stream.onnx` and `deepfilternet3_config.ini`; empty:
    /// `video.models_dir` (`models/fetch_models.sh deepfilternet` makes them).
    pub models_dir: PathBuf,
    /// ONNX Runtime sessions: streams that can run the network at the same moment.
    pub sessions: usize,
    /// Microphones running DeepFilterNet at once, process-wide; 0: from the speed measured at
    /// start (`cpu_share` of the cores).
    pub max_streams: usize,
    /// Share of the machine's cores DeepFilterNet may take when `max_streams` is 0.
    pub cpu_share: f64,
}

impl Default for DeepFilterNetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            models_dir: PathBuf::new(),
            sessions: 1,
            max_streams: 0,
            cpu_share: 0.5,
        }
    }
}

/// Live captions; participants switch theirs with the attribute `captions.enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionsConfig {
    pub enabled: bool,
    /// whisper.cpp GGML model (made by models/fetch_models.sh).
    pub model: PathBuf,
    /// Expected sha256 of the model; empty: the manifest's value for the project's own models
    /// (by file name), no check for others.
    pub model_sha256: String,
    /// Spoken language (code or name); empty or `auto` = detect per utterance (multilingual
    /// models only). Rooms and participants can ask for another (`captions.language`).
    pub language: String,
    /// Translate to English (multilingual models only).
    pub translate: bool,
    pub threads: usize,
    /// The first interim caption comes this long into an utterance; later ones as often as
    /// the speed whisper runs at allows (never more often than this).
    pub interim_ms: u32,
    /// How much of whisper's encoder window a final uses: `fitted` (default) or `full`.
    pub final_window: FinalWindow,
}

/// How much of the encoder window a final uses when no other final waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalWindow {
    /// The whole 30 s window, as whisper was trained.
    Full,
    /// The utterance plus a margin (BENCHMARKS.md, caption_final_window: several times faster
    /// for a few seconds of speech, same accuracy on the measured sets).
    #[default]
    Fitted,
}

/// sha256 of models/ggml-tiny.en.bin as models/fetch_models.sh makes it.
pub const TINY_EN_SHA256: &str = "5cca2e9b6791dff29da5435eb6df415228cd7997359e8863ff55b2de147f4baf";
/// sha256 of models/ggml-base.bin as models/fetch_models.sh makes it.
pub const BASE_SHA256: &str = "ab8c17e3474a1ca67d10d51eccb05aaa0333db148aa6382e579b3c4e72002dad";

impl CaptionsConfig {
    /// The checksum the model must have, if one is known.
    pub fn expected_sha256(&self) -> Option<&str> {
        if !self.model_sha256.is_empty() {
            return Some(&self.model_sha256);
        }
        match self.model.file_name().and_then(|n| n.to_str()) {
            Some("ggml-tiny.en.bin") => Some(TINY_EN_SHA256),
            Some("ggml-base.bin") => Some(BASE_SHA256),
            _ => None,
        }
    }
}

impl Default for CaptionsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model: cache_dir().join("models").join("ggml-tiny.en.bin"),
            model_sha256: String::new(),
            language: "en".into(),
            translate: false,
            threads: 2,
            interim_ms: 400,
            final_window: FinalWindow::default(),
        }
    }
}

/// How long stored data is kept (0: for ever), globally and per room; the retention job
/// deletes what is past it, every `interval_secs`, and writes each deletion in the audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Meeting transcripts (segments and transcript messages), from the meeting's end.
    pub transcripts_days: u32,
    /// Voice and video messages' jobs, transcripts and posters, from the job's end.
    pub media_days: u32,
    /// Per room, stricter or looser than the defaults (recordings here are on top of
    /// `recording.retention_days`, which applies to every room).
    pub rooms: std::collections::BTreeMap<String, RoomRetention>,
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            transcripts_days: 0,
            media_days: 0,
            rooms: Default::default(),
            interval_secs: 3600,
        }
    }
}

/// One room's retention; unset fields follow the defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoomRetention {
    pub transcripts_days: Option<u32>,
    pub recordings_days: Option<u32>,
}

/// Outgoing webhooks (`/v1/webhooks`) and the outbox that delivers them and the e-mails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Dispatchers in `meeting-agent worker` (0: none; `meeting-agent outbox work` runs one).
    pub dispatchers: usize,
    /// Endpoints there may be.
    pub max_endpoints: usize,
    /// Deliveries one endpoint (or address) may have waiting; more are dead-lettered as
    /// `outbox full` (visible in its log) instead of growing the store without bound.
    pub max_pending_per_target: i64,
    /// A receiver that has not answered (2xx) within this is a failed attempt.
    pub timeout_secs: u64,
    /// A failing endpoint's first retry; each failure doubles it, up to `retry_max_ms`, with
    /// jitter (a random 50-100 % of it), so many agents do not retry in step.
    pub retry_base_ms: u64,
    /// The longest wait between attempts at a failing endpoint: the most a receiver that came
    /// back waits for its backlog.
    pub retry_max_ms: u64,
    /// A delivery is dead-lettered after this many attempts (0: no limit) ...
    pub max_attempts: i64,
    /// ... or once it has waited this long.
    pub give_up_after_secs: u64,
    /// Deliveries claimed at once (sent concurrently, one per order key).
    pub batch: i64,
    /// How long a claim holds a delivery before another dispatcher may take it.
    pub lease_secs: u64,
    /// How often an idle dispatcher looks (this process and PostgreSQL's NOTIFY also wake it).
    pub poll_ms: u64,
    /// Finished deliveries are kept in the log this long.
    pub keep_days: u32,
    /// Whether endpoints may be on loopback or private addresses. Off: an API caller could
    /// otherwise make the agent call internal services.
    pub allow_private_addresses: bool,
    /// Whether endpoints may use plain `http://` (loopback tests); off: `https://` only.
    pub allow_http: bool,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            dispatchers: 1,
            max_endpoints: 100,
            max_pending_per_target: 100_000,
            timeout_secs: 10,
            retry_base_ms: 500,
            retry_max_ms: 5_000,
            max_attempts: 0,
            give_up_after_secs: 86_400,
            batch: 16,
            lease_secs: 60,
            poll_ms: 1_000,
            keep_days: 7,
            allow_private_addresses: false,
            allow_http: false,
        }
    }
}

/// Meeting follow-ups by e-mail (SMTP): the summary to each attendee with a known address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub enabled: bool,
    /// `smtp://host:port` (STARTTLS when offered... required unless `smtp_plaintext`),
    /// `smtps://host:port` (TLS).
    pub smtp_url: String,
    pub username: String,
    pub password: String,
    /// Only for a relay on loopback (tests): no TLS at all.
    pub smtp_plaintext: bool,
    /// `Name <address>` the follow-ups come from.
    pub from: String,
    /// How long after a meeting its follow-up is sent (its recording is stored by then).
    pub delay_secs: u64,
    /// A participant attribute holding its address, trusted only for these domains (a
    /// participant allowed to set its own attributes could otherwise have the meeting's
    /// summary mailed anywhere). Addresses in the store's `user_emails` are always trusted.
    pub address_attribute: String,
    pub attribute_domains: Vec<String>,
    /// Rooms whose meetings get no follow-up.
    pub disabled_rooms: Vec<String>,
    /// The public base URL of the control API, for the unsubscribe link
    /// (`<base>/v1/email/unsubscribe?token=...`); empty: no link.
    pub public_url: String,
    /// Most recipients of one meeting's follow-up.
    pub max_recipients: usize,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            smtp_url: String::new(),
            username: String::new(),
            password: String::new(),
            smtp_plaintext: false,
            from: "Meeting Agent <meeting-agent@localhost>".into(),
            delay_secs: 30,
            address_attribute: "email".into(),
            attribute_domains: Vec::new(),
            disabled_rooms: Vec::new(),
            public_url: String::new(),
            max_recipients: 100,
        }
    }
}

/// Voice and video messages: the media job queue's workers (`meeting-agent media work`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaMessagesConfig {
    /// The folder `file:` attachments are read from (nothing outside it); empty:
    /// `<data_dir>/media`.
    pub dir: PathBuf,
    /// Bars of the waveform a player draws.
    pub waveform_bars: usize,
    /// Longest attachment transcribed; longer ones fail with that reason.
    pub max_seconds: u64,
    /// Largest attachment read, in bytes.
    pub max_bytes: u64,
    /// How long a claim holds a job before another worker may take it (renewed while it runs).
    pub lease_secs: u64,
    /// Attempts before a job fails for good (a bad file fails at once).
    pub max_attempts: i64,
    /// First retry's delay; each further one doubles it.
    pub retry_secs: u64,
    /// How often an idle worker looks for jobs (PostgreSQL also wakes it by NOTIFY).
    pub poll_ms: u64,
    /// Media workers `meeting-agent worker` runs beside the meetings (0: none; `meeting-agent
    /// media work` runs one on its own).
    pub workers: usize,
}

impl Default for MediaMessagesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            waveform_bars: 64,
            max_seconds: 3600,
            max_bytes: 500 * 1024 * 1024,
            lease_secs: 120,
            max_attempts: 5,
            retry_secs: 5,
            poll_ms: 500,
            workers: 1,
        }
    }
}

/// Call quality and engagement: what the agent receives of each participant, sampled from
/// WebRTC's statistics of its subscriptions into the store (needs `[store]`), and the meeting
/// summary's "Call quality" section when something was notable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallQualityConfig {
    pub enabled: bool,
    /// Seconds between two samples of every subscribed track.
    pub interval_secs: u64,
    /// Samples kept per track per meeting; later ones are counted in the metrics only.
    pub max_samples_per_track: u32,
    /// Participants followed per room (engagement and samples); later ones are not followed.
    pub max_participants: usize,
    /// A sample with more of its packets lost than this (per cent) is a bad moment.
    pub loss_percent: f64,
    /// A sample with more jitter than this (milliseconds) is a bad moment.
    pub jitter_ms: f64,
    /// A video sample below this share of the track's usual frame rate (per cent) is a bad moment.
    pub fps_drop_percent: f64,
}

impl Default for CallQualityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 5,
            max_samples_per_track: 2000,
            max_participants: 200,
            loss_percent: 5.0,
            jitter_ms: 30.0,
            fps_drop_percent: 50.0,
        }
    }
}

/// The messaging store (meeting threads, transcripts, summaries, search).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub enabled: bool,
    /// `sqlite:PATH` or `postgres://...`; empty: `sqlite:<data_dir>/meeting-agent.db`.
    pub url: String,
    /// The user the agent posts as.
    pub bot_user: String,
    /// After a meeting, how long to keep retrying an unavailable database.
    pub flush_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: String::new(),
            bot_user: "meeting-agent".into(),
            flush_timeout_secs: 60,
        }
    }
}

/// One API key and the rooms it may act on (`*`: all).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: String,
    #[serde(default)]
    pub rooms: Vec<String>,
    // --- issue 12 (API security): per-key token policy ---
    /// Whether tokens this key mints may grant `canUpdateOwnMetadata` (participants setting
    /// their own `vb.*`/`captions.*` attributes) when the request asks for it.
    #[serde(default)]
    pub participant_attributes: bool,
}

/// The control API (`meeting-agent worker` serves it when `enabled`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub enabled: bool,
    pub bind: String,
    /// Callers and their rooms; every call but health needs one.
    pub keys: Vec<ApiKey>,
    /// Longest lifetime of a minted participant token.
    pub token_max_ttl_secs: u64,
    /// Tokens minted per API key per minute.
    pub token_rate_per_minute: u32,
    // --- issue 12 (API security): limits and policies ---
    /// Largest request body of JSON calls (uploads have their own limit).
    pub max_body_bytes: usize,
    /// Longest time a call may take before it is answered 503.
    pub request_timeout_secs: u64,
    /// Calls served at once; more are answered 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// Background images kept per room (uploads beyond are refused with 507).
    pub background_max_count: u32,
    /// Bytes of background images kept per room.
    pub background_max_bytes: u64,
    /// Uploaded backgrounds older than this many days are deleted (0: kept).
    pub background_expiry_days: u32,
    /// Identities minted tokens may not take (the agent joins as `agent-<job>`).
    pub reserved_identity_prefixes: Vec<String>,
    /// Characters a minted identity may have besides ASCII letters and digits.
    pub identity_extra_chars: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: "127.0.0.1:8088".into(),
            keys: Vec::new(),
            token_max_ttl_secs: 3600,
            token_rate_per_minute: 30,
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 64,
            background_max_count: 20,
            background_max_bytes: 50_000_000,
            background_expiry_days: 30,
            reserved_identity_prefixes: vec!["agent-".into()],
            identity_extra_chars: "-_.@:".into(),
        }
    }
}

/// The longest `api.token_max_ttl_secs` (a week).
pub const TOKEN_MAX_TTL_LIMIT_SECS: u64 = 7 * 86_400;

/// Virtual backgrounds: participants ask with `vb.mode`, `vb.blur`, `vb.image`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    pub virtual_backgrounds: bool,
    /// Where `selfie_segmentation*.onnx` are (models/fetch_models.sh selfie-segmentation).
    pub models_dir: PathBuf,
    /// ONNX Runtime's library.
    pub onnxruntime: PathBuf,
    /// Hosts whose https URLs participants may name as `vb.image` (`images.example.com`,
    /// `*.example.com`, `host:port`). Empty (the default): only images uploaded to the room.
    pub background_url_hosts: Vec<String>,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            virtual_backgrounds: true,
            models_dir: cache_dir().join("models"),
            onnxruntime: onnxruntime_library(),
            background_url_hosts: Vec::new(),
        }
    }
}

/// Composite recording (`[recording]`): what is recorded, how it is laid out and where it goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record every meeting from its start. Otherwise rooms switch recording on and off with
    /// `{"recording.enabled": true}` in their metadata (or the control API).
    pub auto: bool,
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_kbps: u32,
    /// Finished recordings (local storage) and recordings being written and uploaded (spool).
    /// Empty: `<data_dir>/recordings`.
    pub dir: PathBuf,
    /// `local` (the default) or `s3`.
    pub storage: StorageKind,
    pub s3: S3Config,
    /// Lifetime of presigned playback links.
    pub link_expiry_secs: u64,
    /// Recordings older than this many days are deleted (0: kept for ever).
    pub retention_days: u32,
    /// Audio's fixed head start over video on the way here that no statistic reports: the
    /// sender's Opus framing (20 ms frames plus look-ahead), the receiver's 10 ms playout
    /// pull and RNNoise's 10 ms (the AAC encoder's priming is corrected separately). Video is held back by this plus the measured difference of
    /// the jitter buffers. Calibrated with the flash-and-beep test (BENCHMARKS.md).
    pub audio_delay_ms: u32,
    /// A folder of GStreamer graph descriptions, each replacing the built-in file of the
    /// same name from the repository's `pipelines/` (see pipelines/README.md). Empty: all
    /// built in.
    pub pipelines_dir: PathBuf,
    /// The video encoder as a GStreamer element description (raw I420 in, H.264 out), e.g.
    /// `vaapih264enc bitrate={video_kbps}`. Empty: `pipelines/video-encoder.gst` (x264).
    /// Tried on a test picture at start.
    pub video_encoder: String,
    /// Live HLS while the meeting runs: two-second segments (from key frames) stored as
    /// objects as they close, and a live playlist (`/v1/recordings/{id}/live.m3u8`) that
    /// becomes the VOD one at the end. Doubles what is uploaded.
    pub live_hls: bool,
    /// Segments the live playlist lists while the meeting runs (the whole recording is
    /// listed once it ends); 900 are 30 minutes to seek back in.
    pub live_hls_window_segments: usize,
    /// Per-participant recordings (`recording.per_participant`) one room may write at once;
    /// microphones past this are not recorded on their own (a warning says whose).
    pub max_participant_recordings: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            auto: false,
            layout: Layout::Grid,
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_kbps: 2500,
            audio_bitrate_kbps: 128,
            dir: PathBuf::new(),
            storage: StorageKind::Local,
            s3: S3Config::default(),
            link_expiry_secs: 3600,
            retention_days: 0,
            audio_delay_ms: 40,
            pipelines_dir: PathBuf::new(),
            video_encoder: String::new(),
            live_hls: true,
            live_hls_window_segments: 900,
            max_participant_recordings: 16,
        }
    }
}

/// An S3-compatible bucket. The keys stay on the server: browsers get presigned links.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended to every object key, e.g. `recordings/`.
    pub prefix: String,
    pub access_key: String,
    /// Never logged or printed (`MEETING_AGENT_S3_SECRET_KEY`).
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`), as most self-hosted servers want.
    pub force_path_style: bool,
    /// Multipart part size; S3 wants at least 5 MiB for every part but the last.
    pub part_size_mib: u32,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .field("part_size_mib", &self.part_size_mib)
            .finish()
    }
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            force_path_style: true,
            part_size_mib: 5,
        }
    }
}

/// Who writes a meeting summary's key points: offline (default) or a model through its HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {
    /// `extractive`, `openai` (any OpenAI-compatible chat-completions API) or `gemini`.
    pub backend: SummaryBackend,
    /// e.g. `https://api.openai.com/v1` or `https://generativelanguage.googleapis.com/v1beta`.
    pub endpoint: String,
    pub model: String,
    /// Kept on the server; never logged or printed.
    pub api_key: String,
    /// A slower answer falls back to the extractive summary.
    pub timeout_secs: u64,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        Self {
            backend: SummaryBackend::Extractive,
            endpoint: String::new(),
            model: String::new(),
            api_key: String::new(),
            timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where transcripts (and later recordings spooled for upload) are kept.
    pub data_dir: PathBuf,
    pub livekit: LiveKitConfig,
    pub agent: AgentConfig,
    pub audio: AudioConfig,
    pub deepfilternet: DeepFilterNetConfig,
    pub captions: CaptionsConfig,
    pub store: StoreConfig,
    pub summary: SummaryConfig,
    pub video: VideoConfig,
    pub api: ApiConfig,
    pub recording: RecordingConfig,
    pub media_messages: MediaMessagesConfig,
    pub retention: RetentionConfig,
    pub webhooks: WebhooksConfig,
    pub email: EmailConfig,
    pub call_quality: CallQualityConfig,
    pub log: LogConfig,
    pub engine: EngineConfig,
}

/// Environment variables read on top of the file, with the field each one sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LIVEKIT_URL", "livekit.url"),
    ("LIVEKIT_API_KEY", "livekit.api_key"),
    ("LIVEKIT_API_SECRET", "livekit.api_secret"),
    ("MEETING_AGENT_NAME", "agent.name"),
    ("MEETING_AGENT_LOAD_THRESHOLD", "agent.load_threshold"),
    ("MEETING_AGENT_MAX_JOBS", "agent.max_jobs"),
    ("MEETING_AGENT_DATA_DIR", "data_dir"),
    ("MEETING_AGENT_CAPTIONS", "captions.enabled"),
    ("MEETING_AGENT_DATABASE_URL", "store.url"),
    ("MEETING_AGENT_LLM_API_KEY", "summary.api_key"),
    ("MEETING_AGENT_WHISPER_MODEL", "captions.model"),
    ("MEETING_AGENT_NOISE_SUPPRESSION", "audio.noise_suppression"),
    ("MEETING_AGENT_CLEAN_TRACKS", "audio.clean_tracks"),
    ("MEETING_AGENT_NS_MODEL", "audio.ns_model"),
    ("MEETING_AGENT_RECORD", "recording.auto"),
    ("MEETING_AGENT_VIDEO_ENCODER", "recording.video_encoder"),
    ("MEETING_AGENT_S3_ACCESS_KEY", "recording.s3.access_key"),
    ("MEETING_AGENT_S3_SECRET_KEY", "recording.s3.secret_key"),
    ("MEETING_AGENT_SMTP_PASSWORD", "email.password"),
    ("MEETING_AGENT_LOG_FORMAT", "log.format"),
    ("MEETING_AGENT_LOG", "log.filter"),
    ("LIVEKIT_LIB_PATH", "engine.library"),
];

/// A host name, `*.` + a host name, optionally `:port`: no scheme, path or address literal.
fn valid_host_pattern(entry: &str) -> bool {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return false;
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    !host.is_empty()
        && host.len() <= 253
        && host.parse::<std::net::IpAddr>().is_err()
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Config {
    /// Defaults <- file (if any) <- environment, then validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, |name| std::env::var(name).ok())
    }

    /// File and environment without validation: for offline commands (search, export) that
    /// need no LiveKit server.
    pub fn load_unvalidated(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_toml_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_toml_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, field) in ENV_VARS {
            let Some(value) = env(var) else { continue };
            let invalid = |problem: String| ConfigError::Invalid {
                field,
                problem: format!("(from {var}) {problem}"),
            };
            match *field {
                "livekit.url" => self.livekit.url = value,
                "livekit.api_key" => self.livekit.api_key = value,
                "livekit.api_secret" => self.livekit.api_secret = value,
                "agent.name" => self.agent.name = value,
                "agent.load_threshold" => {
                    self.agent.load_threshold = value
                        .parse()
                        .map_err(|_| invalid(format!("must be a number, got {value:?}")))?
                }
                "agent.max_jobs" => {
                    self.agent.max_jobs = value
                        .parse()
                        .map_err(|_| invalid(format!("must be a whole number, got {value:?}")))?
                }
                "log.format" => {
                    self.log.format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => {
                            return Err(invalid(format!(
                                "must be \"text\" or \"json\", got {value:?}"
                            )));
                        }
                    }
                }
                "audio.noise_suppression" => {
                    self.audio.noise_suppression = parse_flag(&value)
                        .ok_or_else(|| invalid(format!("must be true or false, got {value:?}")))?
                }
                "audio.clean_tracks" => {
                    self.audio.clean_tracks = parse_flag(&value)
                        .ok_or_else(|| invalid(format!("must be true or false, got {value:?}")))?
                }
                "audio.ns_model" => {
                    self.audio.ns_model = NsModel::parse(&value).ok_or_else(|| {
                        invalid(format!("must be rnnoise or deepfilternet, got {value:?}"))
                    })?
                }
                "data_dir" => self.data_dir = PathBuf::from(value),
                "captions.enabled" => {
                    self.captions.enabled = parse_flag(&value)
                        .ok_or_else(|| invalid(format!("must be true or false, got {value:?}")))?
                }
                "captions.model" => self.captions.model = PathBuf::from(value),
                "store.url" => self.store.url = value,
                "recording.auto" => {
                    self.recording.auto = parse_flag(&value)
                        .ok_or_else(|| invalid(format!("must be true or false, got {value:?}")))?
                }
                "recording.video_encoder" => self.recording.video_encoder = value,
                "recording.s3.access_key" => self.recording.s3.access_key = value,
                "recording.s3.secret_key" => self.recording.s3.secret_key = value,
                "summary.api_key" => self.summary.api_key = value,
                "email.password" => self.email.password = value,
                "log.filter" => self.log.filter = value,
                "engine.library" => self.engine.library = PathBuf::from(value),
                _ => unreachable!("every ENV_VARS field is handled"),
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        let url = &self.livekit.url;
        if url.is_empty() {
            return invalid(
                "livekit.url",
                "is required (set LIVEKIT_URL or [livekit] url)",
            );
        }
        if !["ws://", "wss://", "http://", "https://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            return invalid(
                "livekit.url",
                "must start with ws://, wss://, http:// or https://",
            );
        }
        if self.livekit.api_key.is_empty() {
            return invalid(
                "livekit.api_key",
                "is required (set LIVEKIT_API_KEY or [livekit] api_key)",
            );
        }
        if self.livekit.api_secret.is_empty() {
            return invalid(
                "livekit.api_secret",
                "is required (set LIVEKIT_API_SECRET or [livekit] api_secret)",
            );
        }
        if self.captions.threads == 0 || self.captions.threads > 64 {
            return invalid("captions.threads", "must be between 1 and 64");
        }
        if !(200..=10_000).contains(&self.captions.interim_ms) {
            return invalid("captions.interim_ms", "must be between 200 and 10000");
        }
        if !(self.agent.load_threshold > 0.0 && self.agent.load_threshold <= 1.0) {
            return invalid("agent.load_threshold", "must be in (0, 1]");
        }
        if !(50..=10_000).contains(&self.agent.failover_heartbeat_ms) {
            return invalid(
                "agent.failover_heartbeat_ms",
                "must be between 50 and 10000",
            );
        }
        if self.agent.failover_stale_ms < 2 * self.agent.failover_heartbeat_ms
            || self.agent.failover_stale_ms > 600_000
        {
            return invalid(
                "agent.failover_stale_ms",
                "must be at least twice agent.failover_heartbeat_ms and at most 600000",
            );
        }
        if !(self.agent.status_interval_secs >= 0.1 && self.agent.status_interval_secs <= 60.0) {
            return invalid("agent.status_interval_secs", "must be between 0.1 and 60");
        }
        if self.agent.name.chars().any(|c| c.is_whitespace()) {
            return invalid("agent.name", "must not contain whitespace");
        }
        let dfn = &self.deepfilternet;
        if !(1..=16).contains(&dfn.sessions) {
            return invalid("deepfilternet.sessions", "must be between 1 and 16");
        }
        if !(dfn.cpu_share > 0.0 && dfn.cpu_share <= 1.0) {
            return invalid("deepfilternet.cpu_share", "must be in (0, 1]");
        }
        if dfn.max_streams > 10_000 {
            return invalid("deepfilternet.max_streams", "must be at most 10000");
        }
        self.validate_media()?;
        self.validate_integrations()?;
        let store = &self.store.url;
        if !store.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|s| store.starts_with(s))
        {
            return invalid(
                "store.url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if self.store.bot_user.is_empty() {
            return invalid("store.bot_user", "must not be empty");
        }
        // --- issue 12 (API security): bounds of the API's limits ---
        if !(1..=TOKEN_MAX_TTL_LIMIT_SECS).contains(&self.api.token_max_ttl_secs) {
            return invalid("api.token_max_ttl_secs", "must be in 1..=604800 (a week)");
        }
        if self.api.max_body_bytes < 1024 || self.api.max_body_bytes > 16 * 1024 * 1024 {
            return invalid("api.max_body_bytes", "must be in 1024..=16777216");
        }
        if self.api.request_timeout_secs == 0 || self.api.request_timeout_secs > 3600 {
            return invalid("api.request_timeout_secs", "must be in 1..=3600");
        }
        if self.api.max_concurrent_requests == 0 {
            return invalid("api.max_concurrent_requests", "must be at least 1");
        }
        if self.api.background_max_count == 0 || self.api.background_max_bytes == 0 {
            return invalid(
                "api.background_max_count",
                "and api.background_max_bytes must be at least 1",
            );
        }
        if self
            .api
            .identity_extra_chars
            .chars()
            .any(|c| !c.is_ascii_punctuation() || c == '/')
        {
            return invalid(
                "api.identity_extra_chars",
                "may only hold ASCII punctuation other than /",
            );
        }
        if self
            .api
            .reserved_identity_prefixes
            .iter()
            .any(|p| p.is_empty())
        {
            return invalid(
                "api.reserved_identity_prefixes",
                "must not hold an empty prefix",
            );
        }
        if self.api.enabled {
            if self.api.keys.is_empty() {
                return invalid("api.keys", "needs at least one key when the API is enabled");
            }
            if self.api.keys.iter().any(|k| k.key.len() < 24) {
                return invalid("api.keys", "every key needs at least 24 characters");
            }
            if self.api.bind.parse::<std::net::SocketAddr>().is_err() {
                return invalid(
                    "api.bind",
                    "must be an address and port, such as 127.0.0.1:8088",
                );
            }
        }
        if self.summary.backend != SummaryBackend::Extractive {
            if !self.summary.endpoint.starts_with("http://")
                && !self.summary.endpoint.starts_with("https://")
            {
                return invalid(
                    "summary.endpoint",
                    "must be an http:// or https:// URL for a model backend",
                );
            }
            if self.summary.model.is_empty() {
                return invalid("summary.model", "is required for a model backend");
            }
            if self.summary.api_key.is_empty() {
                return invalid(
                    "summary.api_key",
                    "is required for a model backend (set MEETING_AGENT_LLM_API_KEY)",
                );
            }
        }
        self.validate_recording()?;
        let quality = &self.call_quality;
        if !(1..=3600).contains(&quality.interval_secs) {
            return invalid("call_quality.interval_secs", "must be between 1 and 3600");
        }
        if !(1..=100_000).contains(&quality.max_samples_per_track) {
            return invalid(
                "call_quality.max_samples_per_track",
                "must be between 1 and 100000",
            );
        }
        if !(1..=10_000).contains(&quality.max_participants) {
            return invalid(
                "call_quality.max_participants",
                "must be between 1 and 10000",
            );
        }
        for (field, value) in [
            ("call_quality.loss_percent", quality.loss_percent),
            ("call_quality.fps_drop_percent", quality.fps_drop_percent),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return invalid(field, "must be between 0 and 100");
            }
        }
        if !(quality.jitter_ms >= 0.0 && quality.jitter_ms.is_finite()) {
            return invalid("call_quality.jitter_ms", "must be 0 or more");
        }
        for host in &self.video.background_url_hosts {
            if !valid_host_pattern(host) {
                return Err(ConfigError::Invalid {
                    field: "video.background_url_hosts",
                    problem: format!(
                        "{host:?} is not a host name (`images.example.com`, `*.example.com`, optionally `:port`)"
                    ),
                });
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| {
            ConfigError::Invalid {
                field: "log.filter",
                problem: e.to_string(),
            }
        })?;
        Ok(())
    }

    /// `[media_messages]` alone (the `media` commands need no LiveKit settings).
    pub fn validate_media(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        let media = &self.media_messages;
        if !(1..=1000).contains(&media.waveform_bars) {
            return invalid("media_messages.waveform_bars", "must be between 1 and 1000");
        }
        if media.max_attempts < 1 || media.lease_secs == 0 || media.max_seconds == 0 {
            return invalid(
                "media_messages",
                "max_attempts, lease_secs and max_seconds must be at least 1",
            );
        }
        if media.workers > 16 {
            return invalid("media_messages.workers", "must be at most 16");
        }
        Ok(())
    }

    /// `[webhooks]` and `[email]`.
    pub fn validate_integrations(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        let w = &self.webhooks;
        if w.dispatchers > 16 {
            return invalid("webhooks.dispatchers", "must be at most 16");
        }
        if w.timeout_secs == 0 || w.lease_secs <= w.timeout_secs {
            return invalid(
                "webhooks.lease_secs",
                "must be longer than webhooks.timeout_secs (at least 1)",
            );
        }
        if w.retry_base_ms == 0 || w.retry_max_ms < w.retry_base_ms {
            return invalid(
                "webhooks.retry_max_ms",
                "must be at least webhooks.retry_base_ms (at least 1)",
            );
        }
        if !(1..=256).contains(&w.batch) || w.max_pending_per_target < 1 || w.poll_ms == 0 {
            return invalid(
                "webhooks",
                "batch must be in 1..=256, max_pending_per_target and poll_ms at least 1",
            );
        }
        if w.max_attempts < 0 {
            return invalid("webhooks.max_attempts", "must be 0 (no limit) or more");
        }
        let e = &self.email;
        if e.enabled {
            if !(e.smtp_url.starts_with("smtp://") || e.smtp_url.starts_with("smtps://")) {
                return invalid(
                    "email.smtp_url",
                    "must be smtp://HOST:PORT or smtps://HOST:PORT when e-mail is enabled",
                );
            }
            if e.from.parse::<lettre::message::Mailbox>().is_err() {
                return invalid(
                    "email.from",
                    "must be an address, optionally `Name <address>`",
                );
            }
            if !self.store.enabled {
                return invalid("email.enabled", "needs the store (its outbox)");
            }
        }
        if e.max_recipients == 0 || e.max_recipients > 1000 {
            return invalid("email.max_recipients", "must be in 1..=1000");
        }
        Ok(())
    }

    fn validate_recording(&self) -> Result<(), ConfigError> {
        let r = &self.recording;
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        if !(64..=3840).contains(&r.width) || !(64..=2160).contains(&r.height) {
            return invalid(
                "recording.width",
                "and height must be within 64x64..3840x2160",
            );
        }
        if !r.width.is_multiple_of(2) || !r.height.is_multiple_of(2) {
            return invalid("recording.width", "and height must be even (4:2:0 video)");
        }
        if !(1..=60).contains(&r.fps) {
            return invalid("recording.fps", "must be between 1 and 60");
        }
        if !(100..=50_000).contains(&r.video_bitrate_kbps) {
            return invalid(
                "recording.video_bitrate_kbps",
                "must be between 100 and 50000",
            );
        }
        if !(32..=320).contains(&r.audio_bitrate_kbps) {
            return invalid("recording.audio_bitrate_kbps", "must be between 32 and 320");
        }
        if r.audio_delay_ms > 500 {
            return invalid("recording.audio_delay_ms", "must be at most 500");
        }
        if r.live_hls && !(3..=100_000).contains(&r.live_hls_window_segments) {
            return invalid(
                "recording.live_hls_window_segments",
                "must be between 3 and 100000",
            );
        }
        if r.max_participant_recordings > 256 {
            return invalid(
                "recording.max_participant_recordings",
                "must be at most 256",
            );
        }
        if r.link_expiry_secs == 0 || r.link_expiry_secs > 7 * 24 * 3600 {
            return invalid(
                "recording.link_expiry_secs",
                "must be between 1 and 604800 (S3's limit of 7 days)",
            );
        }
        if r.storage == StorageKind::S3 {
            let s3 = &r.s3;
            if !s3.endpoint.starts_with("http://") && !s3.endpoint.starts_with("https://") {
                return invalid(
                    "recording.s3.endpoint",
                    "must be an http:// or https:// URL",
                );
            }
            if s3.bucket.is_empty() {
                return invalid("recording.s3.bucket", "is required for S3 storage");
            }
            if s3.access_key.is_empty() || s3.secret_key.is_empty() {
                return invalid(
                    "recording.s3.access_key",
                    "and secret_key are required for S3 storage (MEETING_AGENT_S3_ACCESS_KEY, MEETING_AGENT_S3_SECRET_KEY)",
                );
            }
            if !(5..=512).contains(&s3.part_size_mib) {
                return invalid("recording.s3.part_size_mib", "must be between 5 and 512");
            }
        }
        Ok(())
    }

    /// Where recordings are written, spooled and (for local storage) kept.
    pub fn recordings_dir(&self) -> PathBuf {
        if self.recording.dir.as_os_str().is_empty() {
            self.data_dir().join("recordings")
        } else {
            self.recording.dir.clone()
        }
    }

    /// The folder DeepFilterNet's files are read from.
    pub fn deepfilternet_dir(&self) -> PathBuf {
        let dir = &self.deepfilternet.models_dir;
        if dir.as_os_str().is_empty() {
            self.video.models_dir.clone()
        } else {
            dir.clone()
        }
    }

    /// Where `file:` attachments of voice and video messages are read from.
    pub fn media_dir(&self) -> PathBuf {
        if self.media_messages.dir.as_os_str().is_empty() {
            self.data_dir().join("media")
        } else {
            self.media_messages.dir.clone()
        }
    }

    /// `data_dir`, or `$XDG_DATA_HOME/meeting-agent` (`~/.local/share/meeting-agent`).
    pub fn data_dir(&self) -> PathBuf {
        if !self.data_dir.as_os_str().is_empty() {
            return self.data_dir.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".local")
                    .join("share")
            });
        base.join("meeting-agent")
    }

    /// The server's URL as a WebSocket URL (the FFI and `/agent` both want ws/wss).
    pub fn ws_url(&self) -> String {
        to_ws_url(&self.livekit.url)
    }
}

/// `true`/`false` (also `1`/`0`, `on`/`off`, `yes`/`no`), as environment variables and
/// participant attributes carry them.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

pub fn to_ws_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_string()
    }
}

/// Where slow-to-make artefacts live (FFI library, tools, models): `MEETING_AGENT_CACHE` or
/// `~/.cache/meeting-agent`.
pub use crate::paths::cache_dir;

impl Config {
    /// The store's URL with its default filled in.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            format!(
                "sqlite:{}",
                self.data_dir().join("meeting-agent.db").display()
            )
        } else {
            self.store.url.clone()
        }
    }
}

/// ONNX Runtime as scripts/setup.sh installs it from the pinned `onnxruntime` wheel:
/// `ORT_DYLIB_PATH` (ONNX Runtime's own variable) or the cache.
pub fn onnxruntime_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("onnxruntime").join("libonnxruntime.so"))
}

// Plain-data enums of the configuration; the features re-export them.

/// How participants are arranged. A screen share, while one is on, always takes the
/// `screen-share` arrangement: that is what a meeting's viewers look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Everyone in equal tiles.
    #[default]
    Grid,
    /// The active speaker large, the others in a strip below.
    Speaker,
    /// The shared screen large, cameras in a strip below.
    ScreenShare,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grid => "grid",
            Self::Speaker => "speaker",
            Self::ScreenShare => "screen-share",
        }
    }
}

/// Where finished recordings are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Local,
    S3,
}

impl StorageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
        }
    }
}

/// Who writes a meeting's key points.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryBackend {
    /// Offline, no key.
    Extractive,
    /// `POST {endpoint}/chat/completions` with `Authorization: Bearer KEY`.
    OpenAi,
    /// `POST {endpoint}/models/{model}:generateContent` with `x-goog-api-key: KEY`.
    Gemini,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_environment_variable_is_read_without_a_panic() {
        // A variable listed but not handled used to reach `unreachable!` at start-up.
        for (var, field) in ENV_VARS {
            for value in ["1", "true", "x"] {
                let mut config = Config::default();
                let one = [(*var, value)];
                let _ = config.apply_env(env(&one));
                if value == "x" && field.ends_with("password") {
                    assert_eq!(config.email.password, "x", "{var}");
                }
            }
        }
    }

    #[test]
    fn the_example_configuration_parses() {
        let config = Config::from_toml_str(
            include_str!("../meeting-agent.example.toml"),
            Path::new("meeting-agent.example.toml"),
        )
        .unwrap();
        assert!(config.video.background_url_hosts.is_empty());
        assert_eq!(
            config.api.reserved_identity_prefixes,
            vec!["agent-".to_string()]
        );
    }

    #[test]
    fn background_url_hosts_are_host_names() {
        for ok in [
            "images.example.com",
            "*.example.com",
            "cdn.example.org:8443",
            "localhost",
        ] {
            assert!(valid_host_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "https://images.example.com",
            "images.example.com/path",
            "127.0.0.1",
            "[::1]",
            "::1",
            "169.254.169.254:80",
            "host:0",
            "host:99999",
            "*",
            "a..b",
            "-a.example",
        ] {
            assert!(!valid_host_pattern(bad), "{bad}");
        }
    }

    const OK: &[(&str, &str)] = &[
        ("LIVEKIT_URL", "ws://127.0.0.1:7880"),
        ("LIVEKIT_API_KEY", "k"),
        ("LIVEKIT_API_SECRET", "s"),
    ];

    #[test]
    fn environment_fills_the_connection() {
        let c = Config::load_with_env(None, env(OK)).unwrap();
        assert_eq!(c.livekit.api_key, "k");
        assert_eq!(c.agent.load_threshold, 0.7);
        assert_eq!(c.ws_url(), "ws://127.0.0.1:7880");
        assert_eq!(to_ws_url("https://x.example"), "wss://x.example");
    }

    #[test]
    fn missing_secret_names_the_field() {
        let e = Config::load_with_env(None, env(&OK[..2]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("livekit.api_secret") && e.contains("LIVEKIT_API_SECRET"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut vars = OK.to_vec();
        vars.push(("MEETING_AGENT_LOAD_THRESHOLD", "lots"));
        let e = Config::load_with_env(None, env(&vars))
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.load_threshold"), "{e}");
        let mut vars = OK.to_vec();
        vars.push(("MEETING_AGENT_LOAD_THRESHOLD", "1.5"));
        assert!(
            Config::load_with_env(None, env(&vars))
                .unwrap_err()
                .to_string()
                .contains("agent.load_threshold")
        );
        let e = Config::load_with_env(
            None,
            env(&[
                ("LIVEKIT_URL", "ftp://x"),
                ("LIVEKIT_API_KEY", "k"),
                ("LIVEKIT_API_SECRET", "s"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("livekit.url"), "{e}");
    }

    #[test]
    fn the_noise_model_settings_are_read_and_checked() {
        let config = Config::from_toml_str(
            "[audio]\nns_model = \"deepfilternet\"\n[deepfilternet]\nmax_streams = 3\nmodels_dir = \"/m\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(config.audio.ns_model, NsModel::Deepfilternet);
        assert_eq!(config.deepfilternet.max_streams, 3);
        assert_eq!(config.deepfilternet_dir(), PathBuf::from("/m"));
        let defaults = Config::default();
        assert_eq!(defaults.audio.ns_model, NsModel::Rnnoise);
        assert_eq!(defaults.deepfilternet_dir(), defaults.video.models_dir);
        assert!(
            Config::from_toml_str("[audio]\nns_model = \"nope\"\n", Path::new("t.toml")).is_err()
        );
        let mut vars = OK.to_vec();
        vars.push(("MEETING_AGENT_NS_MODEL", "DeepFilterNet"));
        let c = Config::load_with_env(None, env(&vars)).unwrap();
        assert_eq!(c.audio.ns_model, NsModel::Deepfilternet);
        vars.push(("MEETING_AGENT_NS_MODEL", "x"));
        assert!(Config::load_with_env(None, env(&vars)).is_err());
        for (field, change) in [
            (
                "deepfilternet.sessions",
                (|c: &mut Config| c.deepfilternet.sessions = 0) as fn(&mut Config),
            ),
            ("deepfilternet.cpu_share", |c| {
                c.deepfilternet.cpu_share = 0.0
            }),
            ("deepfilternet.cpu_share", |c| {
                c.deepfilternet.cpu_share = f64::NAN
            }),
        ] {
            let mut config = Config::load_with_env(None, env(OK)).unwrap();
            change(&mut config);
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn call_quality_settings_are_checked() {
        let ok = || Config::load_with_env(None, env(OK)).unwrap();
        assert!(ok().validate().is_ok());
        for (field, change) in [
            (
                "call_quality.interval_secs",
                (|c: &mut Config| c.call_quality.interval_secs = 0) as fn(&mut Config),
            ),
            ("call_quality.max_samples_per_track", |c| {
                c.call_quality.max_samples_per_track = 0
            }),
            ("call_quality.max_participants", |c| {
                c.call_quality.max_participants = 0
            }),
            ("call_quality.loss_percent", |c| {
                c.call_quality.loss_percent = 101.0
            }),
            ("call_quality.fps_drop_percent", |c| {
                c.call_quality.fps_drop_percent = -1.0
            }),
            ("call_quality.jitter_ms", |c| {
                c.call_quality.jitter_ms = f64::NAN
            }),
        ] {
            let mut config = ok();
            change(&mut config);
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn store_summary_and_api_settings_are_checked() {
        let ok = || Config::load_with_env(None, env(OK)).unwrap();
        let problem = |c: Config| c.validate().unwrap_err().to_string();
        let mut c = ok();
        c.store.url = "mysql://db".into();
        assert!(problem(c).contains("store.url"));
        let mut c = ok();
        c.summary.backend = SummaryBackend::OpenAi;
        c.summary.endpoint = "https://llm.example/v1".into();
        c.summary.model = "m".into();
        assert!(problem(c).contains("summary.api_key"));
        let mut c = ok();
        c.api.enabled = true;
        assert!(problem(c.clone()).contains("api.keys"));
        c.api.keys = vec![ApiKey {
            key: "short".into(),
            rooms: vec!["*".into()],
            participant_attributes: false,
        }];
        assert!(problem(c.clone()).contains("at least 24"));
        c.api.keys[0].key = "k".repeat(24);
        c.api.bind = "localhost".into();
        assert!(problem(c.clone()).contains("api.bind"));
        c.api.bind = "127.0.0.1:0".into();
        c.validate().unwrap();
        // issue 12: a huge token lifetime (it panicked in `with_ttl`) and bad limits are refused.
        let mut t = c.clone();
        t.api.token_max_ttl_secs = u64::MAX;
        assert!(problem(t.clone()).contains("api.token_max_ttl_secs"));
        t.api.token_max_ttl_secs = 0;
        assert!(problem(t.clone()).contains("api.token_max_ttl_secs"));
        t.api.token_max_ttl_secs = 7 * 86_400;
        t.validate().unwrap();
        t.api.identity_extra_chars = "-/".into();
        assert!(problem(t.clone()).contains("api.identity_extra_chars"));
        t.api.identity_extra_chars = "-".into();
        t.api.max_concurrent_requests = 0;
        assert!(problem(t).contains("api.max_concurrent_requests"));
    }

    #[test]
    fn malformed_file_names_the_field() {
        let dir = std::env::temp_dir().join(format!("ma-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[agent]\nload_threshold = \"high\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), env(OK))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("load_threshold") && e.contains("bad.toml"),
            "{e}"
        );
        std::fs::write(&path, "[agent]\nlod_threshold = 0.5\n").unwrap();
        let e = Config::load_with_env(Some(&path), env(OK))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lod_threshold"), "{e}");
        std::fs::write(&path, "[livekit]\nurl = \"ws://h:1\"\napi_key = \"a\"\napi_secret = \"b\"\n[agent]\nname = \"notes\"\n").unwrap();
        let c = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(
            (c.agent.name.as_str(), c.livekit.api_key.as_str()),
            ("notes", "a")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
