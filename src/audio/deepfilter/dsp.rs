//! DeepFilterNet's signal path around the network: a 20 ms / 10 ms STFT with a Vorbis
//! window, ERB band energies and normalised complex bins as features, ERB gains spread back
//! over the bins, and the deep filter (a complex FIR across frames per low bin). Everything is
//! preallocated: nothing here allocates per frame.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::params::DfParams;

/// Starting points of the feature normalisation (the values the model was trained with).
const MEAN_NORM_INIT: (f32, f32) = (-60.0, -90.0);
const UNIT_NORM_INIT: (f32, f32) = (0.001, 0.0001);

/// The FFT plans, window and bands: the same for every stream of one model.
pub struct SignalPlan {
    pub params: DfParams,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    /// Forward-transform scaling so analysis then synthesis gives back the input.
    wnorm: f32,
    /// Bins per ERB band, lowest first; they add up to every bin.
    pub erb: Vec<usize>,
}

impl SignalPlan {
    pub fn new(params: DfParams) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let n = params.fft_size;
        let half = (n / 2) as f64;
        // Vorbis window: power complementary at 50 % overlap.
        let window = (0..n)
            .map(|i| {
                let s = (0.5 * std::f64::consts::PI * (i as f64 + 0.5) / half).sin();
                (0.5 * std::f64::consts::PI * s * s).sin() as f32
            })
            .collect();
        let wnorm = (2 * params.hop_size) as f32 / (n * n) as f32;
        let erb = erb_bands(
            params.sample_rate,
            n,
            params.nb_erb,
            params.min_nb_erb_freqs,
        );
        Self {
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
            window,
            wnorm,
            erb,
            params,
        }
    }
}

fn freq_to_erb(hz: f32) -> f32 {
    9.265 * (hz / (24.7 * 9.265)).ln_1p()
}

fn erb_to_freq(erb: f32) -> f32 {
    24.7 * 9.265 * ((erb / 9.265).exp() - 1.0)
}

/// Bins per band for `bands` bands equally spaced on the ERB scale, each at least `min_bins`
/// wide (a band forced wider takes its extra bins from the next one).
pub fn erb_bands(sample_rate: usize, fft_size: usize, bands: usize, min_bins: usize) -> Vec<usize> {
    let bin_hz = sample_rate as f32 / fft_size as f32;
    let top = freq_to_erb((sample_rate / 2) as f32);
    let step = top / bands as f32;
    let mut widths = vec![0usize; bands];
    let (mut previous, mut borrowed) = (0i64, 0i64);
    for (i, width) in widths.iter_mut().enumerate() {
        let edge = (erb_to_freq((i + 1) as f32 * step) / bin_hz).round() as i64;
        let mut bins = edge - previous - borrowed;
        if bins < min_bins as i64 {
            borrowed = min_bins as i64 - bins;
            bins = min_bins as i64;
        } else {
            borrowed = 0;
        }
        *width = bins as usize;
        previous = edge;
    }
    let freqs = fft_size / 2 + 1;
    widths[bands - 1] += 1;
    let total: usize = widths.iter().sum();
    if total > freqs {
        widths[bands - 1] -= total - freqs;
    }
    widths
}

/// One stream's STFT memory and feature normalisation state.
pub struct StreamDsp {
    plan: Arc<SignalPlan>,
    analysis_mem: Vec<f32>,
    synthesis_mem: Vec<f32>,
    time: Vec<f32>,
    fft_scratch: Vec<Complex32>,
    ifft_scratch: Vec<Complex32>,
    mean_norm: Vec<f32>,
    unit_norm: Vec<f32>,
}

impl StreamDsp {
    pub fn new(plan: Arc<SignalPlan>) -> Self {
        let p = &plan.params;
        let (n, hop, erb, df) = (p.fft_size, p.hop_size, p.nb_erb, p.nb_df);
        let linspace = |(a, b): (f32, f32), len: usize| -> Vec<f32> {
            (0..len)
                .map(|i| a + i as f32 * (b - a) / (len.max(2) - 1) as f32)
                .collect()
        };
        Self {
            analysis_mem: vec![0.0; n - hop],
            synthesis_mem: vec![0.0; n - hop],
            time: vec![0.0; n],
            fft_scratch: plan.forward.make_scratch_vec(),
            ifft_scratch: plan.inverse.make_scratch_vec(),
            mean_norm: linspace(MEAN_NORM_INIT, erb),
            unit_norm: linspace(UNIT_NORM_INIT, df),
            plan,
        }
    }

