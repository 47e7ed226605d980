//! DeepFilterNet3 noise suppression, streaming: 10 ms in, 10 ms out (30 ms behind: a 20 ms
//! window and two frames of look-ahead), one stream per microphone. The network (ONNX, run by
//! ONNX Runtime) is shared by every stream; the signal path around it (STFT, features, ERB
//! gains, deep filtering) is this module's own, following the model's `config.ini`.
//!
//! Every frame gets both stages, ERB gains over the whole band and the deep filter on the
//! lowest bins, as the model was trained and as libDF's C API runs it (its thresholds for
//! skipping stages on the local SNR estimate are set so nothing is skipped; skipping them
//! measurably hurt: -8.8 dB SI-SNR on speech with hum at 10 dB instead of +3).

mod dsp;
mod model;
mod params;

use std::path::Path;
use std::sync::Arc;

use ort::environment::Environment;
use realfft::num_complex::Complex32;
use thiserror::Error;

pub use dsp::erb_bands;
use dsp::{SignalPlan, StreamDsp, deep_filter};
use model::{FrameOutputs, Network};
pub use params::DfParams;

/// The streaming graph models/fetch_models.sh makes from the model's export.
pub const MODEL_FILE: &str = "deepfilternet3_stream.onnx";
/// The model's own configuration, copied beside it.
pub const CONFIG_FILE: &str = "deepfilternet3_config.ini";

/// The longest deep filter the signal path takes (DeepFilterNet3's is 5 frames).
pub const MAX_ORDER: usize = 8;
/// Frames of digital silence after which the network is not run (a muted microphone costs
/// nothing); the output is silence too.
const SILENT_FRAMES: u32 = 5;
const SILENCE_POWER: f32 = 1e-7;
/// The pipeline's samples are i16 scale; the model's full scale is 1.0.
const SCALE: f32 = 32768.0;

#[derive(Debug, Error)]
pub enum DeepFilterError {
    #[error("DeepFilterNet configuration: {0}")]
    Config(String),
    #[error("cannot read {path}: {message} (models/fetch_models.sh deepfilternet makes it)")]
    Io { path: String, message: String },
    #[error("DeepFilterNet model {path}: {message}")]
    Model { path: String, message: String },
    #[error("DeepFilterNet inference failed: {0}")]
    Inference(String),
    #[error("a DeepFilterNet frame has {got} samples, not {want}")]
    FrameSize { got: usize, want: usize },
}

/// One loaded model: shared by every stream.
pub struct DeepFilterModel {
    plan: Arc<SignalPlan>,
    network: Network,
}

impl DeepFilterModel {
    /// Loads `dir`/[`MODEL_FILE`] with `dir`/[`CONFIG_FILE`]; `sessions` streams can run at
    /// the same moment (more wait their turn for a frame).
    pub fn load_dir(
        environment: &Environment,
        dir: &Path,
        sessions: usize,
    ) -> Result<Arc<Self>, DeepFilterError> {
        Self::load(
            environment,
            &dir.join(MODEL_FILE),
            &dir.join(CONFIG_FILE),
            sessions,
        )
    }

    pub fn load(
        environment: &Environment,
        model: &Path,
        config: &Path,
        sessions: usize,
    ) -> Result<Arc<Self>, DeepFilterError> {
        const MAX_CONFIG: u64 = 1 << 20;
        let io = |path: &Path, e: &dyn std::fmt::Display| DeepFilterError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        for path in [model, config] {
            if !path.is_file() {
                return Err(io(path, &"no such file"));
            }
        }
        let size = std::fs::metadata(config).map_err(|e| io(config, &e))?.len();
        if size > MAX_CONFIG {
            return Err(io(config, &format!("{size} bytes is not a config.ini")));
        }
        let text = std::fs::read_to_string(config).map_err(|e| io(config, &e))?;
        let params = DfParams::parse(&text)?;
        let network = Network::load(environment, model, &params, sessions)?;
        Ok(Arc::new(Self {
            plan: Arc::new(SignalPlan::new(params)),
            network,
        }))
    }

    pub fn params(&self) -> &DfParams {
        &self.plan.params
    }

    /// Samples per frame (10 ms at 48 kHz).
    pub fn hop(&self) -> usize {
        self.plan.params.hop_size
    }

    /// How far the output lags the input, in samples.
    pub fn delay_samples(&self) -> usize {
        let p = &self.plan.params;
        p.fft_size - p.hop_size + p.df_lookahead * p.hop_size
    }
}

/// One microphone's DeepFilterNet: its STFT memory, feature normalisation and network state.
pub struct DeepFilter {
    model: Arc<DeepFilterModel>,
    dsp: StreamDsp,
    /// Noisy spectra of the last `df_order` frames; `oldest` indexes the oldest.
    spectra: Vec<Vec<Complex32>>,
    oldest: usize,
    input: Vec<f32>,
    erb: Vec<f32>,
    spec: Vec<f32>,
    state: Vec<f32>,
    gains: Vec<f32>,
    coefs: Vec<f32>,
    out: Vec<Complex32>,
    silent: u32,
    /// Mix of the unprocessed spectrum kept in the output (0: none), from an attenuation limit.
    keep_noisy: f32,
    /// The network's local SNR estimate for the latest frame (dB).
    pub lsnr: f32,
    /// Frames the network ran on.
    pub frames: u64,
}

