//! The composition root: every service a command runs, built from the configuration in one
//! place, so the worker, `join`, the demo, `process` and the benchmarks run the same product
//! with the same settings. Optional parts that cannot start here (virtual backgrounds without
//! ONNX Runtime, recording without its GStreamer plug-ins) are logged and left out; a part the
//! configuration insists on (`recording.auto`) is an error.

use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::features::captions::Captioning;
use crate::features::recording::Recorder;
use crate::session::MeetingSession;
use crate::store::Store;
use crate::video::processor::SegmenterPool;

#[derive(Debug, Error)]
pub enum ServicesError {
    #[error("messaging store `store.url` = {url}: {source}")]
    Store {
        /// Without its secrets.
        url: String,
        source: crate::store::StoreError,
    },
    #[error("captions: {0}")]
    Captions(#[from] crate::captions::ModelError),
    #[error("recording (`recording.auto` is on): {0}")]
    Recording(#[from] crate::recording::RecordingError),
}

/// What a command runs: built once, shared by every room.
#[derive(Clone)]
pub struct Services {
    pub config: Config,
    /// The messaging store (`store.enabled`).
    pub store: Option<Store>,
    /// The recognizer for the whole process (`captions.enabled`).
    pub captioning: Option<Captioning>,
    /// Composite recording, when GStreamer and its graphs are there.
    pub recorder: Option<Recorder>,
    /// Segmentation for virtual backgrounds (`video.virtual_backgrounds`), when ONNX Runtime
    /// and the models are there.
    pub backgrounds: Option<Arc<SegmenterPool>>,
    /// Webhook events into the store's outbox (with the store).
    pub events: Option<crate::integrations::Events>,
    /// DeepFilterNet (`[deepfilternet]`), when enabled and its model loads; otherwise
    /// microphones asking for it get RNNoise.
    pub deepfilter: Option<Arc<crate::features::noise_suppression::DeepFilterNet>>,
}

impl Services {
    /// Everything `config` enables.
    pub async fn build(config: &Config) -> Result<Self, ServicesError> {
        let store = if config.store.enabled {
            Some(connect_store(config).await?)
        } else {
            None
        };
        let events = store
            .clone()
            .map(|store| crate::integrations::Events::new(store, &config.webhooks));
        Ok(Self {
            store: store.clone(),
            captioning: Captioning::from_config(config)?,
            recorder: recorder(config, store, events.clone())?,
            events,
            backgrounds: backgrounds(config),
            deepfilter: crate::features::noise_suppression::DeepFilterNet::load(config).await,
            config: config.clone(),
        })
    }

    /// A long-running process's background work: recordings a previous process left in the
    /// spool are delivered, old ones deleted by the retention job.
    pub fn start_background_jobs(&self) {
        if let Some(recorder) = &self.recorder {
            recorder.recover_in_background();
            recorder.retention_in_background();
        }
        self.retention_in_background();
    }

    /// The retention job (`[retention]`) every `interval_secs`, when it has anything to do.
    fn retention_in_background(&self) {
        let policy = self.config.retention.clone();
        let any = policy.transcripts_days > 0
            || policy.media_days > 0
            || policy.rooms.values().any(|r| {
                r.transcripts_days.is_some_and(|d| d > 0)
                    || r.recordings_days.is_some_and(|d| d > 0)
            });
        let Some(store) = self.store.clone().filter(|_| any) else {
            return;
        };
        let services = self.clone();
        tokio::spawn(async move {
            let every = std::time::Duration::from_secs(policy.interval_secs.max(60));
            loop {
                let recorder = services.recorder.as_ref();
                let pass = crate::compliance::retention::run_configured(
                    &services.config,
                    &store,
                    recorder,
                    false,
                );
                if let Err(e) = pass.await {
                    tracing::warn!(error = %e, "retention pass failed; retried at the next one");
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// A worker for the voice and video message queue: needs the store and captions.
    pub fn media_worker(&self) -> Option<crate::media_messages::worker::MediaWorker> {
        let (store, captioning) = (self.store.clone()?, self.captioning.clone()?);
        let dir = self.config.media_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(error = %e, dir = %dir.display(), "the media folder cannot be made");
        }
        Some(
            crate::media_messages::worker::MediaWorker::new(
                store,
                captioning,
                self.config.media_messages.clone(),
                dir,
                crate::media_messages::attachments_bucket(&self.config),
                self.config.store.bot_user.clone(),
            )
            .with_events(self.events.clone()),
        )
    }

    /// `media_messages.workers` media workers in the background, until `shutdown` is true.
    pub fn start_media_workers(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        for _ in 0..self.config.media_messages.workers {
            let Some(worker) = self.media_worker() else {
                tracing::info!("voice and video messages need the store and captions: not started");
                return;
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move { worker.run(shutdown).await });
        }
    }

    /// `webhooks.dispatchers` outbox dispatchers in the background (webhooks and e-mails),
    /// until `shutdown` is true: they need the store.
    pub fn start_outbox_dispatchers(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let mailer = if self.config.email.enabled {
            match crate::integrations::email::Mailer::from_config(
                &self.config,
                self.recorder.clone(),
            ) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::error!(error = %e, "e-mail follow-ups cannot be sent; they wait in the outbox");
                    None
                }
            }
        } else {
            None
        };
        for _ in 0..self.config.webhooks.dispatchers {
            let dispatcher = crate::integrations::dispatcher::Dispatcher::new(
                store.clone(),
                self.config.webhooks.clone(),
                mailer.clone(),
            );
            let shutdown = shutdown.clone();
            tokio::spawn(async move { dispatcher.run(shutdown).await });
        }
    }

    /// The job every room gets: the session with every feature there is.
    pub fn session(&self) -> MeetingSession {
        crate::features::FeatureSet::from_services(self).session()
    }

    /// The agent worker running [`Self::session`] in each room it is given; with the store
    /// and `agent.failover`, it shares room leases with the other workers on that store.
    pub fn worker(&self) -> crate::worker::Worker {
        let worker = crate::worker::Worker::new(self.config.clone(), Arc::new(self.session()));
        match &self.store {
            Some(store) if self.config.agent.failover => worker.with_room_leases(Arc::new(
                crate::worker::failover::RoomLeases::new(&self.config, store.clone()),
            )),
            _ => worker,
        }
    }
}

/// The store at `store.url` (SQLite by default), whatever `store.enabled` says.
pub async fn connect_store(config: &Config) -> Result<Store, ServicesError> {
    let url = config.store_url();
    Store::connect(&url)
        .await
        .map_err(|source| ServicesError::Store {
            url: crate::store::redact::redact_url(&url),
            source,
        })
}

/// Recording on request (or always, `recording.auto`), posting into `store`'s threads.
fn recorder(
    config: &Config,
    store: Option<Store>,
    events: Option<crate::integrations::Events>,
) -> Result<Option<Recorder>, ServicesError> {
    match Recorder::from_config(config) {
        Ok(recorder) => Ok(Some(match (store, events) {
            (Some(store), Some(events)) => recorder.with_store(store).with_events(events),
            (Some(store), None) => recorder.with_store(store),
            _ => recorder,
        })),
        Err(e) if config.recording.auto => Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "recording is unavailable");
            Ok(None)
        }
    }
}

/// Segmentation for virtual backgrounds; without ONNX Runtime or the models the agent runs
/// without them, and says why.
fn backgrounds(config: &Config) -> Option<Arc<SegmenterPool>> {
    if !config.video.virtual_backgrounds {
        return None;
    }
    let pool = crate::onnx::environment(&config.video.onnxruntime)
        .map_err(crate::video::VbError::from)
        .and_then(|env| SegmenterPool::new(env, config.video.models_dir.clone()));
    match pool {
        Ok(pool) => Some(pool),
        Err(e) => {
            tracing::error!(error = %e, "virtual backgrounds are unavailable");
            None
        }
    }
}

/// Ends the process with `success`'s status. A process that started LiveKit's engine first
/// closes its rooms, then exits without running exit-time destructors: the engine's threads (its
/// runtime, WebRTC's) outlive `main`, and the library's statics being torn down under them now
/// and then killed the process with SIGSEGV after all its work was done. Everything of ours is
/// dropped and written by this point.
pub fn exit(success: bool) -> std::process::ExitCode {
    if crate::livekit::Engine::get().is_ok() {
        use std::io::Write;
        crate::livekit::Engine::shutdown(std::time::Duration::from_secs(5));
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: _exit ends the process at once; nothing runs after it.
        unsafe { libc::_exit(if success { 0 } else { 1 }) }
    }
    if success {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