    /// One hop of input (full scale 1.0) to its spectrum.
    pub fn analysis(&mut self, input: &[f32], spectrum: &mut [Complex32]) {
        let plan = &*self.plan;
        let keep = self.analysis_mem.len();
        let (head, tail) = self.time.split_at_mut(keep);
        for ((t, &m), &w) in head.iter_mut().zip(&self.analysis_mem).zip(&plan.window) {
            *t = m * w;
        }
        for ((t, &x), &w) in tail.iter_mut().zip(input).zip(&plan.window[keep..]) {
            *t = x * w;
        }
        // The memory is the newest `fft_size - hop` samples (one hop when they are equal).
        let hop = input.len();
        self.analysis_mem.rotate_left(hop.min(keep));
        let start = keep.saturating_sub(hop);
        self.analysis_mem[start..].copy_from_slice(&input[hop - (keep - start)..]);
        plan.forward
            .process_with_scratch(&mut self.time, spectrum, &mut self.fft_scratch)
            .expect("buffers sized by the plan");
        for x in spectrum.iter_mut() {
            *x *= plan.wnorm;
        }
    }

    /// A spectrum back to one hop of output (overlap-add). The spectrum is used as scratch.
    pub fn synthesis(&mut self, spectrum: &mut [Complex32], output: &mut [f32]) {
        let plan = &*self.plan;
        // The inverse needs real DC and Nyquist bins; the model's filters can leave a tiny
        // imaginary part there, which a real signal cannot have.
        spectrum[0].im = 0.0;
        let last = spectrum.len() - 1;
        spectrum[last].im = 0.0;
        plan.inverse
            .process_with_scratch(spectrum, &mut self.time, &mut self.ifft_scratch)
            .expect("buffers sized by the plan");
        for (t, &w) in self.time.iter_mut().zip(&plan.window) {
            *t *= w;
        }
        let hop = output.len();
        for ((o, &t), &m) in output.iter_mut().zip(&self.time).zip(&self.synthesis_mem) {
            *o = t + m;
        }
        let keep = self.synthesis_mem.len();
        self.synthesis_mem.rotate_left(hop.min(keep));
        let overlap = keep.saturating_sub(hop);
        for (m, &t) in self.synthesis_mem[..overlap]
            .iter_mut()
            .zip(&self.time[hop..])
        {
            *m += t;
        }
        self.synthesis_mem[overlap..].copy_from_slice(&self.time[hop + overlap..]);
    }

    /// The network's inputs for `spectrum`: normalised ERB band energies (dB) into `erb`, the
    /// lowest bins normalised to unit magnitude into `spec` (real parts, then imaginary).
    pub fn features(&mut self, spectrum: &[Complex32], erb: &mut [f32], spec: &mut [f32]) {
        let alpha = self.plan.params.norm_alpha;
        let mut start = 0;
        for ((out, &width), state) in erb.iter_mut().zip(&self.plan.erb).zip(&mut self.mean_norm) {
            let band = &spectrum[start..start + width];
            let power = band.iter().map(|x| x.norm_sqr()).sum::<f32>() / width as f32;
            let db = 10.0 * (power + 1e-10).log10();
            *state = db * (1.0 - alpha) + *state * alpha;
            *out = (db - *state) / 40.0;
            start += width;
        }
        let nb_df = self.unit_norm.len();
        let (re, im) = spec.split_at_mut(nb_df);
        for (i, state) in self.unit_norm.iter_mut().enumerate() {
            let x = spectrum[i];
            *state = x.norm() * (1.0 - alpha) + *state * alpha;
            let scale = 1.0 / state.sqrt();
            re[i] = x.re * scale;
            im[i] = x.im * scale;
        }
    }

