//! A microphone's stage: engine PCM (48 kHz mono, 10 ms) -> RNNoise -> what the meeting hears
//! (captions, recordings, any sink), and on request a clean track `<identity>-clean` that other
//! participants can subscribe to. A microphone admitted to DeepFilterNet hears DeepFilterNet's
//! output instead; RNNoise still runs for its voice probability (the VAD's input).

use std::collections::VecDeque;

use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::NsSettings;
use super::deepfilternet::DeepFilterNet;
use super::model_stream::{ModelState, ModelStream};
use crate::audio::Denoiser;
use crate::audio::denoise::{FRAME, RATE, to_i16};
use crate::livekit::engine::monotonic_us;
use crate::livekit::{Room, TrackSource};
use crate::media::AudioFrame;
use crate::protocol::NS_MODEL_TOPIC;
use crate::session::SessionReport;
use crate::session::feature::FinishFuture;
use crate::session::media::{AudioStage, HeardAudio};

/// The agent's published copy of one participant's denoised microphone.
struct CleanTrack {
    sid: String,
    /// Denoised PCM with the arrival time of the input frame that completed it and the
    /// model's algorithmic delay (µs).
    frames: mpsc::Sender<(Vec<i16>, i64, i64)>,
    spare: mpsc::Receiver<Vec<i16>>,
    task: JoinHandle<()>,
}

/// Frames dropped because the clean track could not keep up (never queued).
pub static CLEAN_FRAMES_DROPPED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        crate::metrics::counter(
            "meeting_agent_clean_track_frames_dropped_total",
            "Denoised frames dropped because the clean track could not keep up.",
        )
    });

/// Latency the agent adds to clean tracks, in microseconds per frame: from the engine handing
/// over the input frame to the engine taking the denoised frame, plus the model's algorithmic
/// delay (RNNoise 10 ms, DeepFilterNet 30 ms). The most recent 10,000 frames are kept.
pub static CLEAN_LATENCY_US: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

fn record_latency(arrival_us: i64, delay_us: i64) {
    let latency = (monotonic_us() - arrival_us + delay_us).max(0) as u32;
    let mut samples = CLEAN_LATENCY_US.lock().unwrap_or_else(|e| e.into_inner());
    if samples.len() == 10_000 {
        samples.pop_front();
    }
    samples.push_back(latency);
}

impl CleanTrack {
    async fn publish(room: &Room, identity: &str) -> Result<Self, crate::livekit::RoomError> {
        let track = room
            .publish_audio(
                &format!("{identity}-clean"),
                TrackSource::SourceMicrophone,
                RATE,
                1,
            )
            .await?;
        let sid = track.sid.clone();
        // One frame in flight and one waiting: anything beyond that is dropped, not queued,
        // so a slow engine never adds latency.
        let (frames, mut pending) = mpsc::channel::<(Vec<i16>, i64, i64)>(1);
        let (spare_tx, spare) = mpsc::channel(4);
        let task = tokio::spawn(async move {
            while let Some((samples, arrival_us, delay_us)) = pending.recv().await {
                match track.capture(samples).await {
                    Ok(buffer) => {
                        record_latency(arrival_us, delay_us);
                        let _ = spare_tx.try_send(buffer);
                    }
                    Err(e) => tracing::warn!(error = %e, "clean track capture failed"),
                }
            }
            drop(track);
        });
        Ok(Self {
            sid,
            frames,
            spare,
            task,
        })
    }

    fn send(&mut self, frame: &[f32; FRAME], arrival_us: i64, delay_us: i64) {
        let mut buffer = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FRAME));
        to_i16(frame, &mut buffer);
        if self
            .frames
            .try_send((buffer, arrival_us, delay_us))
            .is_err()
        {
            CLEAN_FRAMES_DROPPED.inc();
        }
    }

    async fn close(self, room: &Room) {
        drop(self.frames);
        let _ = self.task.await;
        if let Err(e) = room.unpublish(&self.sid).await {
            tracing::debug!(error = %e, "unpublishing the clean track");
        }
    }
}

/// The clean track's life: publishing is asynchronous, so frames go on while it is under way.
enum Clean {
    Off,
    Publishing(JoinHandle<Option<CleanTrack>>),
    On(CleanTrack),
}

/// Where a microphone's stage runs: its room, participant and track.
pub(super) struct StageContext {
    pub room: Arc<Room>,
    pub participant: String,
    pub sid: String,
    pub reports: tokio::sync::broadcast::Sender<SessionReport>,
}

/// Noise suppression of one microphone.
pub(super) struct DenoiseStage {
    pub room: Arc<Room>,
    pub participant: String,
    pub settings: watch::Receiver<NsSettings>,
    pub reports: tokio::sync::broadcast::Sender<SessionReport>,
    denoiser: Denoiser,
    current: NsSettings,
    clean: Clean,
    raw: [f32; FRAME],
    /// Which model the meeting hears, DeepFilterNet's admission and its stream.
    model: ModelStream,
    sid: String,
}

impl DenoiseStage {
    pub(super) fn new(
        context: StageContext,
        mut settings: watch::Receiver<NsSettings>,
        deepfilter: Option<Arc<DeepFilterNet>>,
    ) -> Self {
        let current = *settings.borrow_and_update();
        let model = ModelStream::new(context.participant.clone(), deepfilter);
        Self {
            room: context.room,
            participant: context.participant,
            settings,
            reports: context.reports,
            denoiser: Denoiser::new(current.denoise || current.clean_track),
            current,
            clean: Clean::Off,
            raw: [0f32; FRAME],
            model,
            sid: context.sid,
        }
    }

