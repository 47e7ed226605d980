//! `meeting-agent process DIR`: the meeting pipelines over recorded media.

use anyhow::{Context, Result};
use meeting_agent::config::Config;

/// Transcribes, logs, summarises and records the meeting in `dir`.
pub async fn process(
    config: &Config,
    store: meeting_agent::store::Store,
    dir: &std::path::Path,
    room: Option<String>,
) -> Result<()> {
    use meeting_agent::captions::export::{Format, export};
    use meeting_agent::features::meeting_log::{MeetingLog, MeetingLogOptions};
    let tracks = meeting_agent::offline::tracks(dir)?;
    let room = room.unwrap_or_else(|| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("offline")
            .to_string()
    });
    // The live path's recognizer, segmenter and noise suppression, as configured.
    let captioning = meeting_agent::features::captions::Captioning::from_config(config)?
        .context("`process` transcribes: captions are off (`captions.enabled = false`)")?;
    eprintln!("transcribing {} participants ...", tracks.len());
    let (segments, lengths) =
        meeting_agent::offline::transcribe(&tracks, &captioning, config.audio.noise_suppression)
            .await?;
    let length_ms = lengths.iter().map(|l| l.1).max().unwrap_or(0);
    let now = meeting_agent::captions::journal::unix_ms() as i64;
    let meeting = meeting_agent::store::Meeting::new(&room, now - length_ms);
    let (log, task) = MeetingLog::start(
        store.clone(),
        meeting.clone(),
        MeetingLogOptions::from_config(config),
    );
    for (identity, length) in &lengths {
        log.presence_at(identity, true, 0);
        log.presence_at(identity, false, *length);
    }
    for s in &segments {
        log.final_caption(s.clone());
    }
    drop(log);
    task.await.context("writing the meeting")?;
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    for (format, ext) in [
        (Format::WebVtt, "vtt"),
        (Format::Srt, "srt"),
        (Format::Json, "json"),
        (Format::Text, "txt"),
    ] {
        std::fs::write(
            out.join(format!("transcript.{ext}")),
            export(&segments, format),
        )?;
    }
    // The composite recording: every camera in the layout, every microphone mixed.
    let media = meeting_agent::offline::media(dir)?;
    let recording = out.join("recording.mp4");
    let settings =
        meeting_agent::recording::pipeline::PipelineSettings::from_config(&config.recording)?;
    settings.check()?;
    let layout = config.recording.layout;
    let target = recording.clone();
    let length = tokio::task::spawn_blocking(move || {
        meeting_agent::recording::offline::composite(&media, &settings, layout, &target)
    })
    .await??;
    let thread = store.thread(&meeting.id).await?;
    let summary = thread
        .iter()
        .rev()
        .find(|m| m.kind == "summary")
        .map(|m| m.text.clone())
        .unwrap_or_default();
    std::fs::write(out.join("summary.txt"), &summary)?;
    println!(
        "meeting {} ({} segments, {} messages in its thread)",
        meeting.id,
        segments.len(),
        thread.len()
    );
    println!(
        "transcript: {}/transcript.{{vtt,srt,json,txt}}",
        out.display()
    );
    println!(
        "recording: {} ({:.1} s)\n",
        recording.display(),
        length.as_secs_f64()
    );
    print!("{summary}");
    Ok(())
}
