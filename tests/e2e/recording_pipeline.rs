//! The recording pipeline on its own, fed synthetic frames: file-fed (as fast as it goes)
//! and live (real time, inputs joining and leaving), read back through GStreamer's decoders.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meeting_agent::livekit::engine::monotonic_us;
use meeting_agent::media::VideoFrame;
use meeting_agent::recording::graphs::Graphs;
use meeting_agent::recording::hls;
use meeting_agent::recording::inspect::{self, DecodedRecording};
use meeting_agent::recording::layout::Rect;
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
        graphs: Graphs::builtin(),
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
/// One second of a file-fed recording with `settings`: the file's bytes.
fn one_second(name: &str, settings: &PipelineSettings) -> Vec<u8> {
    let (path, sink) = to_file(name);
    let pipeline = CompositePipeline::start(settings, sink).unwrap();
    let mut video = pipeline.add_video("cam").unwrap();
    let mut audio = pipeline.add_audio("mic").unwrap();
    pipeline.place(
        "cam",
        Some(Rect {
            x: 0,
            y: 0,
            width: 640,
            height: 360,
        }),
        0,
    );
    for n in 0..30i64 {
        video
            .push(&solid(320, 180, 100), n * 1_000_000 / 30)
            .unwrap();
    }
    for n in 0..100i64 {
        audio.push(&beep(480, false), n * 10_000).unwrap();
    }
    pipeline.finish(Duration::from_secs(60)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(path).ok();
    bytes
}

/// The recorder runs the graphs in pipelines/: the encoder an operator names (here through
/// a folder of description files, then through `recording.video_encoder`) is the one that
/// encodes, as x264's own settings record in the stream show; and a graph the recorder
/// cannot drive is refused at the check, before any recording.
#[test]
fn the_encoder_comes_from_the_pipelines_description() {
    let contains =
        |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let built_in = one_second("enc-default", &settings(false));
    assert!(
        contains(&built_in, "bitrate=1500"),
        "x264 at the configured bitrate"
    );

    let dir = std::env::temp_dir().join(format!("pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("video-encoder.gst"),
        "# an operator's encoder\nx264enc speed-preset=ultrafast bitrate=123 key-int-max={keyframe_frames}\n",
    )
    .unwrap();
    let mut config = meeting_agent::config::RecordingConfig {
        pipelines_dir: dir.clone(),
        ..Default::default()
    };
    let from_folder = PipelineSettings {
        live: false,
        ..PipelineSettings::from_config(&config).unwrap()
    };
    from_folder.check().unwrap();
    assert!(contains(
        &one_second("enc-folder", &from_folder),
        "bitrate=123"
    ));

    config.video_encoder = "x264enc speed-preset=ultrafast bitrate=321".into();
    let from_setting = PipelineSettings::from_config(&config).unwrap();
    from_setting.check().unwrap();
    let from_setting = PipelineSettings {
        live: false,
        ..from_setting
    };
    assert!(contains(
        &one_second("enc-setting", &from_setting),
        "bitrate=321"
    ));

    // A recording graph without the mixer the recorder feeds is refused at the check.
    std::fs::write(
        dir.join("recording.gst"),
        "audiomixer name=amix ! fakesink name=out",
    )
    .unwrap();
    let error = PipelineSettings::from_config(&config)
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("recording.gst: the recorder needs an element named vmix"),
        "{error}"
    );
    config.video_encoder = "no-such-encoder".into();
    std::fs::remove_file(dir.join("recording.gst")).unwrap();
    let error = PipelineSettings::from_config(&config)
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(error.contains("recording.video_encoder"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}

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
    assert!(decoded.audio.iter().any(|s| s.unsigned_abs() > 5000));
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
    assert!(decoded.audio.iter().any(|s| s.unsigned_abs() > 5000));
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

/// A camera picture: a bright box moving over a flat background, which turns dark between
/// `cut_from` and `cut_to` (frame numbers): each change is a scene cut, where the encoder
/// puts a keyframe and the muxer ends the running video fragment early.
fn scene(n: i64, cut_from: i64, cut_to: i64) -> VideoFrame {
    let background = if (cut_from..cut_to).contains(&n) {
        30
    } else {
        90
    };
    let mut frame = solid(320, 180, background);
    let x0 = (n as u32 * 4) % 280;
    for row in 60..100u32 {
        let at = (row * 320) as usize;
        frame.data[at + x0 as usize..at + x0 as usize + 40].fill(220);
    }
    frame
}

/// Serves the files of `dir` over HTTP with byte ranges, one request per connection, as a
/// bucket serves the recording and its playlist (hlsdemux2 fetches segments over HTTP only).
fn serve_dir(dir: std::path::PathBuf) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("range")
                    {
                        range = value.trim().strip_prefix("bytes=").map(str::to_string);
                    }
                }
                let mut words = request.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let name = path.trim_start_matches('/').split('?').next().unwrap_or("");
                let Ok(data) = std::fs::read(dir.join(name)) else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                let (status, first, last) = match range.as_deref().and_then(|r| r.split_once('-')) {
                    Some((a, b)) => {
                        let first: usize = a.parse().unwrap();
                        let last = b.parse().unwrap_or(data.len() - 1).min(data.len() - 1);
                        ("206 Partial Content", first, last)
                    }
                    None => ("200 OK", 0, data.len() - 1),
                };
                let kind = if name.ends_with(".m3u8") {
                    "application/vnd.apple.mpegurl"
                } else {
                    "video/mp4"
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                     Content-Range: bytes {first}-{last}/{}\r\nAccept-Ranges: bytes\r\n\
                     Connection: close\r\n\r\n",
                    last + 1 - first,
                    data.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if method != "HEAD" {
                    let _ = stream.write_all(&data[first..=last]);
                }
            });
        }
    });
    port
}

