//! Recording figures: CPU to record a 4-person grid live (against the same graph run by
//! gst-launch-1.0 in the same run), meeting end -> playable link in S3, and A/V drift over a
//! long file-fed recording.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;

use super::row;
use crate::process_stats::cpu_seconds;
use meeting_agent::livekit::engine::monotonic_us;
use meeting_agent::media::VideoFrame;
use meeting_agent::recording::inspect;
use meeting_agent::recording::layout::{Layout, Scene, arrange};
use meeting_agent::recording::pipeline::{CompositePipeline, PipelineSettings};

const INPUT_W: u32 = 640;
const INPUT_H: u32 = 360;
const FPS: u32 = 30;
/// The test source both sides encode: SMPTE bars scrolling sideways (moving content, so the
/// encoder does real work), with a different pattern per input.
fn source_caps() -> String {
    format!("video/x-raw,format=I420,width={INPUT_W},height={INPUT_H},framerate={FPS}/1")
}

/// `frames` frames of videotestsrc pattern `pattern`, decoded into memory.
fn test_frames(pattern: &str, frames: usize) -> Result<Vec<VideoFrame>> {
    meeting_agent::recording::pipeline::init()?;
    let description = format!(
        "videotestsrc pattern={pattern} horizontal-speed=4 num-buffers={frames} ! {} ! appsink name=out sync=false",
        source_caps()
    );
    let (pipeline, sink) = meeting_agent::recording::pipeline::launch_to_appsink(&description)?;
    let mut out = Vec::with_capacity(frames);
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().context("buffer")?;
        let map = buffer.map_readable()?;
        out.push(VideoFrame::from_i420(
            INPUT_W,
            INPUT_H,
            map[..VideoFrame::i420_len(INPUT_W, INPUT_H)].to_vec(),
            0,
        )?);
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(out)
}

const PATTERNS: [&str; 4] = ["smpte", "ball", "snow", "pinwheel"];

fn settings(live: bool) -> PipelineSettings {
    PipelineSettings {
        width: 1280,
        height: 720,
        fps: FPS,
        video_bitrate_kbps: 2500,
        audio_bitrate_kbps: 128,
        live,
        preset: "veryfast".into(),
        graphs: meeting_agent::recording::graphs::Graphs::builtin(),
    }
}

fn tone(i: usize, n: usize, freq: f32) -> Vec<i16> {
    (0..480)
        .map(|k| {
            let t = (n * 480 + k) as f32 / 48_000.0;
            ((t * freq * 2.0 * std::f32::consts::PI).sin() * 6000.0) as i16 + i as i16
        })
        .collect()
}

