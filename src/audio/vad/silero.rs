//! Silero VAD (ONNX, through ONNX Runtime loaded at run time): 32 ms windows at 16 kHz, each
//! given the previous window's last 64 samples as context (without it the model never fires),
//! with a recurrent state carried from window to window.

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};

use super::{VadError, VoiceDetector};
use crate::audio::denoise::FRAME;
use crate::audio::resample::MonoResampler;

const WINDOW: usize = 512;
const CONTEXT: usize = 64;
const STATE: usize = 2 * 128;

pub struct SileroVad {
    session: Session,
    resampler: MonoResampler,
    /// 16 kHz samples: the context, then the window being filled.
    input: Vec<f32>,
    state: Vec<f32>,
    probability: f32,
    samples: Vec<i16>,
    /// The sample rate input (a scalar), made once.
    rate: Tensor<i64>,
}

impl SileroVad {
    /// `model`: silero_vad.onnx; `environment`: from [`crate::onnx::environment`].
    pub fn new(environment: &Environment, model: &Path) -> Result<Self, VadError> {
        let load = |e: ort::Error| VadError::Model {
            path: model.display().to_string(),
            message: e.to_string(),
        };
        let session = Session::builder(environment)
            .map_err(load)?
            .with_intra_threads(1)
            .map_err(|e| load(e.into()))?
            .commit_from_file(model)
            .map_err(load)?;
        Ok(Self {
            session,
            resampler: MonoResampler::new(48_000, 16_000).expect("48 kHz to 16 kHz is supported"),
            input: vec![0.0; CONTEXT],
            state: vec![0.0; STATE],
            probability: 0.0,
            samples: Vec::with_capacity(FRAME),
            rate: Tensor::from_array(((), vec![16_000i64])).map_err(load)?,
        })
    }

    fn infer(&mut self) -> Result<(), VadError> {
        let err = |e: ort::Error| VadError::Inference(e.to_string());
        let input = TensorRef::from_array_view((
            [1usize, CONTEXT + WINDOW],
            &self.input[..CONTEXT + WINDOW],
        ))
        .map_err(err)?;
        let state = TensorRef::from_array_view(([2usize, 1, 128], &self.state[..])).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => &self.rate])
            .map_err(err)?;
        let (_, probability) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
        self.probability = probability.first().copied().unwrap_or(0.0);
        let (_, state) = outputs["stateN"].try_extract_tensor::<f32>().map_err(err)?;
        self.state.copy_from_slice(&state[..STATE]);
        Ok(())
    }
}

impl VoiceDetector for SileroVad {
    fn name(&self) -> &'static str {
        "silero"
    }

    /// The probability of the newest complete window (windows are 32 ms, frames 10 ms).
    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, VadError> {
        self.samples.clear();
        self.samples.extend(frame.iter().map(|&s| s as i16));
        let input = &mut self.input;
        self.resampler.push(&self.samples, 1, |mono| {
            input.extend(mono.iter().map(|&s| s / 32768.0))
        });
        while self.input.len() >= CONTEXT + WINDOW {
            self.infer()?;
            self.input.drain(..WINDOW);
        }
        Ok(self.probability)
    }
}