    /// Tells the participant which model its microphone got (a reliable data message on
    /// `ns.model`, to it alone), the session (a report) and the log.
    fn announce(&self, state: ModelState) {
        let (model, requested) = (state.model.name(), state.requested.name());
        tracing::info!(room = %self.room.name, participant = %self.participant, sid = %self.sid, model, requested, refused = state.refused, "noise-suppression model");
        let _ = self.reports.send(SessionReport::NoiseModel {
            room: self.room.name.clone(),
            participant: self.participant.clone(),
            sid: self.sid.clone(),
            model: state.model,
            requested: state.requested,
            refused: state.refused,
        });
        let payload = serde_json::json!({
            "track": self.sid,
            "model": model,
            "requested": requested,
            "refused": state.refused,
        })
        .to_string();
        let (room, to) = (self.room.clone(), vec![self.participant.clone()]);
        tokio::spawn(async move {
            if let Err(e) = room
                .publish_data(payload.as_bytes(), Some(NS_MODEL_TOPIC), true, &to)
                .await
            {
                tracing::debug!(error = %e, "cannot tell the participant its noise-suppression model");
            }
        });
    }

    /// Follows the switches: publishes or withdraws the clean track.
    fn reconcile_clean_track(&mut self) {
        if self.settings.has_changed().unwrap_or(false) {
            self.current = *self.settings.borrow_and_update();
            tracing::info!(room = %self.room.name, participant = %self.participant, denoise = self.current.denoise, clean_track = self.current.clean_track, model = self.current.model.name(), "noise suppression settings");
        }
        if let Clean::Publishing(task) = &mut self.clean
            && let Some(result) = task.now_or_never()
        {
            self.clean = match result.ok().flatten() {
                Some(track) => Clean::On(track),
                None => Clean::Off,
            };
        }
        match (&self.clean, self.current.clean_track) {
            (Clean::Off, true) => {
                let (room, participant, reports) = (
                    self.room.clone(),
                    self.participant.clone(),
                    self.reports.clone(),
                );
                self.clean = Clean::Publishing(tokio::spawn(async move {
                    match CleanTrack::publish(&room, &participant).await {
                        Ok(track) => {
                            tracing::info!(room = %room.name, %participant, sid = %track.sid, "clean track published");
                            let _ = reports.send(SessionReport::CleanTrackPublished {
                                room: room.name.clone(),
                                participant,
                                sid: track.sid.clone(),
                            });
                            Some(track)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, %participant, "cannot publish the clean track");
                            None
                        }
                    }
                }));
            }
            (Clean::On(_), false) => {
                if let Clean::On(track) = std::mem::replace(&mut self.clean, Clean::Off) {
                    let room = self.room.clone();
                    tokio::spawn(async move { track.close(&room).await });
                }
            }
            _ => {}
        }
    }
}

impl AudioStage for DenoiseStage {
    fn process(
        &mut self,
        frame: &AudioFrame,
        voice_wanted: bool,
        out: &mut dyn FnMut(&HeardAudio),
    ) {
        self.reconcile_clean_track();
        let settings = self.current;
        // DeepFilterNet only where its output is heard: the meeting's audio or the clean track.
        if let Some(state) = self
            .model
            .reconcile(settings.model, settings.denoise || settings.clean_track)
        {
            self.announce(state);
        }
        // RNNoise runs when anything needs it: captions use its voice probability.
        self.denoiser
            .set_enabled(settings.denoise || settings.clean_track || voice_wanted);
        let raw_ok =
            frame.sample_rate == RATE && frame.channels == 1 && frame.samples.len() == FRAME;
        if raw_ok {
            for (r, &s) in self.raw.iter_mut().zip(&frame.samples) {
                *r = s as f32;
            }
        }
        if !self.denoiser.enabled() {
            // Nothing needs RNNoise: the meeting hears the microphone as it came.
            if raw_ok {
                out(&HeardAudio {
                    samples: &self.raw,
                    voice_probability: 0.0,
                    arrival_us: frame.timestamp_us,
                });
            }
            return;
        }
        let (raw, clean, model) = (&self.raw, &mut self.clean, &mut self.model);
        // Any rate reaches DeepFilterNet too: it denoises the 48 kHz mono frame RNNoise read.
        let result =
            self.denoiser
                .process_with_input(frame, |input, rnnoise, voice_probability| {
                    let (denoised, delay_us) = model.denoise(input, rnnoise);
                    if let Clean::On(track) = clean {
                        track.send(denoised, frame.timestamp_us, delay_us);
                    }
                    // The meeting hears denoised audio unless suppression is off.
                    let samples = if settings.denoise || !raw_ok {
                        denoised
                    } else {
                        raw
                    };
                    out(&HeardAudio {
                        samples,
                        voice_probability,
                        arrival_us: frame.timestamp_us,
                    });
                });
        if let Err(e) = result {
            tracing::warn!(error = %e, participant = %self.participant, "audio frame skipped");
        }
    }

    fn finish(self: Box<Self>) -> FinishFuture {
        let room = self.room.clone();
        let clean = self.clean;
        Box::pin(async move {
            let track = match clean {
                Clean::Off => None,
                Clean::On(track) => Some(track),
                Clean::Publishing(task) => task.await.ok().flatten(),
            };
            if let Some(track) = track {
                track.close(&room).await;
            }
        })
    }
}