impl DeepFilter {
    pub fn new(model: Arc<DeepFilterModel>) -> Self {
        let p = model.plan.params.clone();
        let freqs = p.freqs();
        Self {
            dsp: StreamDsp::new(model.plan.clone()),
            spectra: vec![vec![Complex32::default(); freqs]; p.df_order],
            oldest: 0,
            input: vec![0.0; p.hop_size],
            erb: vec![0.0; p.nb_erb],
            spec: vec![0.0; 2 * p.nb_df],
            state: vec![0.0; model.network.state_len],
            gains: vec![0.0; p.nb_erb],
            coefs: vec![0.0; 2 * p.nb_df * p.df_order],
            out: vec![Complex32::default(); freqs],
            silent: 0,
            keep_noisy: 0.0,
            lsnr: 0.0,
            frames: 0,
            model,
        }
    }

    /// Removes at most `db` of noise (libDF's attenuation limit): the output keeps
    /// `10^(-db/20)` of the unprocessed signal. `None` (or 100 dB and more): no limit.
    pub fn set_attenuation_limit(&mut self, db: Option<f32>) {
        self.keep_noisy = match db {
            Some(db) if db.is_finite() && db > 0.0 && db < 100.0 => 10f32.powf(-db / 20.0),
            _ => 0.0,
        };
    }

    /// Denoises one frame (`hop` samples, i16 scale) into `output`, which is always filled:
    /// should the network fail, with the frame unprocessed (and the error returned), so the
    /// audio keeps its timing.
    pub fn process_frame(
        &mut self,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<f32, DeepFilterError> {
        let hop = self.input.len();
        if input.len() != hop || output.len() != hop {
            return Err(DeepFilterError::FrameSize {
                got: input.len().min(output.len()),
                want: hop,
            });
        }
        let mut power = 0.0;
        for (x, &s) in self.input.iter_mut().zip(input) {
            *x = if s.is_finite() { s / SCALE } else { 0.0 };
            power += *x * *x;
        }
        if power / hop as f32 <= SILENCE_POWER {
            self.silent = self.silent.saturating_add(1);
        } else {
            self.silent = 0;
        }
        if self.silent > SILENT_FRAMES {
            output.fill(0.0);
            self.lsnr = -15.0;
            return Ok(self.lsnr);
        }

        // The newest spectrum replaces the oldest.
        let order = self.spectra.len();
        let newest = self.oldest;
        self.oldest = (self.oldest + 1) % order;
        self.dsp.analysis(&self.input, &mut self.spectra[newest]);
        self.dsp
            .features(&self.spectra[newest], &mut self.erb, &mut self.spec);
        let result = self.model.network.run(
            &self.erb,
            &self.spec,
            &mut self.state,
            FrameOutputs {
                gains: &mut self.gains,
                coefs: &mut self.coefs,
            },
        );
        self.frames += 1;

        // The frame the network's look-ahead is centred on.
        let lookahead = self.model.plan.params.df_lookahead;
        let frame = |k: usize| (self.oldest + k) % order;
        let target = frame(order - 1 - lookahead);
        self.out.copy_from_slice(&self.spectra[target]);
        let outcome = match result {
            Ok(lsnr) => {
                self.lsnr = lsnr;
                self.dsp.apply_gains(&mut self.out, &self.gains);
                let frames: [&[Complex32]; MAX_ORDER] =
                    std::array::from_fn(|k| self.spectra[frame(k.min(order - 1))].as_slice());
                deep_filter(&frames[..order], &self.coefs, &mut self.out);
                if self.keep_noisy > 0.0 {
                    let keep = self.keep_noisy;
                    for (o, &x) in self.out.iter_mut().zip(&self.spectra[target]) {
                        *o = *o * (1.0 - keep) + x * keep;
                    }
                }
                Ok(lsnr)
            }
            Err(e) => Err(e),
        };
        self.dsp.synthesis(&mut self.out, output);
        for o in output.iter_mut() {
            *o *= SCALE;
        }
        outcome
    }
}

/// Denoises a whole clip (48 kHz mono, i16 scale) frame by frame, as the live path does; the
/// output is aligned with the input (the model's delay taken off, the tail flushed with
/// silence). For offline processing, tests and benchmarks.
pub fn deepfilter_clip(
    model: &Arc<DeepFilterModel>,
    input: &[f32],
) -> Result<Vec<f32>, DeepFilterError> {
    deepfilter_clip_limited(model, input, None)
}

/// As [`deepfilter_clip`], removing at most `limit_db` of noise.
pub fn deepfilter_clip_limited(
    model: &Arc<DeepFilterModel>,
    input: &[f32],
    limit_db: Option<f32>,
) -> Result<Vec<f32>, DeepFilterError> {
    let hop = model.hop();
    let delay = model.delay_samples();
    let mut filter = DeepFilter::new(model.clone());
    filter.set_attenuation_limit(limit_db);
    let mut out = Vec::with_capacity(input.len() + delay + hop);
    let mut frame = vec![0f32; hop];
    let mut chunk = vec![0f32; hop];
    let mut fed = 0;
    while out.len() < input.len() + delay {
        chunk.fill(0.0);
        let end = (fed + hop).min(input.len());
        if fed < end {
            chunk[..end - fed].copy_from_slice(&input[fed..end]);
        }
        fed += hop;
        filter.process_frame(&chunk, &mut frame)?;
        out.extend_from_slice(&frame);
    }
    out.drain(..delay);
    out.truncate(input.len());
    Ok(out)
}
