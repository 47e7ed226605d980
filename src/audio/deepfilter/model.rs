//! The streaming DeepFilterNet3 graph (models/convert_deepfilternet.py) in ONNX Runtime: a
//! small pool of sessions any stream can use, since each stream keeps its own memory (the
//! graph's `state`) and hands it in with every frame.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use super::DeepFilterError;
use super::params::DfParams;

/// What one frame through the network gives.
pub struct FrameOutputs<'a> {
    /// ERB band gains, 0..1.
    pub gains: &'a mut [f32],
    /// Deep-filter coefficients, `[bin][order][re, im]`.
    pub coefs: &'a mut [f32],
}

pub struct Network {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Floats in the per-stream state.
    pub state_len: usize,
}

impl Network {
    /// Loads `model` into `sessions` sessions (one thread each) and checks that its inputs and
    /// outputs have the sizes `params` need.
    pub fn load(
        environment: &Environment,
        model: &Path,
        params: &DfParams,
        sessions: usize,
    ) -> Result<Self, DeepFilterError> {
        let error = |message: String| DeepFilterError::Model {
            path: model.display().to_string(),
            message,
        };
        let open = || -> Result<Session, DeepFilterError> {
            Session::builder(environment)
                .map_err(|e| error(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| error(e.to_string()))?
                .with_inter_threads(1)
                .map_err(|e| error(e.to_string()))?
                .commit_from_file(model)
                .map_err(|e| error(e.to_string()))
        };
        let first = open()?;
        let shape_of =
            |outlets: &[ort::value::Outlet], name: &str| -> Result<Vec<i64>, DeepFilterError> {
                outlets
                    .iter()
                    .find(|o| o.name() == name)
                    .and_then(|o| o.dtype().tensor_shape())
                    .map(|s| s.iter().copied().collect())
                    .ok_or_else(|| error(format!("the graph has no tensor `{name}`")))
            };
        let expect = |found: Vec<i64>, wanted: &[i64], name: &str| {
            if found != wanted {
                return Err(error(format!(
                    "`{name}` is {found:?}, the signal path needs {wanted:?}"
                )));
            }
            Ok(())
        };
        let (erb, df, order) = (
            params.nb_erb as i64,
            params.nb_df as i64,
            params.df_order as i64,
        );
        expect(
            shape_of(first.inputs(), "feat_erb")?,
            &[1, 1, 1, erb],
            "feat_erb",
        )?;
        expect(
            shape_of(first.inputs(), "feat_spec")?,
            &[1, 2, 1, df],
            "feat_spec",
        )?;
        expect(shape_of(first.outputs(), "m")?, &[1, 1, 1, erb], "m")?;
        expect(
            shape_of(first.outputs(), "coefs")?,
            &[1, 1, df, 2 * order],
            "coefs",
        )?;
        let state = shape_of(first.inputs(), "state")?;
        let state_len = match state.as_slice() {
            [n] if *n > 0 && *n < 16 << 20 => *n as usize,
            other => {
                return Err(error(format!(
                    "`state` is {other:?}, not one flat dimension"
                )));
            }
        };
        expect(
            shape_of(first.outputs(), "state_out")?,
            &[state_len as i64],
            "state_out",
        )?;
        let mut all = vec![Mutex::new(first)];
        for _ in 1..sessions.max(1) {
            all.push(Mutex::new(open()?));
        }
        Ok(Self {
            sessions: all,
            next: AtomicUsize::new(0),
            state_len,
        })
    }

    /// Runs one frame: `state` is read and replaced by the state after it; returns the local
    /// SNR estimate (dB).
    pub fn run(
        &self,
        erb: &[f32],
        spec: &[f32],
        state: &mut [f32],
        out: FrameOutputs<'_>,
    ) -> Result<f32, DeepFilterError> {
        let failed = |e: ort::Error| DeepFilterError::Inference(e.to_string());
        // A free session if there is one, else wait for the next in turn.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        let mut session = (0..n)
            .find_map(|i| self.sessions[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.sessions[start % n]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
            });
        let (nb_erb, nb_df) = (erb.len(), spec.len() / 2);
        let inputs = ort::inputs![
            TensorRef::from_array_view(([1usize, 1, 1, nb_erb], erb)).map_err(failed)?,
            TensorRef::from_array_view(([1usize, 2, 1, nb_df], spec)).map_err(failed)?,
            TensorRef::from_array_view(([state.len()], &*state)).map_err(failed)?,
        ];
        let outputs = session.run(inputs).map_err(failed)?;
        let copy = |name: &str, into: &mut [f32]| -> Result<(), DeepFilterError> {
            let (_, values) = outputs[name].try_extract_tensor::<f32>().map_err(failed)?;
            if values.len() != into.len() {
                return Err(DeepFilterError::Inference(format!(
                    "`{name}` has {} values, not {}",
                    values.len(),
                    into.len()
                )));
            }
            into.copy_from_slice(values);
            Ok(())
        };
        copy("m", out.gains)?;
        copy("coefs", out.coefs)?;
        copy("state_out", state)?;
        let (_, lsnr) = outputs["lsnr"]
            .try_extract_tensor::<f32>()
            .map_err(failed)?;
        Ok(lsnr.first().copied().unwrap_or(0.0))
    }
}
