//! The room features, one folder (or file) each, and the one list that registers them. A room
//! opens them in this order and finishes them in the reverse: the meeting log first (captions
//! write into it), noise suppression before what hears the microphones.

pub mod backgrounds;
pub mod call_quality;
pub mod captions;
pub mod meeting_controls;
pub mod meeting_log;
pub mod noise_suppression;
pub mod recording;
pub mod room_events;
pub mod talk_time;

use std::sync::Arc;

use crate::config::AudioConfig;
use crate::features::captions::Captioning;
use crate::features::meeting_log::MeetingLogOptions;
use crate::features::recording::Recorder;
use crate::services::Services;
use crate::session::{Feature, MeetingSession};
use crate::store::Store;
use crate::video::background_source::SourcePolicy;
use crate::video::processor::SegmenterPool;

/// Registers every feature's metrics, so `/metrics` lists each at 0 before its first event.
pub fn register_metrics() {
    crate::session::TRACKS_IGNORED.get();
    noise_suppression::register_metrics();
    captions::register_metrics();
    backgrounds::register_metrics();
    recording::register_metrics();
    talk_time::register_metrics();
    call_quality::register_metrics();
}

/// Checks the configuration sections the features own, beyond what `Config::validate` checks
/// of plain data.
pub fn check_config(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    captions::check_config(&config.captions)
}

/// The services features are built from: all of them from [`Services`], or a few (tests,
/// benches). Noise suppression and talk time need nothing and are always there.
#[derive(Clone, Default)]
pub struct FeatureSet {
    pub audio: AudioConfig,
    pub store: Option<(Store, MeetingLogOptions)>,
    pub captioning: Option<Captioning>,
    pub backgrounds: Option<(Arc<SegmenterPool>, Arc<SourcePolicy>)>,
    pub recorder: Option<Recorder>,
    /// LiveKit's RoomService with the server's secret: the meeting controls' side in the room.
    pub room_service: Option<crate::livekit::room_service::RoomService>,
    /// Webhook events (and the e-mail settings the room hands addresses on with).
    pub events: Option<(crate::integrations::Events, crate::config::EmailConfig)>,
    /// Call quality and engagement sampling (with the store only).
    pub call_quality: Option<crate::config::CallQualityConfig>,
    /// DeepFilterNet for microphones that ask for it (`ns.model`); without it they get RNNoise.
    pub deepfilter: Option<Arc<noise_suppression::DeepFilterNet>>,
}

impl FeatureSet {
    pub fn new(audio: AudioConfig) -> Self {
        Self {
            audio,
            ..Default::default()
        }
    }

    /// Everything `services` has.
    pub fn from_services(services: &Services) -> Self {
        let config = &services.config;
        Self {
            audio: config.audio,
            deepfilter: services.deepfilter.clone(),
            store: services.store.clone().map(|store| {
                let mut options = MeetingLogOptions::from_config(config);
                options.events = services.events.clone();
                (store, options)
            }),
            events: services
                .events
                .clone()
                .map(|events| (events, config.email.clone())),
            captioning: services.captioning.clone(),
            backgrounds: services
                .backgrounds
                .clone()
                .map(|pool| (pool, Arc::new(SourcePolicy::from_config(config)))),
            recorder: services.recorder.clone(),
            room_service: (!config.livekit.url.is_empty()).then(|| {
                crate::livekit::room_service::RoomService::new(
                    &config.livekit.url,
                    &config.livekit.api_key,
                    &config.livekit.api_secret,
                )
            }),
            call_quality: config
                .call_quality
                .enabled
                .then(|| config.call_quality.clone()),
        }
    }

    /// Writes every meeting (thread, transcript, summary) into `store`.
    pub fn with_store(mut self, store: Store, options: MeetingLogOptions) -> Self {
        self.store = Some((store, options));
        self
    }

    pub fn with_captioning(mut self, captioning: Option<Captioning>) -> Self {
        self.captioning = captioning;
        self
    }

    /// Virtual backgrounds with images from `sources`.
    pub fn with_virtual_backgrounds(
        mut self,
        pool: Arc<SegmenterPool>,
        sources: SourcePolicy,
    ) -> Self {
        self.backgrounds = Some((pool, Arc::new(sources)));
        self
    }

    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// DeepFilterNet for microphones that ask for it.
    pub fn with_deepfilter(mut self, deepfilter: Arc<noise_suppression::DeepFilterNet>) -> Self {
        self.deepfilter = Some(deepfilter);
        self
    }

    /// Samples call quality and engagement into the store (see `with_store`).
    pub fn with_call_quality(mut self, config: crate::config::CallQualityConfig) -> Self {
        self.call_quality = Some(config);
        self
    }

    /// The waiting room's notices and the lock, through `service`.
    pub fn with_meeting_controls(
        mut self,
        service: crate::livekit::room_service::RoomService,
    ) -> Self {
        self.room_service = Some(service);
        self
    }

    /// The registered features, in the order rooms open them: the one list a new feature is
    /// added to.
    pub fn features(&self) -> Vec<Arc<dyn Feature>> {
        let mut features: Vec<Arc<dyn Feature>> = Vec::new();
        if let Some((store, options)) = &self.store {
            features.push(Arc::new(meeting_log::MeetingLogFeature::new(
                store.clone(),
                options.clone(),
            )));
        }
        if let Some((events, email)) = &self.events {
            features.push(Arc::new(room_events::RoomEvents {
                events: events.clone(),
                email: email.clone(),
            }));
        }
        if let Some(service) = &self.room_service {
            features.push(Arc::new(meeting_controls::MeetingControls {
                service: service.clone(),
            }));
        }
        features.push(Arc::new(noise_suppression::NoiseSuppression {
            defaults: self.audio,
            deepfilter: self.deepfilter.clone(),
        }));
        if let Some(captioning) = &self.captioning {
            features.push(Arc::new(captioning.clone()));
        }
        if let Some((pool, sources)) = &self.backgrounds {
            features.push(Arc::new(backgrounds::VirtualBackgrounds {
                pool: pool.clone(),
                sources: sources.clone(),
            }));
        }
        if let Some(recorder) = &self.recorder {
            features.push(Arc::new(recorder.clone()));
        }
        features.push(Arc::new(talk_time::TalkTime));
        if let (Some((store, _)), Some(config)) = (&self.store, &self.call_quality) {
            features.push(Arc::new(call_quality::CallQuality {
                store: store.clone(),
                config: config.clone(),
            }));
        }
        features
    }

    /// The session every room runs with these features.
    pub fn session(&self) -> MeetingSession {
        self.features()
            .into_iter()
            .fold(MeetingSession::new(), MeetingSession::with_feature)
    }
}
