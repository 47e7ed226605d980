//! WAV files in and out, for fixtures, offline processing and benchmarks.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WavError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: hound::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: hound::Error },
    #[error("{path}: only 16-bit integer PCM is supported")]
    Format { path: String },
}

/// Interleaved 16-bit samples, rate, channels.
pub fn read_i16(path: &Path) -> Result<(Vec<i16>, u32, u32), WavError> {
    let p = path.display().to_string();
    let reader = hound::WavReader::open(path).map_err(|source| WavError::Read {
        path: p.clone(),
        source,
    })?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(WavError::Format { path: p });
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| WavError::Read { path: p, source })?;
    Ok((samples, spec.sample_rate, spec.channels as u32))
}

pub fn write_i16(path: &Path, samples: &[i16], rate: u32, channels: u32) -> Result<(), WavError> {
    let p = path.display().to_string();
    let spec = hound::WavSpec {
        channels: channels as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(|source| WavError::Write {
        path: p.clone(),
        source,
    })?;
    for &s in samples {
        writer.write_sample(s).map_err(|source| WavError::Write {
            path: p.clone(),
            source,
        })?;
    }
    writer
        .finalize()
        .map_err(|source| WavError::Write { path: p, source })
}
