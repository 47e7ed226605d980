//! The recording pipeline on its own, fed synthetic frames: file-fed (as fast as it goes)
//! and live (real time, inputs joining and leaving), read back through GStreamer's decoders.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meeting_agent::livekit::engine::monotonic_us;
use meeting_agent::media::VideoFrame;
use meeting_agent::recording::inspect::{self, DecodedRecording};
use meeting_agent::recording::layout::{Layout, Scene, arrange};
use meeting_agent::recording::pipeline::{CompositePipeline, PipelineSettings};

fn solid(width: u32, height: u32, y: u8) -> VideoFrame {
    let mut data = vec![128u8; VideoFrame::i420_len(width, height)];
    data[..(width * height) as usize].fill(y);
    VideoFrame::from_i420(width, height, data, 0).unwrap()
}

fn settings(live: bool) -> PipelineSettings {
    PipelineSettings {
        width: 640,
        height: 360,
        fps: 30,
        video_bitrate_kbps: 1500,
        audio_bitrate_kbps: 96,
        live,
        preset: "veryfast".into(),
    }
}

fn to_file(name: &str) -> (std::path::PathBuf, impl FnMut(&[u8]) + Send + 'static) {
    let path = std::env::temp_dir().join(format!("ma-rec-{}-{name}.mp4", std::process::id()));
    let file = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
    (path, move |bytes: &[u8]| {
        file.lock().unwrap().write_all(bytes).unwrap();
    })
}

fn mean_luma(frame: &VideoFrame, x: u32, y: u32, w: u32, h: u32) -> f32 {
    let mut sum = 0u64;
    for row in y..y + h {
        for col in x..x + w {
            sum += frame.data[(row * frame.width + col) as usize] as u64;
        }
    }
    sum as f32 / (w * h) as f32
}

fn beep(samples: usize, on: bool) -> Vec<i16> {
    (0..samples)
        .map(|k| {
            if on {
                ((k as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 48_000.0).sin() * 12_000.0)
                    as i16
            } else {
                0
            }
        })
        .collect()
}

/// Four inputs in a grid for 4 s, one of them flashing white with a beep every second.
#[test]
fn file_fed_grid_is_h264_high_420_with_aac_and_in_sync() {
    let (path, sink) = to_file("grid");
    let pipeline = CompositePipeline::start(&settings(false), sink).unwrap();
    let ids: Vec<String> = (0..4).map(|i| format!("cam{i}")).collect();
    let mut videos: Vec<_> = ids
        .iter()
        .map(|id| pipeline.add_video(id).unwrap())
        .collect();
    let mut audio = pipeline.add_audio("mic0").unwrap();
    let scene = Scene {
        cameras: ids.clone(),
        ..Default::default()
    };
    for p in arrange(Layout::Grid, 640, 360, &scene) {
        pipeline.place(&p.input, Some(p.rect), 0);
    }
    let lumas = [40u8, 90, 140, 190];
    let mut pushed_audio_us = 0i64;
    for n in 0..120i64 {
        let t_us = n * 1_000_000 / 30;
        let flash = t_us % 1_000_000 < 100_000;
        for (i, v) in videos.iter_mut().enumerate() {
            let y = if i == 3 && flash { 235 } else { lumas[i] };
            v.push(&solid(320, 180, y), t_us).unwrap();
        }
        while pushed_audio_us <= t_us {
            let on = pushed_audio_us % 1_000_000 < 100_000;
            audio.push(&beep(480, on), pushed_audio_us).unwrap();
            pushed_audio_us += 10_000;
        }
    }
    pipeline.finish(Duration::from_secs(60)).unwrap();

    let decoded = inspect::decode(&path, &[Duration::from_millis(500)]).unwrap();
    assert_eq!(
        DecodedRecording::caps_field(&decoded.video_caps, "profile").as_deref(),
        Some("high"),
        "{}",
        decoded.video_caps
    );
    assert_eq!(
        DecodedRecording::caps_field(&decoded.video_caps, "chroma-format").as_deref(),
        Some("4:2:0")
    );
    assert!(
        decoded.audio_caps.contains("mpegversion=(int)4"),
        "{}",
        decoded.audio_caps
    );
    let d = decoded.duration().as_secs_f64();
    assert!((d - 4.0).abs() < 0.2, "duration {d}");
    let (_, frame) = &decoded.kept[0];
    for (i, expect) in lumas.iter().enumerate() {
        let (x, y) = ((i as u32 % 2) * 320, (i as u32 / 2) * 180);
        let got = mean_luma(frame, x + 40, y + 40, 240, 100);
        assert!(
            (got - *expect as f32).abs() < 8.0,
            "tile {i}: {got} vs {expect}"
        );
    }
    // Flash brightness of one quadrant moves the whole frame's mean by ~ (235-190)/4.
    let frames: Vec<(i64, f32)> = decoded.frames.clone();
    let flashes = inspect::flash_onsets(&frames, 122.0);
    let beeps = inspect::beep_onsets(&decoded.audio, decoded.audio_start_us, 3000);
    let offsets = inspect::av_offsets_ms(&flashes, &beeps);
    assert!(offsets.len() >= 3, "flashes {flashes:?} beeps {beeps:?}");
    assert!(offsets.iter().all(|o| o.abs() <= 40.0), "{offsets:?}");
    let _ = std::fs::remove_file(path);
}

