//! agent_cores_per_room4_all and rooms_per_2core_agent_only: rooms of four camera-on
//! participants taking turns to speak (`--all-talk`: all at once, the worst case), one with a
//! blurred background, added one at a time to one worker
//! with every feature on (captions, noise suppression, virtual background, recording). The
//! agent is this process, so its CPU time is the agent's alone: the publishers (Python
//! processes) and livekit-server are other processes, kept out of the figure and shown beside
//! it as what the rest of the machine used. Each step also says how captions fared (final
//! delay after the endpoint, refused finals) and how many background frames were skipped: what
//! degrades first as the machine fills.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{recording_agent_setup, speaking_room_with_backgrounds};
use super::row;
use crate::process_stats::{cpu_seconds, cpu_seconds_of};
use meeting_agent::captions::speaker::FINAL_DELAY;
use meeting_agent::features::backgrounds::camera::VB_FRAMES_SKIPPED;
use meeting_agent::worker::Shutdown;

/// The caption target the capacity is judged by (BENCHMARKS.md caption_final_p95_s: 1.2 s
/// from the end of speech; the endpoint's own silence is part of that).
const FINAL_DELAY_TARGET_S: f64 = 1.2;
/// Share of the cores a deployment plans to fill (headroom for bursts and the OS).
const PLANNED_SHARE: f64 = 0.85;

/// Busy and total jiffies of the whole machine (/proc/stat).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The room's four voices taking turns, as a meeting goes: participant `p` of four speaks the
/// clip in the `p`-th quarter of each cycle and is silent otherwise (files in `dir`, looped by
/// the publisher).
fn turn_taking_wavs(
    speech: &std::path::Path,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>> {
    let (clip, rate, channels) = meeting_agent::audio::wav::read_i16(speech)?;
    anyhow::ensure!(channels == 1, "a mono clip");
    std::fs::create_dir_all(dir)?;
    (0..4)
        .map(|p| {
            let mut samples = vec![0i16; clip.len() * 4];
            samples[p * clip.len()..(p + 1) * clip.len()].copy_from_slice(&clip);
            let path = dir.join(format!("turn-{p}.wav"));
            meeting_agent::audio::wav::write_i16(&path, &samples, rate, 1)?;
            Ok(path)
        })
        .collect()
}

/// A room of four taking turns to speak (cameras on, the first with a blurred background).
fn turn_taking_room(
    server: &crate::LocalLiveKitServer,
    room: &str,
    wavs: &[std::path::PathBuf],
) -> Result<Vec<crate::PythonParticipant>> {
    wavs.iter()
        .enumerate()
        .map(|(p, wav)| {
            let mut args = vec![
                "--wav",
                wav.to_str().unwrap_or_default(),
                "--video",
                "320x180",
                "--fps",
                "15",
            ];
            if p == 0 {
                args.extend(["--attributes", "vb.mode=blur"]);
            }
            crate::PythonParticipant::spawn(server, room, &format!("{room}-p{p}"), &args)
                .map_err(Into::into)
        })
        .collect()
}

/// CPU seconds of this process's threads by name (whisper, GStreamer, tokio, ...), from
/// /proc/self/task: where the agent's time goes.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        // Numbered pool threads count as one kind ("tokio-runtime-w", "gst-..." etc.).
        let kind = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == ':')
            .to_string();
        *out.entry(kind).or_insert(0.0) += cpu_seconds_of(&path.join("stat"));
    }
    out
}