/// Presentation times (µs) of the video frames `playbin3` renders from `uri`, as fast as it
/// can (as the e2e test counts them).
fn frames_played_through(uri: &str) -> Vec<i64> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    meeting_agent::recording::pipeline::init().unwrap();
    assert!(
        gst::ElementFactory::find("hlsdemux2").is_some(),
        "GStreamer's hlsdemux2 (gst-plugins-good adaptivedemux2) is installed"
    );
    let played = Arc::new(Mutex::new(Vec::new()));
    let video = gstreamer_app::AppSink::builder().sync(false).build();
    let sink = played.clone();
    video.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(pts) = sample.buffer().and_then(|b| b.pts()) {
                    sink.lock().unwrap().push(pts.useconds() as i64);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let audio = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    let player = gst::ElementFactory::make("playbin3")
        .property("uri", uri)
        .property("video-sink", &video)
        .property("audio-sink", &audio)
        .build()
        .unwrap();
    player.set_state(gst::State::Playing).unwrap();
    let message = player
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("HLS playback ends within a minute");
    if let gst::MessageView::Error(e) = message.view() {
        panic!("HLS playback failed: {} ({:?})", e.error(), e.debug());
    }
    player.set_state(gst::State::Null).unwrap();
    std::mem::take(&mut *played.lock().unwrap())
}

