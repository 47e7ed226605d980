//! DeepFilterNet for the whole process: the model, loaded once, and the admission budget,
//! planned from the speed measured on this machine at start (or `max_streams`).

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use super::admission::{Admission, streams_for_speed};
use crate::audio::deepfilter::{DeepFilterError, DeepFilterModel, deepfilter_clip};
use crate::audio::denoise::FRAME;
use crate::config::Config;

#[derive(Debug, Error)]
pub enum DeepFilterNetError {
    #[error("ONNX Runtime: {0}")]
    Runtime(#[from] crate::onnx::RuntimeError),
    #[error(transparent)]
    Model(#[from] DeepFilterError),
    #[error("the model's frames are {0} samples; the pipeline's are {FRAME}")]
    FrameSize(usize),
    #[error("loading the model was interrupted: {0}")]
    Interrupted(String),
}

/// Seconds of audio the speed is measured on.
const CALIBRATION_SECONDS: usize = 2;

/// The model and its budget, shared by every room.
pub struct DeepFilterNet {
    pub model: Arc<DeepFilterModel>,
    pub admission: Arc<Admission>,
}

impl DeepFilterNet {
    /// `model` with room for `max_streams` microphones.
    pub fn new(
        model: Arc<DeepFilterModel>,
        max_streams: usize,
    ) -> Result<Self, DeepFilterNetError> {
        if model.hop() != FRAME {
            return Err(DeepFilterNetError::FrameSize(model.hop()));
        }
        Ok(Self {
            model,
            admission: Admission::new(max_streams),
        })
    }

    /// Loads the model `[deepfilternet]` names and plans its budget: `max_streams`, or
    /// from the speed measured here. Blocks for the load and the measurement (about a second).
    pub fn from_config(config: &Config) -> Result<Self, DeepFilterNetError> {
        let settings = &config.deepfilternet;
        let environment = crate::onnx::environment(&config.video.onnxruntime)?;
        let dir = config.deepfilternet_dir();
        let model = DeepFilterModel::load_dir(&environment, &dir, settings.sessions)?;
        let max_streams = if settings.max_streams > 0 {
            settings.max_streams
        } else {
            let x_realtime = measure_x_realtime(&model)?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let streams = streams_for_speed(x_realtime, cores, settings.cpu_share);
            tracing::info!(
                x_realtime = format!("{x_realtime:.1}"),
                cores,
                cpu_share = settings.cpu_share,
                streams,
                "DeepFilterNet speed measured"
            );
            streams
        };
        tracing::info!(dir = %dir.display(), max_streams, "DeepFilterNet loaded");
        Self::new(model, max_streams)
    }

    /// As [`Self::from_config`], off the async runtime's threads; `None` (with a warning saying
    /// that requests get RNNoise) when disabled, missing or unusable.
    pub async fn load(config: &Config) -> Option<Arc<Self>> {
        if !config.deepfilternet.enabled {
            tracing::info!(
                "DeepFilterNet is disabled (deepfilternet.enabled): requests for it get RNNoise"
            );
            return None;
        }
        let config = config.clone();
        let loaded = tokio::task::spawn_blocking(move || Self::from_config(&config))
            .await
            .unwrap_or_else(|e| Err(DeepFilterNetError::Interrupted(e.to_string())));
        match loaded {
            Ok(dfn) => Some(Arc::new(dfn)),
            Err(e) => {
                tracing::warn!(error = %e, "DeepFilterNet is unavailable: microphones asking for it get RNNoise");
                None
            }
        }
    }
}

/// Seconds of audio one stream on one thread denoises per second.
pub fn measure_x_realtime(model: &Arc<DeepFilterModel>) -> Result<f64, DeepFilterError> {
    let audio = calibration_audio();
    let started = Instant::now();
    deepfilter_clip(model, &audio)?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    Ok(CALIBRATION_SECONDS as f64 / elapsed)
}

/// A tone in noise, loud enough that no frame counts as silence (silence skips the network).
fn calibration_audio() -> Vec<f32> {
    let mut seed = 0x2545_f491_u32;
    (0..48_000 * CALIBRATION_SECONDS)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f32 / u32::MAX as f32 - 0.5) * 2000.0;
            let tone = (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 48_000.0).sin() * 3000.0;
            noise + tone
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::deepfilter::{CONFIG_FILE, MODEL_FILE};

    #[test]
    fn the_budget_is_measured_or_configured() {
        let mut config = Config::default();
        config.deepfilternet.max_streams = 2;
        let dfn = DeepFilterNet::from_config(&config).unwrap();
        assert_eq!(dfn.admission.max(), 2);
        let x_realtime = measure_x_realtime(&dfn.model).unwrap();
        assert!(
            x_realtime.is_finite() && x_realtime > 0.5,
            "{x_realtime}x real time"
        );
        config.deepfilternet.max_streams = 0;
        config.deepfilternet.cpu_share = 1.0;
        let measured = DeepFilterNet::from_config(&config).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        // Within a factor of three of this measurement (the machine is shared: speeds vary).
        let expected = cores * x_realtime * super::super::admission::SAFETY;
        let got = measured.admission.max() as f64;
        assert!(
            got >= (expected / 3.0).floor() && got <= (expected * 3.0).ceil(),
            "{got} streams, {expected:.1} expected"
        );
    }

    #[test]
    fn a_missing_or_corrupt_model_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("dfn-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::default();
        config.deepfilternet.models_dir = dir.clone();
        let missing = DeepFilterNet::from_config(&config).err().unwrap();
        assert!(missing.to_string().contains(MODEL_FILE), "{missing}");
        let real = Config::default().deepfilternet_dir();
        std::fs::copy(real.join(CONFIG_FILE), dir.join(CONFIG_FILE)).unwrap();
        std::fs::write(dir.join(MODEL_FILE), b"not an onnx graph").unwrap();
        assert!(DeepFilterNet::from_config(&config).is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(rt.block_on(DeepFilterNet::load(&config)).is_none());
        config.deepfilternet.enabled = false;
        config.deepfilternet.models_dir = real;
        assert!(rt.block_on(DeepFilterNet::load(&config)).is_none());
        std::fs::remove_dir_all(dir).ok();
    }
}
