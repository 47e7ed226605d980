//! libDF's own DeepFilterNet3 (its C API, running the same export in tract), from the same
//! wheel as the model: what the project's signal path is compared with in tests and benches.
//! It reads the model archive itself, which fetch_models.sh keeps beside it.

use std::ffi::{CString, c_char, c_float, c_void};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

type Create = unsafe extern "C" fn(*const c_char, c_float, *const c_char) -> *mut c_void;
type FrameLength = unsafe extern "C" fn(*mut c_void) -> usize;
type Process = unsafe extern "C" fn(*mut c_void, *mut c_float, *mut c_float) -> c_float;
type Free = unsafe extern "C" fn(*mut c_void);

/// One reference stream.
pub struct ReferenceDeepFilter {
    library: libloading::Library,
    state: *mut c_void,
    pub hop: usize,
}

// SAFETY: the state is only touched through &mut self.
unsafe impl Send for ReferenceDeepFilter {}

/// Where fetch_models.sh put the reference library.
pub fn library_path() -> PathBuf {
    meeting_agent::paths::cache_dir()
        .join("models")
        .join("deepfilternet3-reference")
        .join("libdeepfilter.so")
}

/// The model archive the reference loads (fetch_models.sh keeps it beside the library).
fn archive_path() -> Result<PathBuf> {
    let archive = library_path().with_file_name("DeepFilterNet3_onnx.tar.gz");
    if !archive.is_file() {
        bail!(
            "{} is missing (models/fetch_models.sh deepfilternet)",
            archive.display()
        );
    }
    Ok(archive)
}

impl ReferenceDeepFilter {
    /// libDF with its defaults (no attenuation limit, no post filter).
    pub fn new() -> Result<Self> {
        Self::from(&library_path(), &archive_path()?)
    }

    pub fn from(library: &Path, archive: &Path) -> Result<Self> {
        // SAFETY: loading libDF's C library, whose initialisers only set up Rust statics.
        let library = unsafe { libloading::Library::new(library) }.with_context(|| {
            format!(
                "{} (models/fetch_models.sh deepfilternet)",
                library.display()
            )
        })?;
        let path = CString::new(archive.to_string_lossy().as_bytes())?;
        let level = CString::new("error")?;
        // SAFETY: the C API's documented signatures; the strings outlive the call.
        let (state, hop) = unsafe {
            let create: libloading::Symbol<Create> = library.get(b"df_create")?;
            let length: libloading::Symbol<FrameLength> = library.get(b"df_get_frame_length")?;
            let state = create(path.as_ptr(), 100.0, level.as_ptr());
            if state.is_null() {
                bail!("df_create failed for {}", archive.display());
            }
            (state, length(state))
        };
        Ok(Self {
            library,
            state,
            hop,
        })
    }

    /// One frame (full scale 1.0) in, one out; returns the local SNR estimate.
    pub fn process(&mut self, input: &mut [f32], output: &mut [f32]) -> f32 {
        assert!(input.len() == self.hop && output.len() == self.hop);
        // SAFETY: both buffers hold `hop` floats, the state is ours.
        unsafe {
            let process: libloading::Symbol<Process> = self
                .library
                .get(b"df_process_frame")
                .expect("df_process_frame");
            process(self.state, input.as_mut_ptr(), output.as_mut_ptr())
        }
    }
}

impl Drop for ReferenceDeepFilter {
    fn drop(&mut self) {
        // SAFETY: created by df_create, freed once.
        unsafe {
            if let Ok(free) = self.library.get::<Free>(b"df_free") {
                free(self.state);
            }
        }
    }
}

/// A whole clip (i16 scale) through the reference, aligned like
/// `meeting_agent::audio::deepfilter::deepfilter_clip` (`delay` samples taken off).
pub fn reference_clip(input: &[f32], delay: usize) -> Result<Vec<f32>> {
    let mut df = ReferenceDeepFilter::new()?;
    let hop = df.hop;
    let mut out = Vec::with_capacity(input.len() + delay + hop);
    let (mut frame_in, mut frame_out) = (vec![0f32; hop], vec![0f32; hop]);
    let mut fed = 0;
    while out.len() < input.len() + delay {
        frame_in.fill(0.0);
        let end = (fed + hop).min(input.len());
        for (d, &s) in frame_in.iter_mut().zip(&input[fed.min(end)..end]) {
            *d = s / 32768.0;
        }
        fed += hop;
        df.process(&mut frame_in, &mut frame_out);
        out.extend(frame_out.iter().map(|s| s * 32768.0));
    }
    out.drain(..delay);
    out.truncate(input.len());
    Ok(out)
}
