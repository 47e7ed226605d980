//! Which model one microphone's meeting audio comes from: DeepFilterNet while the participant
//! asks for it and holds a slot of the process's budget, RNNoise otherwise. Refused (over
//! budget, or no model loaded), the microphone gets RNNoise and tries again now and then. Each
//! change is handed to the stage to announce; refusals are counted and logged here. Dropping
//! the stream gives its slot back.

use std::sync::Arc;

use super::admission::{DFN_ERRORS, DFN_REFUSALS, Slot};
use super::deepfilternet::DeepFilterNet;
use crate::audio::deepfilter::DeepFilter;
use crate::audio::denoise::FRAME;
use crate::config::NsModel;

/// RNNoise's algorithmic delay.
pub(super) const RNNOISE_DELAY_US: i64 = 10_000;
/// DeepFilterNet's: a 20 ms window and two frames of look-ahead.
pub(super) const DEEPFILTER_DELAY_US: i64 = 30_000;
/// A refused microphone asks for a slot again after this many frames (5 s).
const RETRY_FRAMES: u64 = 500;

/// The model a microphone runs, what it asked for, and why it did not get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ModelState {
    pub model: NsModel,
    pub requested: NsModel,
    /// `busy` (over budget) or `unavailable` (no model loaded).
    pub refused: Option<&'static str>,
}

/// A microphone's DeepFilterNet: its state, its slot and its output buffer.
struct DeepFilterStream {
    filter: DeepFilter,
    _slot: Slot,
    out: [f32; FRAME],
    errors: u64,
}

pub(super) struct ModelStream {
    /// For the log.
    participant: String,
    deepfilter: Option<Arc<DeepFilterNet>>,
    stream: Option<DeepFilterStream>,
    /// The last change handed out (none while the default runs and no other was asked for).
    announced: Option<ModelState>,
    /// Calls to `reconcile` (frames), and the one at which a refused microphone asks again.
    frames: u64,
    retry_at: u64,
    refusals_logged: bool,
}

impl ModelStream {
    pub(super) fn new(participant: String, deepfilter: Option<Arc<DeepFilterNet>>) -> Self {
        Self {
            participant,
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
    /// Returns the new state when it changed, for the participant to be told.
    pub(super) fn reconcile(&mut self, requested: NsModel, heard: bool) -> Option<ModelState> {
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
        if self.announced.unwrap_or(default) == state {
            return None;
        }
        self.announced = Some(state);
        if let Some(reason) = state.refused {
            DFN_REFUSALS.inc();
            // At warn once per microphone: a participant toggling its attribute is not worth a
            // warning each time.
            if !std::mem::replace(&mut self.refusals_logged, true) {
                tracing::warn!(participant = %self.participant, reason, "DeepFilterNet refused: this microphone gets RNNoise");
            } else {
                tracing::debug!(participant = %self.participant, reason, "DeepFilterNet refused again");
            }
        }
        Some(state)
    }

    /// Whether DeepFilterNet runs (tests).
    #[cfg(test)]
    fn running(&self) -> bool {
        self.stream.is_some()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::deepfilter::DeepFilterModel;

    /// The model models/fetch_models.sh deepfilternet puts in the default models folder.
    fn deepfilternet(max_streams: usize) -> Arc<DeepFilterNet> {
        let config = crate::config::Config::default();
        let env = crate::onnx::environment(&config.video.onnxruntime).unwrap();
        let model = DeepFilterModel::load_dir(&env, &config.deepfilternet_dir(), 1).unwrap();
        Arc::new(DeepFilterNet::new(model, max_streams).unwrap())
    }

    fn noisy_frame(i: usize) -> [f32; FRAME] {
        std::array::from_fn(|j| {
            let t = (i * FRAME + j) as f32;
            (t * 0.031).sin() * 3000.0 + ((t * 12.9898).sin() * 43758.547).fract() * 1500.0
        })
    }

    #[test]
    fn over_budget_falls_back_to_rnnoise_until_a_slot_is_free() {
        let dfn = deepfilternet(1);
        let (mut alice, mut bob) = (
            ModelStream::new("alice".into(), Some(dfn.clone())),
            ModelStream::new("bob".into(), Some(dfn.clone())),
        );
        let refusals = DFN_REFUSALS.get();
        let want = NsModel::Deepfilternet;
        assert_eq!(
            alice.reconcile(want, true),
            Some(ModelState {
                model: want,
                requested: want,
                refused: None
            })
        );
        assert_eq!(
            bob.reconcile(want, true),
            Some(ModelState {
                model: NsModel::Rnnoise,
                requested: want,
                refused: Some("busy")
            })
        );
        assert!(DFN_REFUSALS.get() > refusals);
        assert_eq!(dfn.admission.running(), 1);
        // The refused microphone hears RNNoise's frame, and is not told again every frame.
        let (input, rnnoise) = (noisy_frame(0), [7.0; FRAME]);
        let (heard, delay) = bob.denoise(&input, &rnnoise);
        assert_eq!((heard, delay), (&rnnoise, RNNOISE_DELAY_US));
        assert_eq!(bob.reconcile(want, true), None);
        // The admitted one hears DeepFilterNet: a frame out for every frame in.
        for i in 0..20 {
            let (heard, delay) = alice.denoise(&noisy_frame(i), &rnnoise);
            assert_eq!(delay, DEEPFILTER_DELAY_US);
            assert!(heard.iter().all(|s| s.is_finite()) && heard != &rnnoise);
        }
        // Alice switches back: her slot is free, and Bob takes it at his next try.
        assert_eq!(
            alice.reconcile(NsModel::Rnnoise, true).map(|s| s.model),
            Some(NsModel::Rnnoise)
        );
        assert!(!alice.running());
        assert_eq!(dfn.admission.running(), 0);
        let admitted = (0..=RETRY_FRAMES).find_map(|_| bob.reconcile(want, true));
        assert_eq!(admitted.map(|s| (s.model, s.refused)), Some((want, None)));
        assert!(bob.running());
        // Leaving gives the slot back.
        drop(bob);
        assert_eq!(dfn.admission.running(), 0);
    }

    #[test]
    fn without_the_model_or_without_use_there_is_no_deepfilternet() {
        let mut stream = ModelStream::new("carol".into(), None);
        let state = stream.reconcile(NsModel::Deepfilternet, true).unwrap();
        assert_eq!(state.model, NsModel::Rnnoise);
        assert_eq!(state.refused, Some("unavailable"));
        // The default asked for and running: nothing to tell.
        let mut quiet = ModelStream::new("dave".into(), None);
        assert_eq!(quiet.reconcile(NsModel::Rnnoise, true), None);
        // Nobody hears denoised audio (suppression off, no clean track): no slot is taken.
        let dfn = deepfilternet(4);
        let mut idle = ModelStream::new("erin".into(), Some(dfn.clone()));
        let state = idle.reconcile(NsModel::Deepfilternet, false).unwrap();
        assert_eq!((state.model, state.refused), (NsModel::Rnnoise, None));
        assert_eq!(dfn.admission.running(), 0);
    }
}
