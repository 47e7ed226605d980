//! The binary's behaviour on bad input: clear errors, right exit codes, retries that are logged.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meeting_agent_devtools::LocalLiveKitServer;

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meeting-agent"));
    for var in [
        "LIVEKIT_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "MEETING_AGENT_CONFIG",
        "MEETING_AGENT_NAME",
        "MEETING_AGENT_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    // Captions are tested elsewhere; here the worker must not need the whisper model.
    cmd.env("MEETING_AGENT_CAPTIONS", "false");
    cmd.stdin(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_secret_fails_fast_with_a_clear_error() {
    let server = LocalLiveKitServer::start().await.unwrap();
    let started = Instant::now();
    let out = agent()
        .arg("worker")
        .env("LIVEKIT_URL", server.ws_url())
        .env("LIVEKIT_API_KEY", &server.api_key)
        .env(
            "LIVEKIT_API_SECRET",
            "not-the-secret-not-the-secret-not-the-secret",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must exit non-zero");
    assert!(
        stderr.contains("rejected the worker's credentials")
            && stderr.contains("LIVEKIT_API_SECRET"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no retry loop on bad credentials"
    );
}

#[test]
fn an_unreachable_server_is_retried_with_growing_backoff() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed once dropped
    let mut child = agent()
        .arg("worker")
        .env("LIVEKIT_URL", format!("ws://127.0.0.1:{port}"))
        .env("LIVEKIT_API_KEY", "devkey")
        .env(
            "LIVEKIT_API_SECRET",
            "a-secret-that-is-long-enough-for-livekit",
        )
        .env("MEETING_AGENT_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker keeps retrying"
    );
    // SIGTERM: a worker with no jobs drains at once and exits cleanly.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "clean exit after SIGTERM: {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retries: Vec<u64> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("unreachable"))
        })
        .map(|v| v["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert!(
        retries.len() >= 3,
        "at least three logged retries in 4 s: {stderr}"
    );
    assert!(retries[2] > retries[0], "backoff grows: {retries:?}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the log names the address"
    );
}

#[test]
fn a_malformed_config_file_names_the_field() {
    let dir = std::env::temp_dir().join(format!("ma-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, "[livekit]\nurl = \"ws://127.0.0.1:7880\"\napi_key = \"k\"\napi_secret = \"s\"\n[agent]\nload_threshold = \"very high\"\n").unwrap();
    let out = agent()
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("load_threshold") && stderr.contains("agent.toml"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[livekit]\nurl = \"ws://127.0.0.1:7880\"\napi_key = \"k\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("livekit.api_secret"));

    // A section a feature owns is checked by the feature, at the same place.
    std::fs::write(
        &path,
        "[livekit]\nurl = \"ws://127.0.0.1:7880\"\napi_key = \"k\"\napi_secret = \"s\"\n[captions]\nlanguage = \"klingon\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("captions.language"), "{stderr}");

    std::fs::write(
        &path,
        "[livekit]\nurl = \"ws://127.0.0.1:7880\"\napi_key = \"k\"\napi_secret = \"s\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("api_key = k") && !stdout.contains("api_secret"),
        "secrets are never printed: {stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_engine_library_says_how_to_install_it() {
    let out = agent()
        .args(["join", "--room", "x"])
        .env("LIVEKIT_URL", "ws://127.0.0.1:9")
        .env("LIVEKIT_API_KEY", "k")
        .env("LIVEKIT_API_SECRET", "s")
        .env("LIVEKIT_LIB_PATH", "/nonexistent/liblivekit_ffi.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/liblivekit_ffi.so") && stderr.contains("scripts/setup.sh"),
        "{stderr}"
    );
}

#[test]
fn a_missing_whisper_model_names_the_command_that_fetches_it() {
    let out = agent()
        .args(["join", "--room", "x"])
        .env("LIVEKIT_URL", "ws://127.0.0.1:9")
        .env("LIVEKIT_API_KEY", "k")
        .env("LIVEKIT_API_SECRET", "s")
        .env("MEETING_AGENT_CAPTIONS", "true")
        .env(
            "MEETING_AGENT_WHISPER_MODEL",
            "/nonexistent/ggml-tiny.en.bin",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/ggml-tiny.en.bin") && stderr.contains("fetch_models.sh"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_meetings_and_export_read_the_store() {
    use meeting_agent::store::{Meeting, Segment, Store};
    let dir = std::env::temp_dir().join(format!("ma-cli-store-{}", std::process::id()));
    let url = format!("sqlite:{}", dir.join("store.db").display());
    let store = Store::connect(&url).await.unwrap();
    let meeting = Meeting::new("weekly", 1_795_564_800_000);
    let root = meeting.root_message("meeting-agent", "Meeting in weekly started".into());
    store.open_meeting(&meeting, &root).await.unwrap();
    let said = |key: &str, speaker: &str, text: &str, start_ms: i64| Segment {
        key: key.into(),
        speaker: speaker.into(),
        text: text.into(),
        start_ms,
        end_ms: start_ms + 2_000,
    };
    store
        .add_segments(
            &meeting,
            &[
                said("a", "sam", "The quarterly report is ready.", 1_000),
                said("b", "ann", "Send the budget by Friday.", 65_000),
            ],
        )
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let out = agent()
            .args(args)
            .env("MEETING_AGENT_DATABASE_URL", &url)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = run(&["search", "budget"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "{} transcript ann 1:05: Send the [budget] by Friday.",
            meeting.id
        )
    );
    let (ok, stdout, _) = run(&["search", "budget", "--speaker", "sam"]);
    assert!(ok && stdout.is_empty());
    let (ok, stdout, _) = run(&["search", "budget", "--since", "2026-11-26"]);
    assert!(ok && stdout.is_empty(), "the meeting was on 2026-11-25");
    let (ok, _, stderr) = run(&["search", "budget", "--since", "last week"]);
    assert!(!ok && stderr.contains("YYYY-MM-DD"), "{stderr}");
    let (ok, stdout, _) = run(&["meetings"]);
    assert!(
        ok && stdout.starts_with(&format!("{}\tweekly\trunning", meeting.id)),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["export", &meeting.id, "--format", "srt"]);
    assert!(ok);
    assert!(
        stdout
            .starts_with("1\n00:00:01,000 --> 00:00:03,000\nsam: The quarterly report is ready.\n"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(&["export", "no-such-meeting"]);
    assert!(!ok && stderr.contains("no transcript stored"), "{stderr}");
    let (ok, _, stderr) = run(&["export", &meeting.id, "--format", "docx"]);
    assert!(!ok && stderr.contains("vtt, srt, json or txt"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

/// A fresh `<tmp>/<tag>-<pid>/<meeting>` folder for `process`, and a SQLite store beside it.
fn process_dir(tag: &str, meeting: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir()
        .join(format!("{tag}-{}", std::process::id()))
        .join(meeting);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!(
        "sqlite:{}",
        dir.parent().unwrap().join("store.db").display()
    );
    (dir, url)
}

/// `process DIR`: per-participant recordings through the same pipelines as a meeting.
#[test]
fn process_runs_the_pipelines_over_recordings() {
    let fixtures = meeting_agent_devtools::fixtures::dir().unwrap();
    let (dir, url) = process_dir("ma-process", "standup");
    std::fs::copy(fixtures.join("captions.wav"), dir.join("sam.wav")).unwrap();
    std::fs::copy(fixtures.join("speech.wav"), dir.join("ann.wav")).unwrap();
    // Sam's camera: 10 s of blue, H.264 in MP4.
    let made = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "pattern=blue", "num-buffers=300", "!"])
        .args([
            "video/x-raw,width=640,height=360,framerate=30/1",
            "!",
            "x264enc",
            "!",
        ])
        .args(["mp4mux", "!", "filesink"])
        .arg(format!("location={}", dir.join("sam.mp4").display()))
        .status()
        .unwrap();
    assert!(made.success());
    let out = agent()
        .args(["process", dir.to_str().unwrap()])
        // `process` runs captions as configured: on here.
        .env("MEETING_AGENT_CAPTIONS", "true")
        .env("MEETING_AGENT_DATABASE_URL", &url)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("meeting standup-"), "{stdout}");
    // whisper.cpp's own lines go through tracing, never raw onto stderr.
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("whisper_") || l.starts_with("ggml_")),
        "{stderr}"
    );
    let vtt = std::fs::read_to_string(dir.join("out/transcript.vtt")).unwrap();
    assert!(vtt.contains("<v sam>") && vtt.contains("<v ann>"), "{vtt}");
    let expected = std::fs::read_to_string(fixtures.join("captions.txt")).unwrap();
    let sam: Vec<&str> = vtt
        .lines()
        .filter_map(|l| l.strip_prefix("<v sam>"))
        .collect();
    let wer = meeting_agent::captions::wer::word_error_rate(&expected, &sam.join(" "));
    assert!(wer <= 0.15, "WER {wer:.3}: {sam:?}");
    let summary = std::fs::read_to_string(dir.join("out/summary.txt")).unwrap();
    for part in [
        "Meeting summary: standup",
        "Attendance",
        "ann: 0:00 to 0:",
        "sam: 0:00 to 0:",
        "Speaking time",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }
    // The composite recording: as long as the longest microphone, sam's camera in it.
    assert!(stdout.contains("recording: "), "{stdout}");
    let longest = ["sam.wav", "ann.wav"]
        .iter()
        .map(|f| {
            let r = hound::WavReader::open(dir.join(f)).unwrap();
            r.duration() as f64 / r.spec().sample_rate as f64
        })
        .fold(0.0, f64::max);
    let decoded = meeting_agent::recording::inspect::decode(
        &dir.join("out/recording.mp4"),
        &[std::time::Duration::from_secs(5)],
    )
    .unwrap();
    let length = decoded.duration().as_secs_f64();
    assert!((length - longest).abs() < 0.5, "{length} s vs {longest} s");
    let frame = &decoded.kept[0].1;
    let (_, u, _) = frame.planes();
    let blue = u.iter().filter(|&&v| v > 200).count() as f64 / u.len() as f64;
    assert!(blue > 0.5, "sam's blue camera fills the canvas: {blue}");
    assert!(
        decoded.audio.iter().any(|s| s.unsigned_abs() > 3000),
        "the voices are mixed in"
    );
    let (ok, empty) = {
        let o = agent()
            .args(["process", "/nonexistent-dir"])
            .env("MEETING_AGENT_DATABASE_URL", &url)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    assert!(
        !ok && empty.contains("cannot read /nonexistent-dir"),
        "{empty}"
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}

/// `process DIR` with noise suppression off transcribes the microphones as they came: RNNoise
/// still finds the speech (its voice probability cuts utterances, as live). It used to write an
/// empty transcript: the disabled denoiser emitted no frames at all.
#[test]
fn process_without_noise_suppression_still_transcribes() {
    let fixtures = meeting_agent_devtools::fixtures::dir().unwrap();
    let (dir, url) = process_dir("ma-process-raw", "raw");
    std::fs::copy(fixtures.join("captions.wav"), dir.join("sam.wav")).unwrap();
    let out = agent()
        .args(["process", dir.to_str().unwrap()])
        .env("MEETING_AGENT_CAPTIONS", "true")
        .env("MEETING_AGENT_NOISE_SUPPRESSION", "false")
        .env("MEETING_AGENT_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vtt = std::fs::read_to_string(dir.join("out/transcript.vtt")).unwrap();
    let expected = std::fs::read_to_string(fixtures.join("captions.txt")).unwrap();
    let sam: Vec<&str> = vtt
        .lines()
        .filter_map(|l| l.strip_prefix("<v sam>"))
        .collect();
    let wer = meeting_agent::captions::wer::word_error_rate(&expected, &sam.join(" "));
    assert!(wer <= 0.15, "WER {wer:.3}: {sam:?}");
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}

/// `process DIR` with microphone files only (nobody turned a camera on): the transcript and a
/// playable recording, as long as the longest microphone, with the voices and a black picture
/// at a low frame rate. It used to hang for ever with `recording.mp4` at 0 bytes.
#[test]
fn process_with_microphones_only_writes_a_playable_recording() {
    let fixtures = meeting_agent_devtools::fixtures::dir().unwrap();
    let (dir, url) = process_dir("ma-process-audio", "call");
    std::fs::copy(fixtures.join("speech.wav"), dir.join("ann.wav")).unwrap();
    std::fs::copy(fixtures.join("speech-de.wav"), dir.join("bob.wav")).unwrap();
    // Output to files (a full pipe would stall the child); a hang fails the test.
    let (out_path, err_path) = (dir.with_extension("out"), dir.with_extension("err"));
    let mut child = agent()
        .args(["process", dir.to_str().unwrap()])
        .env("MEETING_AGENT_CAPTIONS", "true")
        .env("MEETING_AGENT_DATABASE_URL", &url)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not finish in 300 s; recording.mp4 has {:?} bytes; stderr:\n{}",
                std::fs::metadata(dir.join("out/recording.mp4")).map(|m| m.len()),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("recording: "), "{stdout}");
    let vtt = std::fs::read_to_string(dir.join("out/transcript.vtt")).unwrap();
    assert!(vtt.contains("<v ann>"), "{vtt}");
    let longest = ["ann.wav", "bob.wav"]
        .iter()
        .map(|f| {
            let r = hound::WavReader::open(dir.join(f)).unwrap();
            r.duration() as f64 / r.spec().sample_rate as f64
        })
        .fold(0.0, f64::max);
    let recording = dir.join("out/recording.mp4");
    assert!(std::fs::metadata(&recording).unwrap().len() > 0);
    let decoded =
        meeting_agent::recording::inspect::decode(&recording, &[std::time::Duration::from_secs(3)])
            .unwrap();
    assert_eq!(
        meeting_agent::recording::inspect::DecodedRecording::caps_field(
            &decoded.video_caps,
            "profile"
        )
        .as_deref(),
        Some("high"),
        "{}",
        decoded.video_caps
    );
    assert!(
        decoded.audio_caps.contains("mpegversion=(int)4"),
        "{}",
        decoded.audio_caps
    );
    let length = decoded.duration().as_secs_f64();
    assert!((length - longest).abs() < 0.5, "{length} s vs {longest} s");
    let audio_s = decoded.audio.len() as f64 / 48_000.0;
    assert!(
        (audio_s - longest).abs() < 0.5,
        "audio {audio_s} s vs {longest} s"
    );
    assert!(
        decoded.audio.iter().any(|s| s.unsigned_abs() > 3000),
        "the voices are mixed in"
    );
    // A black picture, at the low audio-only frame rate, from start to end.
    assert!(decoded.frames.iter().all(|&(_, luma)| luma < 24.0));
    let last = decoded.frames.last().unwrap().0 as f64 / 1e6;
    assert!(
        last > longest - 0.5,
        "video ends at {last} s of {longest} s"
    );
    let fps = decoded.frames.len() as f64 / length;
    let expected = meeting_agent::recording::offline::AUDIO_ONLY_FPS as f64;
    assert!((fps - expected).abs() < 1.0, "{fps} frames/s");
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}

/// The data's end of life from the command line: a retention dry run counts what is due and
/// deletes nothing, a real one deletes it, `archive` writes the meeting's tar, and `media
/// enqueue` refuses a source outside the media folder with a clear error.
#[tokio::test]
async fn retention_archive_and_media_commands_work_on_the_store() {
    let dir = std::env::temp_dir().join(format!("cli-retention-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("store.db").display());
    let store = meeting_agent::store::Store::connect(&url).await.unwrap();
    let mut meeting = meeting_agent::store::Meeting::new("weekly", 1_700_000_000_000);
    store
        .open_meeting(
            &meeting,
            &meeting.root_message("meeting-agent", "Weekly".into()),
        )
        .await
        .unwrap();
    let said = meeting_agent::store::Segment {
        key: "SG_1".into(),
        speaker: "sam".into(),
        text: "Ship it on Friday.".into(),
        start_ms: 0,
        end_ms: 1_000,
    };
    store.add_segments(&meeting, &[said]).await.unwrap();
    store
        .end_meeting(&meeting.id, 1_700_000_100_000)
        .await
        .unwrap();
    meeting.ended_at_ms = Some(1_700_000_100_000);
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("data_dir = {dir:?}\n[store]\nurl = {url:?}\n[retention]\ntranscripts_days = 30\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        agent()
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("MEETING_AGENT_DATABASE_URL")
            .output()
            .unwrap()
    };
    let tar = dir.join("weekly.tar");
    let out = run(&["archive", &meeting.id, "-o", tar.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = std::fs::read(&tar).unwrap();
    assert!(String::from_utf8_lossy(&archive).contains("Ship it on Friday."));
    let out = run(&["retention", "--dry-run"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["dry_run"].as_bool(), report["segments"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(store.segments(&meeting.id).await.unwrap().len(), 1);
    let out = run(&["retention"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["transcripts"], 1, "{report}");
    assert!(store.segments(&meeting.id).await.unwrap().is_empty());
    let out = run(&["media", "enqueue", "msg-1", "file:../secrets"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source: file:<path in the media folder>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["media", "enqueue", "msg-1", "file:voice/msg-1.ogg"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "queued");
    let out = run(&["media", "status", "msg-1"]);
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "queued");
    std::fs::remove_dir_all(&dir).ok();
}