/// The thread kinds that used the most of `wall` seconds between two samples, as cores.
fn top_threads(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    wall: f64,
) -> String {
    let mut used: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.get(k).copied().unwrap_or(0.0)) / wall,
            )
        })
        .filter(|(_, cores)| *cores >= 0.02)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used.iter()
        .take(8)
        .map(|(k, c)| format!("{k} {c:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Step {
    rooms: usize,
    agent_cores: f64,
    machine_cores: f64,
    finals: u64,
    mean_final_delay_s: f64,
    refused: u64,
    vb_skipped_per_s: f64,
}

/// `all_talk`: all four speak at once, all the time (the load test's room, the worst case);
/// otherwise they take turns.
pub async fn capacity(
    max_rooms: usize,
    warmup_secs: u64,
    measure_secs: u64,
    all_talk: bool,
) -> Result<()> {
    let (server, mut config, data) = recording_agent_setup("capacity").await?;
    config.agent.load_threshold = 1.0; // the bench decides how many rooms, not the load
    config.validate()?;
    let services = meeting_agent::services::Services::build(&config).await?;
    let stats = services
        .captioning
        .as_ref()
        .context("captions (whisper model)")?
        .recognizer
        .stats
        .clone();
    anyhow::ensure!(
        services.backgrounds.is_some(),
        "virtual backgrounds (ONNX Runtime and the segmentation model)"
    );
    let worker = services.worker();
    let (shutdown, rx) = tokio::sync::watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(rx));
    let speech = crate::fixtures::dir()?.join("wer-set.wav");
    let wavs = turn_taking_wavs(&speech, &data.join("voices"))?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let mut participants = Vec::new();
    let mut steps = Vec::new();
    for n in 1..=max_rooms {
        let room = format!("capacity-{n}");
        participants.extend(if all_talk {
            speaking_room_with_backgrounds(&server, &room, &speech, 1)?
        } else {
            turn_taking_room(&server, &room, &wavs)?
        });
        tokio::time::sleep(Duration::from_secs(warmup_secs)).await;
        let (cpu0, (busy0, total0), at0) = (cpu_seconds(), machine_jiffies(), Instant::now());
        let threads0 = cpu_by_thread();
        let (finals0, delay0) = (FINAL_DELAY.get_sample_count(), FINAL_DELAY.get_sample_sum());
        let refused0 = stats.finals_refused.load(Ordering::Relaxed);
        let skipped0 = VB_FRAMES_SKIPPED.get();
        tokio::time::sleep(Duration::from_secs(measure_secs)).await;
        let wall = at0.elapsed().as_secs_f64();
        let (busy1, total1) = machine_jiffies();
        let finals = FINAL_DELAY.get_sample_count() - finals0;
        let step = Step {
            rooms: n,
            agent_cores: (cpu_seconds() - cpu0) / wall,
            machine_cores: cores * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
            finals,
            mean_final_delay_s: (FINAL_DELAY.get_sample_sum() - delay0) / finals.max(1) as f64,
            refused: stats.finals_refused.load(Ordering::Relaxed) - refused0,
            vb_skipped_per_s: (VB_FRAMES_SKIPPED.get() - skipped0) as f64 / wall,
        };
        eprintln!(
            "{} room(s) of 4: agent {:.2} cores ({:.2} per room), whole machine {:.2} of {cores} cores (publishers and server {:.2}); {} finals, mean delay after the endpoint {:.2} s, {} refused; background frames skipped {:.1}/s",
            step.rooms,
            step.agent_cores,
            step.agent_cores / n as f64,
            step.machine_cores,
            step.machine_cores - step.agent_cores,
            step.finals,
            step.mean_final_delay_s,
            step.refused,
            step.vb_skipped_per_s
        );
        eprintln!(
            "  agent threads (cores): {}",
            top_threads(&threads0, &cpu_by_thread(), wall)
        );
        steps.push(step);
    }
    for p in participants {
        p.stop().await;
    }
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    let _ = std::fs::remove_dir_all(data);

    let command = format!(
        "meeting-agent-dev bench capacity --max-rooms {max_rooms} --warmup {warmup_secs} --measure {measure_secs}{}",
        if all_talk { " --all-talk" } else { "" }
    );
    let suffix = if all_talk {
        " (all four talking at once)"
    } else {
        ""
    };
    // The per-room cost where the most rooms ran with captions keeping up (fixed costs spread
    // the widest; on a saturated machine the agent only gets what is left, which says nothing
    // of what it needs).
    let within: Vec<&Step> = steps
        .iter()
        .filter(|s| s.finals > 0 && s.refused == 0 && s.mean_final_delay_s <= FINAL_DELAY_TARGET_S)
        .collect();
    let measured = within.last().map_or(0, |s| s.rooms);
    let basis = within
        .last()
        .copied()
        .or(steps.first())
        .context("no step ran")?;
    let per_room = basis.agent_cores / basis.rooms as f64;
    let last = basis;
    row(
        &format!("agent_cores_per_room4_all{suffix}"),
        per_room,
        &format!(
            "cores of the agent process per room of four (captions, noise suppression, 1 blurred background, recording; {} rooms; publishers and server excluded, they used {:.2} cores more)",
            last.rooms,
            last.machine_cores - last.agent_cores
        ),
        "<= 0.6",
        &command,
    );
    let planned = (cores * PLANNED_SHARE / per_room).floor();
    row(
        &format!("rooms_per_2core_agent_only{suffix}"),
        planned,
        &format!(
            "rooms of four on {cores} cores for the agent alone ({PLANNED_SHARE} of the cores / cores per room); measured with the publishers on the same cores: {measured} of {} rooms with captions within target",
            steps.len()
        ),
        ">= 3",
        &command,
    );
    Ok(())
}