/// rec_cores_per_participant_audio: `count` per-participant audio recordings (the agent's
/// `participant-audio.gst`: a live silent base and one microphone into audiomixer, AAC,
/// fragmented MP4) running live at once, each fed a 10 ms tone frame every 10 ms as the
/// meeting's audio taps do, for `seconds`; the CPU cores used per recording.
pub fn participant_audio_cores(seconds: u64, count: usize) -> Result<()> {
    meeting_agent::recording::pipeline::init()?;
    let count = count.max(1);
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut pipelines = Vec::new();
    let mut mics = Vec::new();
    for i in 0..count {
        let counted = bytes.clone();
        let pipeline =
            CompositePipeline::start_participant_audio(&settings(true), move |b: &[u8]| {
                counted.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            })?;
        mics.push((i, pipeline.add_audio("mic")?));
        pipelines.push(pipeline);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    // One thread for all of them, as the engine's audio callbacks would hand frames over.
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0usize;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let now = monotonic_us();
            for (i, mic) in mics.iter_mut() {
                let _ = mic.push(&tone(*i, n, 200.0 + 50.0 * *i as f32), now);
            }
            n += 1;
            let due = start + Duration::from_millis(10 * n as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cores = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    for pipeline in pipelines {
        pipeline.finish(Duration::from_secs(20))?;
    }
    let written = bytes.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(written > 0, "the per-participant recordings wrote nothing");
    let command = format!(
        "meeting-agent-dev bench rec-participant-cores --seconds {seconds} --count {count}"
    );
    row(
        "rec_cores_per_participant_audio",
        cores / count as f64,
        &format!(
            "cores per recording ({count} at once: {cores:.3} cores; {:.0} kbit/s each)",
            written as f64 * 8.0 / 1000.0 / (seconds as f64 + 2.0) / count as f64
        ),
        "<= 0.05",
        &command,
    );
    Ok(())
}

/// rec_cores_720p_grid4: four 640x360@30 cameras and four microphones recorded live into a
/// 1280x720@30 grid for `seconds`; CPU cores used, and the same graph in gst-launch-1.0.
pub fn cores(seconds: u64) -> Result<()> {
    use meeting_agent::recording::spool::SpoolWriter;
    use meeting_agent::recording::storage::Storage;
    meeting_agent::recording::pipeline::init()?;
    // As the recorder runs it: the muxer's bytes into a spool, and live HLS cut from the
    // spool into segment files beside it (local storage: no network in the figure).
    let dir = std::env::temp_dir().join(format!("ma-bench-rec-cores-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = meeting_agent::recording::RecordingMeta::new("bench", 0, "grid", "local");
    let writer = SpoolWriter::create(&dir, &meta)?;
    let storage = Storage::Local {
        dir: dir.join("stored"),
    };
    let follower = writer.follow();
    let runtime = tokio::runtime::Handle::current();
    let live = runtime.spawn(async move {
        let settings = meeting_agent::recording::LiveHlsSettings {
            segment_secs: 2.0,
            window: 900,
        };
        storage.publish_live(follower, settings).await
    });
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = bytes.clone();
    let spool = std::sync::Arc::new(std::sync::Mutex::new(writer));
    let spooled = spool.clone();
    let pipeline = CompositePipeline::start(&settings(true), move |b: &[u8]| {
        counted.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = spooled.lock().unwrap().append(b) {
            tracing::error!(error = %e, "spool");
        }
    })?;
    let ids: Vec<String> = (0..4).map(|i| format!("cam{i}")).collect();
    let scene = Scene {
        cameras: ids.clone(),
        ..Default::default()
    };
    // Each camera is a live videotestsrc pulled into memory and pushed as the engine would
    // (so both sides of the comparison pay for the same sources).
    let mut sources = Vec::new();
    let mut feeders = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut input = pipeline.add_video(id)?;
        let mut mic = pipeline.add_audio(&format!("mic{i}"))?;
        let description = format!(
            "videotestsrc is-live=true pattern={} horizontal-speed=4 ! {} ! appsink name=out sync=false max-buffers=2 drop=true",
            PATTERNS[i],
            source_caps()
        );
        let (source, sink) = meeting_agent::recording::pipeline::launch_to_appsink(&description)?;
        sources.push(source);
        feeders.push(std::thread::spawn(move || {
            let mut n = 0usize;
            while let Ok(sample) = sink.pull_sample() {
                let Some(buffer) = sample.buffer() else { break };
                let Ok(map) = buffer.map_readable() else {
                    break;
                };
                let frame = VideoFrame::from_i420(
                    INPUT_W,
                    INPUT_H,
                    map[..VideoFrame::i420_len(INPUT_W, INPUT_H)].to_vec(),
                    0,
                );
                let now = monotonic_us();
                if let Ok(frame) = frame
                    && input.push(&frame, now).is_err()
                {
                    break;
                }
                let due = (n + 1) * 100 / FPS as usize;
                for k in n * 100 / FPS as usize..due {
                    let _ = mic.push(&tone(i, k, 200.0 + 100.0 * i as f32), now);
                }
                n += 1;
            }
        }));
    }
    for p in arrange(Layout::Grid, 1280, 720, &scene) {
        pipeline.place(&p.input, Some(p.rect), 0);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let ours = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    for source in &sources {
        source.set_state(gst::State::Null)?;
    }
    for f in feeders {
        let _ = f.join();
    }
    pipeline.finish(Duration::from_secs(20))?;
    let writer = std::sync::Arc::try_unwrap(spool)
        .map_err(|_| anyhow::anyhow!("the pipeline still holds the spool"))?
        .into_inner()
        .unwrap();
    writer.finish(&meta)?;
    let segments = runtime.block_on(live)??;
    let _ = std::fs::remove_dir_all(&dir);
    let reference = gst_launch_cores(seconds)?;
    let command = format!("meeting-agent-dev bench rec-cores --seconds {seconds}");
    row("rec_cores_720p_grid4", ours, "cores", "<= 1.0", &command);
    row(
        "rec_cores_720p_grid4_gst_launch",
        reference,
        "cores",
        "reference",
        &command,
    );
    row(
        "rec_cores_ratio_vs_gst_launch",
        ours / reference,
        "x",
        "~1",
        &command,
    );
    eprintln!(
        "{} MB written in {seconds} s, spooled and cut into {segments} live HLS segments",
        bytes.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000
    );
    Ok(())
}

/// The same graph as `gst-launch-1.0`: four live test sources into the compositor grid, four
/// tones into the mixer, x264 + AAC into MP4; its CPU cores over `seconds` after a warm-up.
fn gst_launch_cores(seconds: u64) -> Result<f64> {
    let pads: String = (0..4u32)
        .map(|i| {
            format!(
                " sink_{i}::xpos={} sink_{i}::ypos={}",
                (i % 2) * INPUT_W,
                (i / 2) * INPUT_H
            )
        })
        .collect();
    let mut d = format!(
        "compositor name=v background=black{pads} ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
         ! queue ! x264enc speed-preset=veryfast tune=zerolatency bitrate=2500 key-int-max=60 \
         ! video/x-h264,profile=high ! h264parse ! queue ! mux.video_0 \
         audiomixer name=a ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! queue ! audioconvert \
         ! avenc_aac bitrate=128000 ! queue ! mux.audio_0 \
         mp4mux name=mux fragment-duration=1000 streamable=true ! fakesink sync=false "
    );
    for (i, p) in PATTERNS.iter().enumerate() {
        d += &format!(
            "videotestsrc is-live=true pattern={p} horizontal-speed=4 ! {} ! queue ! v.sink_{i} \
             audiotestsrc is-live=true freq={} volume=0.2 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! queue ! a.sink_{i} ",
            source_caps(),
            200 + 100 * i
        );
    }
    let mut child = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(d.split_whitespace())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("gst-launch-1.0 (gstreamer1.0-tools)")?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let c0 = child_cpu_seconds(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let c1 = child_cpu_seconds(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Ok((c1 - c0) / wall)
}

/// utime + stime of a process, seconds.
fn child_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// rec_link_after_end_s: a `minutes`-long 4-person grid recording spooled and streamed to S3
/// (s3s-fs) while it is made (file-fed, faster than real time, so uploads have less time to
/// keep up than in a meeting); seconds from the end of the recording to a playable link.
pub async fn link_after_end(minutes: u64) -> Result<()> {
    use meeting_agent::recording::spool::SpoolWriter;
    use meeting_agent::recording::storage::Storage;
    let s3 = crate::LocalS3::start().await?;
    let dir = std::env::temp_dir().join(format!("ma-bench-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = meeting_agent::config::RecordingConfig {
        storage: meeting_agent::recording::StorageKind::S3,
        s3: s3.config("recordings"),
        ..Default::default()
    };
    config.dir = dir.clone();
    let storage = Storage::from_config(&config, &dir)?;
    storage.check().await?;
    let meta = meeting_agent::recording::RecordingMeta::new("bench", 0, "grid", "s3");
    let mut writer = SpoolWriter::create(&dir, &meta)?;
    let follower = writer.follow();
    let delivery = tokio::spawn(async move { storage.deliver(follower).await });
    let loops: Vec<Vec<VideoFrame>> = tokio::task::spawn_blocking(|| {
        PATTERNS
            .iter()
            .map(|p| test_frames(p, 60))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let (end, size) = tokio::task::spawn_blocking(move || -> Result<(Instant, u64)> {
        // `None` closes the spool: the pipeline (and its sink) outlive `finish`.
        let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let end = tx.clone();
        let pipeline = CompositePipeline::start(&settings(false), move |b: &[u8]| {
            let _ = tx.send(Some(b.to_vec()));
        })?;
        let spool = std::thread::spawn(move || -> Result<SpoolWriter> {
            while let Ok(Some(bytes)) = rx.recv() {
                writer.append(&bytes)?;
            }
            Ok(writer)
        });
        let ids: Vec<String> = (0..4).map(|i| format!("cam{i}")).collect();
        let mut videos: Vec<_> = ids
            .iter()
            .map(|id| pipeline.add_video(id))
            .collect::<Result<_, _>>()?;
        let mut mic = pipeline.add_audio("mic")?;
        let scene = Scene {
            cameras: ids.clone(),
            ..Default::default()
        };
        for p in arrange(Layout::Grid, 1280, 720, &scene) {
            pipeline.place(&p.input, Some(p.rect), 0);
        }
        let frames = minutes as usize * 60 * FPS as usize;
        let mut audio_us = 0i64;
        for n in 0..frames {
            let t_us = n as i64 * 1_000_000 / FPS as i64;
            for (v, l) in videos.iter_mut().zip(&loops) {
                v.push(&l[n % l.len()], t_us)?;
            }
            while audio_us <= t_us {
                mic.push(&tone(0, (audio_us / 10_000) as usize, 300.0), audio_us)?;
                audio_us += 10_000;
            }
        }
        pipeline.finish(Duration::from_secs(120))?;
        let _ = end.send(None);
        let writer = spool
            .join()
            .map_err(|_| anyhow::anyhow!("spool thread"))??;
        let size = writer.written();
        let mut meta = meta;
        meta.duration_ms = Some(minutes as i64 * 60_000);
        let end = Instant::now();
        writer.finish(&meta)?;
        Ok((end, size))
    })
    .await??;
    let delivered = delivery.await??;
    let seconds = end.elapsed().as_secs_f64();
    eprintln!(
        "{} MB recording, stored as {} ({:?})",
        size / 1_000_000,
        delivered.key,
        delivered.status
    );
    row(
        &format!("rec_link_after_end_s ({minutes}-minute meeting)"),
        seconds,
        "s",
        "<= 10",
        &format!("meeting-agent-dev bench rec-link --minutes {minutes}"),
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// rec_drift_ms: a `minutes`-long file-fed recording of a camera that flashes white and a
/// microphone that beeps at the same instants every second; the A/V offset over its last
/// minute, read back from the file.
pub fn drift(minutes: u64) -> Result<()> {
    let path = std::env::temp_dir().join(format!("ma-bench-drift-{}.mp4", std::process::id()));
    let file = std::sync::Mutex::new(std::fs::File::create(&path)?);
    let mut s = settings(false);
    (s.width, s.height) = (640, 360);
    let pipeline = CompositePipeline::start(&s, move |b: &[u8]| {
        use std::io::Write;
        let _ = file.lock().map(|mut f| f.write_all(b));
    })?;
    let mut cam = pipeline.add_video("cam")?;
    let mut mic = pipeline.add_audio("mic")?;
    pipeline.place(
        "cam",
        Some(meeting_agent::recording::layout::Rect {
            x: 0,
            y: 0,
            width: 640,
            height: 360,
        }),
        0,
    );
    let frame = |y: u8| {
        let mut data = vec![128u8; VideoFrame::i420_len(320, 180)];
        data[..320 * 180].fill(y);
        VideoFrame::from_i420(320, 180, data, 0)
    };
    let (white, black) = (frame(235)?, frame(16)?);
    let frames = minutes as usize * 60 * FPS as usize;
    let mut audio_us = 0i64;
    for n in 0..frames {
        let t_us = n as i64 * 1_000_000 / FPS as i64;
        let on = t_us % 1_000_000 < 100_000;
        cam.push(if on { &white } else { &black }, t_us)?;
        while audio_us <= t_us {
            let beep = audio_us % 1_000_000 < 100_000;
            let samples: Vec<i16> = (0..480)
                .map(|k| {
                    if beep {
                        let t = (audio_us as f32 / 1e6) + k as f32 / 48_000.0;
                        ((t * 1000.0 * 2.0 * std::f32::consts::PI).sin() * 12_000.0) as i16
                    } else {
                        0
                    }
                })
                .collect();
            mic.push(&samples, audio_us)?;
            audio_us += 10_000;
        }
    }
    pipeline.finish(Duration::from_secs(120))?;
    let decoded = inspect::decode(&path, &[])?;
    let _ = std::fs::remove_file(&path);
    let flashes = inspect::flash_onsets(&decoded.frames, 128.0);
    let beeps = inspect::beep_onsets(&decoded.audio, decoded.audio_start_us, 3000);
    let last_minute = (minutes as i64 * 60 - 60).max(0) * 1_000_000;
    let late: Vec<i64> = flashes.into_iter().filter(|&f| f >= last_minute).collect();
    let offsets = inspect::av_offsets_ms(&late, &beeps);
    anyhow::ensure!(
        !offsets.is_empty(),
        "no flash/beep pairs in the last minute"
    );
    let worst = offsets.iter().map(|o| o.abs()).fold(0.0, f64::max);
    eprintln!(
        "{} pairs in the last minute (audio minus video, ms: first {:.1}, last {:.1}), duration {:.3} s",
        offsets.len(),
        offsets[0],
        offsets[offsets.len() - 1],
        decoded.duration().as_secs_f64()
    );
    row(
        &format!("rec_drift_ms_{minutes}min"),
        worst,
        "ms",
        "<= 40",
        &format!("meeting-agent-dev bench rec-drift --minutes {minutes}"),
    );
    Ok(())
}

/// rec_av_offset_ms / rec_av_drift_ms_per_min, live: a participant (LiveKit's Python SDK)
/// flashes its camera white and beeps at the same instants every second for `seconds`, in a
/// room the agent records (captions on too, as in a meeting); with `load_room`, a second
/// room of four speaking, camera-on participants that the same agent captions and records
/// keeps the machine busy. The offsets are read back from the stored file.
pub async fn live_sync(seconds: u64, load_room: bool) -> Result<()> {
    use crate::PythonParticipant;
    use meeting_agent::worker::{Shutdown, Worker};
    let (server, config, data) = super::load::recording_agent_setup("sync").await?;
    let services = meeting_agent::services::Services::build(&config).await?;
    let recorder = services
        .recorder
        .clone()
        .context("recording did not start")?;
    let worker = Worker::new(config.clone(), std::sync::Arc::new(services.session()));
    let (shutdown, rx) = tokio::sync::watch::channel(Shutdown::Running);
    let task = tokio::spawn(worker.run(rx));
    let mut load = Vec::new();
    if load_room {
        let speech = crate::fixtures::dir()?.join("wer-set.wav");
        load = super::load::speaking_room(&server, "bench-load", &speech)?;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let cpu_before = meeting_agent::captions::threads::read_cpu_times();
    let mut flasher = PythonParticipant::spawn(
        &server,
        "bench-sync",
        "flasher",
        &crate::participant::FLASH_BEEP_ARGS,
    )?;
    flasher
        .wait_for(Duration::from_secs(60), |e| {
            e["event"] == "published" && e["kind"] == "video"
        })
        .await
        .context("the flasher never published its camera")?;
    // The publisher reports when it could not keep its microphone fed (then the sender, not
    // the recording, moved the beeps).
    let underruns = std::sync::atomic::AtomicUsize::new(0);
    flasher
        .wait_for(Duration::from_secs(seconds + 3), |e| {
            if e["event"] == "audio_underrun" {
                underruns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            false
        })
        .await;
    let busy = match (
        cpu_before,
        meeting_agent::captions::threads::read_cpu_times(),
    ) {
        (Some(a), Some(b)) => b.busy_since(&a),
        _ => f64::NAN,
    };
    flasher.stop().await;
    // The agent leaves the emptied room and stores its recording.
    let deadline = Instant::now() + Duration::from_secs(60);
    let meta = loop {
        let list = recorder.storage.list().await?;
        if let Some(m) = list.into_iter().find(|m| {
            m.room == "bench-sync"
                && m.status == meeting_agent::recording::meta::RecordingStatus::Complete
        }) {
            break m;
        }
        if Instant::now() > deadline {
            let found: Vec<_> = recorder
                .storage
                .list()
                .await?
                .into_iter()
                .map(|m| (m.room, m.status))
                .collect();
            anyhow::bail!("the recording was not stored within a minute; stored: {found:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for p in load {
        p.stop().await;
    }
    let _ = shutdown.send(Shutdown::Terminate);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    let link = recorder
        .storage
        .link(&meta, Duration::from_secs(600))
        .await?;
    let path = std::path::PathBuf::from(link.strip_prefix("file://").context("a local file")?);
    let decoded = tokio::task::spawn_blocking(move || inspect::decode(&path, &[])).await??;
    let _ = std::fs::remove_dir_all(&data);
    let sync = inspect::live_sync(&decoded).context("no flash/beep pairs after settling")?;
    anyhow::ensure!(sync.settled.len() >= 3, "too few flash/beep pairs");
    let (settled, median, worst) = (&sync.settled, sync.median, sync.worst);
    let drift = sync.drift_ms_per_min.unwrap_or(f64::NAN);
    eprintln!(
        "{} flash/beep pairs after settling: median {median:.1} ms, worst {worst:.1} ms, drift {drift:.2} ms/min; machine busy {:.0}% of both cores; sender underruns {}",
        settled.len(),
        busy * 100.0,
        underruns.into_inner()
    );
    let suffix = if load_room { "_loaded" } else { "" };
    let command = format!(
        "meeting-agent-dev bench rec-sync --seconds {seconds}{}",
        if load_room { " --load-room" } else { "" }
    );
    row(
        &format!("rec_av_offset_ms{suffix}"),
        median,
        "ms (median, audio minus video, live)",
        "<= 40",
        &command,
    );
    row(
        &format!("rec_av_offset_worst_ms{suffix}"),
        worst,
        "ms (largest after the first 5 s)",
        "<= 40",
        &command,
    );
    row(
        &format!("rec_av_drift_ms_per_min{suffix}"),
        drift,
        "ms/min (slope of the offsets)",
        "<= 10",
        &command,
    );
    Ok(())
}