/// Every frame of a recording plays through its HLS playlist (issue 13). The recording has
/// the muxer's live layout: audio and video fragments of about a second interleaved, a scene
/// cut that ends a video fragment early (the audio written after that short fragment starts
/// before it), and a last fragment cut short by the end. Played by playbin3/hlsdemux2 over
/// HTTP byte ranges: the count of frames and their first, last and every timestamp are the
/// file's.
#[test]
fn every_frame_of_the_recording_plays_through_its_hls_playlist() {
    let dir = std::env::temp_dir().join(format!("ma-hls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rec.mp4");
    let file = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
    let pipeline = CompositePipeline::start(&settings(false), move |bytes: &[u8]| {
        file.lock().unwrap().write_all(bytes).unwrap();
    })
    .unwrap();
    let mut camera = pipeline.add_video("cam").unwrap();
    let mut mic = pipeline.add_audio("mic").unwrap();
    for p in arrange(
        Layout::Grid,
        640,
        360,
        &Scene {
            cameras: vec!["cam".into()],
            ..Default::default()
        },
    ) {
        pipeline.place(&p.input, Some(p.rect), 0);
    }
    // 7.2 s at 30 fps; cuts at 2.5 s and 5.5 s, half-way through video fragments.
    let mut pushed_audio_us = 0i64;
    for n in 0..216i64 {
        let t_us = n * 1_000_000 / 30;
        camera.push(&scene(n, 75, 165), t_us).unwrap();
        while pushed_audio_us <= t_us {
            mic.push(&beep(480, true), pushed_audio_us).unwrap();
            pushed_audio_us += 10_000;
        }
    }
    pipeline.finish(Duration::from_secs(60)).unwrap();

    let len = std::fs::metadata(&path).unwrap().len();
    let index = hls::index_file(&path, len).unwrap();
    let playlist = hls::playlist(&index, hls::MEDIA_PLACEHOLDER);
    let segments = &index.segments;
    assert!(segments.len() >= 6, "{playlist}");
    assert!(
        segments[..segments.len() - 1]
            .iter()
            .any(|s| s.seconds < 0.9),
        "a scene cut ends a video fragment early: {playlist}"
    );
    std::fs::write(dir.join("rec.m3u8"), hls::with_media(&playlist, "rec.mp4")).unwrap();

    let in_file: Vec<i64> = inspect::decode(&path, &[])
        .unwrap()
        .frames
        .iter()
        .map(|f| f.0)
        .collect();
    assert!(in_file.len() >= 210, "{} frames in the file", in_file.len());
    let port = serve_dir(dir.clone());
    let played = frames_played_through(&format!("http://127.0.0.1:{port}/rec.m3u8"));
    let pct = played.len() as f64 / in_file.len() as f64 * 100.0;
    eprintln!(
        "hls_frames_reachable_pct = {pct:.2} ({} of {} frames)",
        played.len(),
        in_file.len()
    );
    let ms = |t: &i64| (t + 500).div_euclid(1000);
    let played_ms: std::collections::BTreeSet<i64> = played.iter().map(ms).collect();
    let missing: Vec<f64> = in_file
        .iter()
        .filter(|t| !(ms(t) - 1..=ms(t) + 1).any(|m| played_ms.contains(&m)))
        .map(|&t| t as f64 / 1e6)
        .collect();
    assert!(
        missing.is_empty(),
        "HLS playback rendered {} frames, the file has {}; missing at {missing:?} s\n{playlist}",
        played.len(),
        in_file.len()
    );
    assert_eq!(played.len(), in_file.len());
    assert_eq!(ms(&played[0]), ms(&in_file[0]), "first frame");
    assert_eq!(
        ms(played.last().unwrap()),
        ms(in_file.last().unwrap()),
        "last frame"
    );
    // Indexed while its last box is still being written (a spool cut short), the playlist
    // ends with the last whole fragment: no segment holds a `moof` without its samples.
    let bytes = std::fs::read(&path).unwrap();
    for cut in [len - 1, len - 2000] {
        let cut_index = hls::index_file(&path, cut).unwrap();
        let last = cut_index.segments.last().unwrap();
        let mut at = last.offset;
        let mut kinds = Vec::new();
        while at < last.offset + last.len {
            let size = u32::from_be_bytes(bytes[at as usize..][..4].try_into().unwrap());
            kinds.push(String::from_utf8_lossy(&bytes[at as usize + 4..][..4]).to_string());
            at += size as u64;
        }
        assert_eq!(at, last.offset + last.len, "boxes tile the segment");
        assert!(at <= cut);
        assert_eq!(kinds.last().map(String::as_str), Some("mdat"), "{kinds:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
