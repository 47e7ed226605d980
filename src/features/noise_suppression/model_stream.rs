//! Which model one microphone's meeting audio comes from: DeepFilterNet while the participant
//! asks for it and holds a slot of the process's budget, RNNoise otherwise. Refused (over
//! budget, or no model loaded), the microphone gets RNNoise and tries again now and then; the
//! participant hears of each change (a data message on `ns.model`), the session's reports and
//! the log too. Dropping the stream gives its slot back.

use std::sync::Arc;

use serde_json::json;

use super::admission::{DFN_ERRORS, DFN_REFUSALS, Slot};
use super::deepfilternet::DeepFilterNet;
use crate::audio::deepfilter::DeepFilter;
use crate::audio::denoise::FRAME;
use crate::config::NsModel;
use crate::livekit::Room;
use crate::protocol::NS_MODEL_TOPIC;
use crate::session::SessionReport;

/// RNNoise's algorithmic delay.
pub(super) const RNNOISE_DELAY_US: i64 = 10_000;
/// DeepFilterNet's: a 20 ms window and two frames of look-ahead.
pub(super) const DEEPFILTER_DELAY_US: i64 = 30_000;
/// A refused microphone asks for a slot again after this many frames (5 s).
const RETRY_FRAMES: u64 = 500;

/// The model a microphone runs, what it asked for, and why it did not get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelState {
    model: NsModel,
    requested: NsModel,
    refused: Option<&'static str>,
}

/// A microphone's DeepFilterNet: its state, its slot and its output buffer.
struct DeepFilterStream {
    filter: DeepFilter,
    _slot: Slot,
    out: [f32; FRAME],
    errors: u64,
}

pub(super) struct ModelStream {
    room: Arc<Room>,
    participant: String,
    sid: String,
    reports: tokio::sync::broadcast::Sender<SessionReport>,
    deepfilter: Option<Arc<DeepFilterNet>>,
    stream: Option<DeepFilterStream>,
    /// What the participant was last told (nothing while it has the default and asked for no other).
    announced: Option<ModelState>,
    /// Calls to `reconcile` (frames), and the one at which a refused microphone asks again.
    frames: u64,
    retry_at: u64,
    refusals_logged: bool,
}

impl ModelStream {
    pub(super) fn new(
        room: Arc<Room>,
        participant: String,
        sid: String,
        reports: tokio::sync::broadcast::Sender<SessionReport>,
        deepfilter: Option<Arc<DeepFilterNet>>,
    ) -> Self {
        Self {
            room,
            participant,
            sid,
            reports,
            deepfilter,
            stream: None,
            announced: None,
            frames: 0,
            retry_at: 0,
            refusals_logged: false,
        }
    }

    /// Follows the participant's choice, once per frame: takes or gives back a slot. `heard`:
    /// whether any denoised audio is used (otherwise DeepFilterNet would run for nothing).
    pub(super) fn reconcile(&mut self, requested: NsModel, heard: bool) {
        self.frames += 1;
        let wanted = heard && requested == NsModel::Deepfilternet;
        let mut refused = None;
        if !wanted {
            // Back to RNNoise: the slot is given back with the stream; asked for again, it is
            // tried at once.
            self.stream = None;
            self.retry_at = 0;
        } else if self.stream.is_none() {
            refused = self.announced.and_then(|a| a.refused);
            if self.frames >= self.retry_at {
                match self.admit() {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        refused = None;
                    }
                    Err(reason) => {
                        refused = Some(reason);
                        self.retry_at = self.frames + RETRY_FRAMES;
                    }
                }
            }
        }
        let state = ModelState {
            model: if self.stream.is_some() {
                NsModel::Deepfilternet
            } else {
                NsModel::Rnnoise
            },
            requested,
            refused,
        };
        let default = ModelState {
            model: NsModel::Rnnoise,
            requested: NsModel::Rnnoise,
            refused: None,
        };
        if self.announced.unwrap_or(default) != state {
            self.announce(state);
        }
    }

    fn admit(&self) -> Result<DeepFilterStream, &'static str> {
        let Some(deepfilter) = &self.deepfilter else {
            return Err("unavailable");
        };
        let slot = deepfilter.admission.try_admit().ok_or("busy")?;
        Ok(DeepFilterStream {
            filter: DeepFilter::new(deepfilter.model.clone()),
            _slot: slot,
            out: [0.0; FRAME],
            errors: 0,
        })
    }

    /// What the meeting hears of one 48 kHz mono frame (`input`, RNNoise's output `rnnoise`),
    /// and the delay of the model it came from. Without allocating.
    pub(super) fn denoise<'a>(
        &'a mut self,
        input: &[f32; FRAME],
        rnnoise: &'a [f32; FRAME],
    ) -> (&'a [f32; FRAME], i64) {
        let Some(stream) = &mut self.stream else {
            return (rnnoise, RNNOISE_DELAY_US);
        };
        // On an error the frame comes out unprocessed, in time: counted and logged sparingly.
        if let Err(e) = stream.filter.process_frame(input, &mut stream.out) {
            DFN_ERRORS.inc();
            stream.errors += 1;
            if stream.errors == 1 || stream.errors.is_multiple_of(1000) {
                tracing::warn!(error = %e, participant = %self.participant, errors = stream.errors, "DeepFilterNet frame passed through unprocessed");
            }
        }
        (&stream.out, DEEPFILTER_DELAY_US)
    }

    /// Tells the participant (data message), the session (report) and the log.
    fn announce(&mut self, state: ModelState) {
        self.announced = Some(state);
        let (room, participant) = (&self.room.name, &self.participant);
        let (model, requested) = (state.model.name(), state.requested.name());
        match state.refused {
            Some(reason) => {
                DFN_REFUSALS.inc();
                // Once per microphone at warn: a participant toggling its attribute is not
                // worth a warning each time.
                if !std::mem::replace(&mut self.refusals_logged, true) {
                    tracing::warn!(%room, %participant, sid = %self.sid, reason, "DeepFilterNet refused: this microphone gets RNNoise");
                } else {
                    tracing::debug!(%room, %participant, sid = %self.sid, reason, "DeepFilterNet refused again");
                }
            }
            None => {
                tracing::info!(%room, %participant, sid = %self.sid, model, requested, "noise-suppression model")
            }
        }
        let _ = self.reports.send(SessionReport::NoiseModel {
            room: room.clone(),
            participant: participant.clone(),
            sid: self.sid.clone(),
            model: state.model,
            requested: state.requested,
            refused: state.refused,
        });
        let payload = json!({
            "track": self.sid,
            "model": model,
            "requested": requested,
            "refused": state.refused,
        })
        .to_string();
        let (live, to) = (self.room.clone(), vec![participant.clone()]);
        tokio::spawn(async move {
            if let Err(e) = live
                .publish_data(payload.as_bytes(), Some(NS_MODEL_TOPIC), true, &to)
                .await
            {
                tracing::debug!(error = %e, "cannot tell the participant its noise-suppression model");
            }
        });
    }
}
