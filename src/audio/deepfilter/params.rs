//! The model's signal-path parameters, read from the `config.ini` that ships with its ONNX
//! export (the `[df]` section, and the model type from `[train]`).

use super::DeepFilterError;

/// What the signal path around the network needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct DfParams {
    pub sample_rate: usize,
    pub fft_size: usize,
    pub hop_size: usize,
    /// ERB bands the gains and features are computed in.
    pub nb_erb: usize,
    /// Lowest frequency bins that get deep filtering (and complex features).
    pub nb_df: usize,
    pub min_nb_erb_freqs: usize,
    /// Frames the deep filter spans.
    pub df_order: usize,
    /// Frames of look-ahead in the deep filter and in the encoder's input features.
    pub df_lookahead: usize,
    pub conv_lookahead: usize,
    /// Smoothing of the feature normalisation, from `norm_tau` (or `norm_alpha`).
    pub norm_alpha: f32,
}

impl DfParams {
    /// Parses `config.ini`: only DeepFilterNet3 with one look-ahead for both the features and
    /// the deep filter (what the streaming conversion supports), every value in a sane range.
    pub fn parse(text: &str) -> Result<Self, DeepFilterError> {
        let ini = Ini::parse(text)?;
        let model = ini.get("train", "model").unwrap_or("");
        if model != "deepfilternet3" {
            return Err(invalid(format!(
                "[train] model is {model:?}, not deepfilternet3"
            )));
        }
        let num = |section: &str, key: &str, max: usize| -> Result<usize, DeepFilterError> {
            let raw = ini
                .get(section, key)
                .ok_or_else(|| invalid(format!("[{section}] {key} is missing")))?;
            let v: usize = raw
                .parse()
                .map_err(|_| invalid(format!("[{section}] {key} = {raw:?} is not a number")))?;
            if v == 0 || v > max {
                return Err(invalid(format!("[{section}] {key} = {v} is out of range")));
            }
            Ok(v)
        };
        let sample_rate = num("df", "sr", 192_000)?;
        let fft_size = num("df", "fft_size", 8192)?;
        let hop_size = num("df", "hop_size", 8192)?;
        let nb_erb = num("df", "nb_erb", 256)?;
        let nb_df = num("df", "nb_df", 4096)?;
        let df_order = num("df", "df_order", super::MAX_ORDER)?;
        let min_nb_erb_freqs = num("df", "min_nb_erb_freqs", 64)?;
        let df_lookahead = ini
            .get("df", "df_lookahead")
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| invalid("[df] df_lookahead is missing".into()))?;
        let conv_lookahead = ini
            .get("deepfilternet", "conv_lookahead")
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| invalid("[deepfilternet] conv_lookahead is missing".into()))?;
        let freqs = fft_size / 2 + 1;
        if hop_size * 2 != fft_size {
            return Err(invalid(format!(
                "hop_size {hop_size} must be half of fft_size {fft_size}"
            )));
        }
        if nb_df > freqs || nb_erb * min_nb_erb_freqs > freqs {
            return Err(invalid(format!(
                "{nb_df} deep-filter bins or {nb_erb} ERB bands do not fit {freqs} bins"
            )));
        }
        if df_lookahead != conv_lookahead || df_lookahead >= df_order {
            return Err(invalid(format!(
                "df_lookahead {df_lookahead} and conv_lookahead {conv_lookahead} must be equal and below df_order {df_order}"
            )));
        }
        let norm_alpha = match ini.get("df", "norm_alpha") {
            Some(a) => a
                .parse::<f32>()
                .ok()
                .filter(|a| (0.0..1.0).contains(a))
                .ok_or_else(|| invalid(format!("[df] norm_alpha = {a:?}")))?,
            None => {
                let tau: f32 = ini
                    .get("df", "norm_tau")
                    .and_then(|v| v.parse().ok())
                    .filter(|t: &f32| t.is_finite() && *t > 0.0)
                    .ok_or_else(|| invalid("[df] norm_tau is missing or not positive".into()))?;
                norm_alpha(sample_rate, hop_size, tau)
            }
        };
        Ok(Self {
            sample_rate,
            fft_size,
            hop_size,
            nb_erb,
            nb_df,
            min_nb_erb_freqs,
            df_order,
            df_lookahead,
            conv_lookahead,
            norm_alpha,
        })
    }

    pub fn freqs(&self) -> usize {
        self.fft_size / 2 + 1
    }
}

fn invalid(message: String) -> DeepFilterError {
    DeepFilterError::Config(message)
}

/// The exponential smoothing factor for a time constant `tau` seconds, rounded to the first
/// precision (3 decimals or more) that keeps it below 1, as the model was trained with.
fn norm_alpha(sample_rate: usize, hop_size: usize, tau: f32) -> f32 {
    let alpha = (-(hop_size as f32 / sample_rate as f32) / tau).exp();
    let mut precision = 3;
    loop {
        let scale = 10f32.powi(precision);
        let a = (alpha * scale).round() / scale;
        if a < 1.0 || precision > 9 {
            return a.min(0.999_999);
        }
        precision += 1;
    }
}

/// A minimal INI reader: `[section]` headers, `key = value` lines, `#`/`;` comments.
struct Ini {
    entries: Vec<(String, String, String)>,
}

impl Ini {
    fn parse(text: &str) -> Result<Self, DeepFilterError> {
        const MAX_LINES: usize = 10_000;
        let mut section = String::new();
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if n >= MAX_LINES {
                return Err(invalid(format!("more than {MAX_LINES} lines")));
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
            } else if let Some((k, v)) = line.split_once('=') {
                entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            } else {
                return Err(invalid(format!(
                    "line {}: {line:?} is not `key = value`",
                    n + 1
                )));
            }
        }
        Ok(Self { entries })
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// DeepFilterNet3's own values (the `[df]` section of its config.ini).
    pub(crate) const DFN3: &str = "[train]\nmodel = deepfilternet3\n[df]\nsr = 48000\nfft_size = 960\nhop_size = 480\nnb_erb = 32\nnb_df = 96\nnorm_tau = 1\nmin_nb_erb_freqs = 2\ndf_order = 5\ndf_lookahead = 2\n[deepfilternet]\nconv_lookahead = 2\n";
}

#[cfg(test)]
mod tests {
    use super::tests_support::DFN3;
    use super::*;

    #[test]
    fn reads_deepfilternet3() {
        let p = DfParams::parse(DFN3).unwrap();
        assert_eq!((p.sample_rate, p.fft_size, p.hop_size), (48_000, 960, 480));
        assert_eq!(
            (p.nb_erb, p.nb_df, p.df_order, p.df_lookahead),
            (32, 96, 5, 2)
        );
        assert_eq!(p.norm_alpha, 0.99);
    }

    #[test]
    fn refuses_what_the_signal_path_cannot_run() {
        for (bad, why) in [
            (DFN3.replace("deepfilternet3", "deepfilternet2"), "model"),
            (DFN3.replace("hop_size = 480", "hop_size = 400"), "hop"),
            (DFN3.replace("nb_df = 96", "nb_df = 9999"), "nb_df"),
            (DFN3.replace("nb_erb = 32", "nb_erb = x"), "number"),
            (DFN3.replace("sr = 48000\n", ""), "missing"),
            (
                DFN3.replace("conv_lookahead = 2", "conv_lookahead = 1"),
                "lookahead",
            ),
            ("not an ini at all".to_string(), "garbage"),
            (String::new(), "empty"),
        ] {
            assert!(DfParams::parse(&bad).is_err(), "{why}");
        }
    }
}
