//! `meeting-agent process DIR`: the meeting pipelines over recorded media instead of a room. Each
//! `<identity>.wav` in DIR (16-bit PCM, any rate and channel count) is one participant's
//! microphone; it goes through the same denoiser, segmenter and recognizer as a live
//! microphone, and the meeting is written to the messaging store (thread, transcript, summary)
//! as a live one is. `<identity>.mp4` (or mkv, webm, mov, ivf) files are that participant's
//! camera: with the microphones they make the meeting's composite recording.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::audio::Denoiser;
use crate::audio::wav::read_i16;
use crate::captions::Recognizer;
use crate::captions::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use crate::media::AudioFrame;
use crate::store::Segment;

/// One participant's recording.
pub struct Track {
    pub identity: String,
    pub path: PathBuf,
}

/// The `<identity>.wav` files of `dir`, by name.
pub fn tracks(dir: &Path) -> Result<Vec<Track>> {
    let mut tracks: Vec<Track> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .filter_map(|path| {
            let identity = path.file_stem()?.to_str()?.to_string();
            Some(Track { identity, path })
        })
        .collect();
    tracks.sort_by(|a, b| a.identity.cmp(&b.identity));
    anyhow::ensure!(
        !tracks.is_empty(),
        "no <identity>.wav files in {}",
        dir.display()
    );
    Ok(tracks)
}

/// Camera files `process` composites: `<identity>.<ext>` with one of these extensions.
pub const VIDEO_EXTENSIONS: [&str; 5] = ["mp4", "mkv", "webm", "mov", "ivf"];

/// Every participant's files in `dir`: `<identity>.wav` (microphone) and
/// `<identity>.mp4|mkv|webm|mov|ivf` (camera), by identity.
pub fn media(dir: &Path) -> Result<Vec<crate::recording::offline::ParticipantMedia>> {
    use crate::recording::offline::ParticipantMedia;
    let mut out: Vec<ParticipantMedia> = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let ext = ext.to_ascii_lowercase();
        let audio = ext == "wav";
        if !audio && !VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let entry = match out.iter_mut().position(|m| m.identity == stem) {
            Some(i) => &mut out[i],
            None => {
                out.push(ParticipantMedia {
                    identity: stem.to_string(),
                    audio: None,
                    video: None,
                });
                out.last_mut().expect("just pushed")
            }
        };
        if audio {
            entry.audio = Some(path);
        } else {
            entry.video = Some(path);
        }
    }
    Ok(out)
}

/// An utterance: 16 kHz audio, start and end (ms into the track), mean voice probability.
pub type Utterance = (Vec<f32>, u64, u64, f32);

/// The track's utterances as the live pipeline cuts them (denoised when `denoise`, as
/// `audio.noise_suppression` says for live microphones), and its length in ms.
pub fn utterances(
    track: &Track,
    denoise: bool,
    segmenter: &SegmenterConfig,
) -> Result<(Vec<Utterance>, i64)> {
    let (samples, rate, channels) = read_i16(&track.path)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot read {}", track.path.display()))?;
    let out = utterances_of(&samples, rate, channels, denoise, segmenter)
        .with_context(|| format!("{}: unsupported audio", track.path.display()))?;
    let length_ms = (samples.len() / channels.max(1) as usize) as i64 * 1000 / rate.max(1) as i64;
    Ok((out, length_ms))
}

/// Interleaved PCM cut into utterances as the live pipeline cuts a microphone.
pub fn utterances_of(
    samples: &[i16],
    rate: u32,
    channels: u32,
    denoise: bool,
    segmenter: &SegmenterConfig,
) -> Result<Vec<Utterance>> {
    // RNNoise always runs: its voice probability cuts the utterances, as on the live path;
    // `denoise` only says whether whisper hears its output or the microphone as it came.
    let mut denoiser = Denoiser::new(true);
    // Finals only: nobody reads interims of a file.
    let mut segmenter = Segmenter::new(SegmenterConfig {
        interim_every_ms: u32::MAX,
        ..segmenter.clone()
    });
    let mut out = Vec::new();
    let step = (rate as usize / 100).max(1) * channels.max(1) as usize;
    for chunk in samples.chunks(step) {
        let frame = AudioFrame {
            samples: chunk.to_vec(),
            sample_rate: rate,
            channels,
            timestamp_us: 0,
        };
        denoiser.process_with_input(&frame, |raw, clean, p| {
            let heard = if denoise { clean } else { raw };
            if let Some(SegmentEvent::Final {
                audio,
                start_ms,
                end_ms,
                mean_voice_probability,
            }) = segmenter.push(heard, p)
            {
                out.push((audio, start_ms, end_ms, mean_voice_probability));
            }
        })?;
    }
    if let Some(SegmentEvent::Final {
        audio,
        start_ms,
        end_ms,
        mean_voice_probability,
    }) = segmenter.finish()
    {
        out.push((audio, start_ms, end_ms, mean_voice_probability));
    }
    Ok(out)
}

/// Transcribes every track with the live path's recognizer and segmenter settings (and its
/// noise suppression when `denoise`); segments in spoken order, and each participant's length.
pub async fn transcribe(
    tracks: &[Track],
    captioning: &crate::features::captions::Captioning,
    denoise: bool,
) -> Result<(Vec<Segment>, Vec<(String, i64)>)> {
    let recognizer: &Recognizer = &captioning.recognizer;
    let mut segments = Vec::new();
    let mut lengths = Vec::new();
    for track in tracks {
        let (pieces, length_ms) = utterances(track, denoise, &captioning.segmenter)?;
        lengths.push((track.identity.clone(), length_ms));
        for (i, (audio, start_ms, end_ms, voice)) in pieces.into_iter().enumerate() {
            let seconds = (end_ms - start_ms) as f32 / 1000.0;
            let hypothesis = recognizer
                .final_(audio)
                .await
                .context("recognizer stopped")?
                .map_err(|e| anyhow::anyhow!(e))?;
            // The same filter as live finals: no text for noise and hallucinations.
            let Ok(text) = crate::captions::filter::accept(&hypothesis, voice, seconds) else {
                continue;
            };
            segments.push(Segment {
                key: format!("SG_{}_{i}", track.identity),
                speaker: track.identity.clone(),
                text,
                start_ms: start_ms as i64,
                end_ms: end_ms as i64,
            });
        }
    }
    segments.sort_by_key(|s| (s.start_ms, s.speaker.clone()));
    Ok((segments, lengths))
}
