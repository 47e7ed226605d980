//! Microphone pipeline: engine PCM (48 kHz mono, 10 ms) -> RNNoise -> the meeting's consumers,
//! and on request a clean track `<identity>-clean` that other participants can subscribe to.
//! Per-track level and frequency figures are reported once a second.

use std::collections::VecDeque;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::controls::MicSettings;
use super::{MeetingSession, SessionReport};
use crate::audio::Denoiser;
use crate::audio::denoise::{FRAME, RATE, to_i16};
use crate::captions::speaker::{CaptionContext, SpeakerCaptions};
use crate::livekit::engine::monotonic_us;
use crate::livekit::{AudioStream, Room, TrackSource};
use crate::media::analysis::ToneMeter;

const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The agent's published copy of one participant's denoised microphone.
struct CleanTrack {
    sid: String,
    /// Denoised PCM with the arrival time of the input frame that completed it.
    frames: mpsc::Sender<(Vec<i16>, i64)>,
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
/// over the input frame to the engine taking the denoised frame, plus RNNoise's 10 ms
/// algorithmic delay. The most recent 10,000 frames are kept.
pub static CLEAN_LATENCY_US: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());
const RNNOISE_DELAY_US: i64 = 10_000;

fn record_latency(arrival_us: i64) {
    let latency = (monotonic_us() - arrival_us + RNNOISE_DELAY_US).max(0) as u32;
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
        let (frames, mut pending) = mpsc::channel::<(Vec<i16>, i64)>(1);
        let (spare_tx, spare) = mpsc::channel(4);
        let task = tokio::spawn(async move {
            while let Some((samples, arrival_us)) = pending.recv().await {
                match track.capture(samples).await {
                    Ok(buffer) => {
                        record_latency(arrival_us);
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

    fn send(&mut self, frame: &[f32; FRAME], arrival_us: i64) {
        let mut buffer = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FRAME));
        to_i16(frame, &mut buffer);
        if self.frames.try_send((buffer, arrival_us)).is_err() {
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

pub struct Microphone {
    pub room: Arc<Room>,
    pub session: MeetingSession,
    pub participant: String,
    pub sid: String,
    pub settings: watch::Receiver<MicSettings>,
    /// The room's captioning, when the agent captions at all.
    pub captions: Option<CaptionContext>,
    /// When this track started, relative to the agent joining the room.
    pub origin_ms: u64,
    /// The room's recording, while one runs.
    pub recording: super::recording::AudioTap,
}

impl Microphone {
    pub async fn run(mut self, mut stream: AudioStream) {
        let room_name = self.room.name.clone();
        let mut settings = *self.settings.borrow_and_update();
        let mut denoiser = Denoiser::new(settings.denoiser_on());
        let mut clean = None;
        let mut captions = self.captioner(settings);
        let mut window = ToneMeter::default();
        let mut raw = [0f32; FRAME];
        let mut frames_seen = 0u64;
        loop {
            let frame = tokio::select! {
                frame = stream.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                (utterance, result) = async { captions.as_mut().expect("guarded").interim_ready().await }, if captions.as_ref().is_some_and(|c| c.has_interim()) => {
                    if let Some(c) = captions.as_mut() {
                        c.on_interim(utterance, result);
                    }
                    continue;
                }
                changed = self.settings.changed() => {
                    if changed.is_err() {
                        break; // the session is ending
                    }
                    settings = *self.settings.borrow_and_update();
                    denoiser.set_enabled(settings.denoiser_on());
                    if !settings.captions {
                        if let Some(mut c) = captions.take() {
                            c.finish();
                        }
                    } else if let Some(c) = captions.as_mut() {
                        c.set_language(settings.language);
                    } else {
                        captions = self.captioner(settings);
                    }
                    tracing::info!(room = %room_name, participant = %self.participant, denoise = settings.denoise, clean_track = settings.clean_track, captions = settings.captions, language = %settings.language, "microphone settings");
                    continue;
                }
            };
            clean = self
                .reconcile_clean_track(clean, settings.clean_track)
                .await;
            frames_seen += 1;

            window.push(&frame);
            if window.seconds() >= REPORT_EVERY.as_secs_f64() {
                self.session.report(SessionReport::AudioStats {
                    room: room_name.clone(),
                    participant: self.participant.clone(),
                    sid: self.sid.clone(),
                    seconds: window.seconds(),
                    frequency_hz: window.frequency_hz(),
                    rms_dbfs: window.rms_dbfs(),
                });
                window = ToneMeter::default();
            }

            let raw_ok =
                frame.sample_rate == RATE && frame.channels == 1 && frame.samples.len() == FRAME;
            if raw_ok {
                for (r, &s) in raw.iter_mut().zip(&frame.samples) {
                    *r = s as f32;
                }
            }
            let result = denoiser.process(&frame, |denoised, voice_probability| {
                if let Some(track) = clean.as_mut() {
                    track.send(denoised, frame.timestamp_us);
                }
                // Captions and recordings hear what the meeting hears: denoised unless
                // suppression is off.
                let input = if settings.denoise || !raw_ok {
                    denoised
                } else {
                    &raw
                };
                if let Some(c) = captions.as_mut() {
                    c.push(&input[..], voice_probability);
                }
                self.recording.push(input, frame.timestamp_us);
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, participant = %self.participant, "audio frame skipped");
            }
        }
        tracing::debug!(participant = %self.participant, frames_seen, "microphone ended");
        if let Some(mut c) = captions {
            c.finish();
        }
        if let Some(track) = clean {
            track.close(&self.room).await;
        }
    }

    fn captioner(&self, settings: MicSettings) -> Option<SpeakerCaptions> {
        let ctx = self.captions.clone().filter(|_| settings.captions)?;
        Some(SpeakerCaptions::new(
            ctx,
            &self.participant,
            &self.sid,
            self.origin_ms,
            settings.language,
        ))
    }

    async fn reconcile_clean_track(
        &self,
        current: Option<CleanTrack>,
        wanted: bool,
    ) -> Option<CleanTrack> {
        match (current, wanted) {
            (None, true) => match CleanTrack::publish(&self.room, &self.participant).await {
                Ok(track) => {
                    tracing::info!(room = %self.room.name, participant = %self.participant, sid = %track.sid, "clean track published");
                    self.session.report(SessionReport::CleanTrackPublished {
                        room: self.room.name.clone(),
                        participant: self.participant.clone(),
                        sid: track.sid.clone(),
                    });
                    Some(track)
                }
                Err(e) => {
                    tracing::warn!(error = %e, participant = %self.participant, "cannot publish the clean track");
                    None
                }
            },
            (Some(track), false) => {
                track.close(&self.room).await;
                None
            }
            (current, _) => current,
        }
    }
}