    /// Multiplies each bin by its ERB band's gain.
    pub fn apply_gains(&self, spectrum: &mut [Complex32], gains: &[f32]) {
        let mut start = 0;
        for (&width, &g) in self.plan.erb.iter().zip(gains) {
            for x in &mut spectrum[start..start + width] {
                *x *= g;
            }
            start += width;
        }
    }
}

/// The deep filter: `out[f] = sum_k frames[k][f] * coefs[f][k]` for the lowest `coefs.len() /
/// (2 * order)` bins, `frames` oldest first, `coefs` as `[bin][order][re, im]`.
pub fn deep_filter(frames: &[&[Complex32]], coefs: &[f32], out: &mut [Complex32]) {
    let order = frames.len();
    let bins = coefs.len() / (2 * order);
    for (f, o) in out.iter_mut().enumerate().take(bins) {
        let c = &coefs[f * 2 * order..(f + 1) * 2 * order];
        let mut acc = Complex32::new(0.0, 0.0);
        for (k, frame) in frames.iter().enumerate() {
            acc += frame[f] * Complex32::new(c[2 * k], c[2 * k + 1]);
        }
        *o = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Arc<SignalPlan> {
        Arc::new(SignalPlan::new(
            DfParams::parse(super::super::params::tests_support::DFN3).unwrap(),
        ))
    }

    #[test]
    fn bands_cover_every_bin_and_grow_with_frequency() {
        let bands = erb_bands(48_000, 960, 32, 2);
        assert_eq!(bands.len(), 32);
        assert_eq!(bands.iter().sum::<usize>(), 481);
        assert!(bands.iter().all(|&b| b >= 2));
        assert!(bands[31] > bands[8], "{bands:?}");
    }

    #[test]
    fn analysis_then_synthesis_gives_back_the_input_one_hop_later() {
        let plan = plan();
        let mut dsp = StreamDsp::new(plan.clone());
        let input: Vec<f32> = (0..480 * 20)
            .map(|i| (i as f32 * 0.013).sin() * 0.5 + (i as f32 * 0.17).cos() * 0.1)
            .collect();
        let mut spectrum = vec![Complex32::default(); 481];
        let mut output = vec![0f32; input.len()];
        for (i, o) in input.chunks(480).zip(output.chunks_mut(480)) {
            dsp.analysis(i, &mut spectrum);
            dsp.synthesis(&mut spectrum, o);
        }
        // The output lags the input by fft_size - hop = 480 samples.
        let err = input[..input.len() - 480]
            .iter()
            .zip(&output[480..])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "max error {err}");
    }

    #[test]
    fn unit_gains_and_an_identity_filter_change_nothing() {
        let plan = plan();
        let dsp = StreamDsp::new(plan);
        let spectrum: Vec<Complex32> = (0..481)
            .map(|i| Complex32::new(i as f32, -(i as f32) * 0.5))
            .collect();
        let mut gained = spectrum.clone();
        dsp.apply_gains(&mut gained, &[1.0; 32]);
        assert_eq!(gained, spectrum);
        // Coefficient 1 on the middle frame, 0 elsewhere: the middle frame comes out.
        let zero = vec![Complex32::default(); 481];
        let frames = [&zero[..], &zero[..], &spectrum[..], &zero[..], &zero[..]];
        let mut coefs = vec![0f32; 96 * 10];
        for f in 0..96 {
            coefs[f * 10 + 4] = 1.0;
        }
        let mut out = vec![Complex32::new(9.0, 9.0); 481];
        deep_filter(&frames, &coefs, &mut out);
        assert_eq!(&out[..96], &spectrum[..96]);
        assert_eq!(
            out[96],
            Complex32::new(9.0, 9.0),
            "bins above nb_df untouched"
        );
    }

    #[test]
    fn features_are_finite_for_silence_and_full_scale() {
        let plan = plan();
        let mut dsp = StreamDsp::new(plan);
        let (mut erb, mut spec) = (vec![0f32; 32], vec![0f32; 192]);
        for level in [0.0f32, 1.0, 1e-30] {
            let spectrum = vec![Complex32::new(level, level); 481];
            dsp.features(&spectrum, &mut erb, &mut spec);
            assert!(erb.iter().chain(&spec).all(|v| v.is_finite()), "{level}");
        }
    }
}