/// Live: inputs join late and leave early, sizes change, nobody sends for a while; the
/// file still plays through with the wall-clock duration.
#[test]
fn live_inputs_come_and_go_and_the_file_plays_through() {
    let (path, sink) = to_file("live");
    let started = std::time::Instant::now();
    let pipeline = CompositePipeline::start(&settings(true), sink).unwrap();
    let mut a = pipeline.add_video("a").unwrap();
    let mut mic = pipeline.add_audio("mic").unwrap();
    pipeline.place(
        "a",
        Some(meeting_agent::recording::layout::Rect {
            x: 0,
            y: 0,
            width: 320,
            height: 360,
        }),
        0,
    );
    let mut b = None;
    for n in 0..90u32 {
        let now = monotonic_us();
        let size = if n < 45 { (320, 240) } else { (640, 360) };
        a.push(&solid(size.0, size.1, 200), now).unwrap();
        for _ in 0..3 {
            mic.push(&beep(480, true), monotonic_us()).unwrap();
        }
        if n == 30 {
            let mut input = pipeline.add_video("b").unwrap();
            pipeline.place(
                "b",
                Some(meeting_agent::recording::layout::Rect {
                    x: 320,
                    y: 0,
                    width: 320,
                    height: 360,
                }),
                0,
            );
            input.push(&solid(320, 180, 60), now).unwrap();
            b = Some(input);
        }
        if let Some(input) = b.as_mut()
            && n < 60
        {
            input.push(&solid(320, 180, 60), now).unwrap();
        }
        if n == 60 {
            b = None;
            pipeline.remove("b");
        }
        std::thread::sleep(Duration::from_millis(33));
    }
    // A second of nothing at all: the base keeps the recording going.
    std::thread::sleep(Duration::from_secs(1));
    let wall = started.elapsed().as_secs_f64();
    pipeline.finish(Duration::from_secs(30)).unwrap();
    let decoded = inspect::decode(&path, &[Duration::from_millis(1500)]).unwrap();
    let d = decoded.duration().as_secs_f64();
    assert!((d - wall).abs() < 0.5, "duration {d} vs wall {wall}");
    let (_, frame) = &decoded.kept[0];
    // a (4:3) letterboxed in the left half, b (16:9) in the right.
    assert!(mean_luma(frame, 40, 120, 200, 120) > 190.0);
    assert!((mean_luma(frame, 360, 120, 200, 100) - 60.0).abs() < 10.0);
    assert!(decoded.audio.iter().any(|s| s.abs() > 5000));
    let _ = std::fs::remove_file(path);
}

/// Live, and nobody ever sends a picture (an audio-only meeting): the black base carries the
/// video track, and the file plays through with the voice and the wall-clock duration.
#[test]
fn live_with_microphones_only_plays_with_a_black_picture() {
    let (path, sink) = to_file("live-audio-only");
    let started = std::time::Instant::now();
    let pipeline = CompositePipeline::start(&settings(true), sink).unwrap();
    let mut mics = [
        pipeline.add_audio("mic-a").unwrap(),
        pipeline.add_audio("mic-b").unwrap(),
    ];
    for n in 0..300u32 {
        for (i, mic) in mics.iter_mut().enumerate() {
            mic.push(&beep(480, (n / 50) % 2 == i as u32), monotonic_us())
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed().as_secs_f64();
    let done = std::time::Instant::now();
    pipeline.finish(Duration::from_secs(30)).unwrap();
    assert!(done.elapsed() < Duration::from_secs(10), "ends promptly");
    let decoded = inspect::decode(&path, &[Duration::from_secs(1)]).unwrap();
    let d = decoded.duration().as_secs_f64();
    assert!((d - wall).abs() < 0.6, "duration {d} vs wall {wall}");
    let audio_s = decoded.audio.len() as f64 / 48_000.0;
    assert!(audio_s > wall - 0.6, "audio {audio_s} s of {wall} s");
    assert!(decoded.audio.iter().any(|s| s.abs() > 5000));
    assert!(
        decoded.frames.len() as f64 > wall * 20.0,
        "{} frames",
        decoded.frames.len()
    );
    assert!(decoded.frames.iter().all(|&(_, luma)| luma < 24.0), "black");
    let _ = std::fs::remove_file(path);
}

/// File-fed with a microphone and no video input at all: the muxer waits for a video stream
/// that never comes. The push fails with a clear error within the stall timeout, and so does
/// the end, instead of hanging.
#[test]
fn a_file_fed_recording_that_cannot_progress_fails_instead_of_hanging() {
    let (path, sink) = to_file("stuck");
    let pipeline = CompositePipeline::start(&settings(false), sink).unwrap();
    pipeline.set_stall_timeout(Duration::from_secs(2));
    let mut mic = pipeline.add_audio("mic").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut result = Ok(());
        for n in 0..3000i64 {
            if let Err(e) = mic.push(&beep(480, true), n * 10_000) {
                result = Err(e.to_string());
                break;
            }
        }
        let _ = tx.send(result);
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the push returned instead of hanging");
    let error = result.expect_err("30 s of audio cannot go through without video");
    assert!(error.contains("stuck") && error.contains("mic"), "{error}");
    let started = std::time::Instant::now();
    let end = pipeline.finish(Duration::from_secs(3));
    assert!(end.is_err(), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = std::fs::remove_file(path);
}
