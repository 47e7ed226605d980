//! The production image proven without a Docker daemon: scripts/image_rootfs.sh builds the
//! Dockerfile's runtime stage as a Debian bookworm root filesystem (mmdebstrap, the stage's own
//! RUN lines over deploy/image/runtime-packages.txt, its COPY lines with this build's binary),
//! and the agent runs inside it as the image would (its user, its environment, its entrypoint
//! and command; own mount and PID namespaces, the host's network) against a real
//! livekit-server. It registers, captions a participant's speech and records the meeting into
//! the image's data folder, and the recording decodes. A library or GStreamer plugin the
//! image lacks fails here; the fix belongs in the package list, and so in the image.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meeting_agent::recording::inspect;
use meeting_agent::recording::meta::RecordingStatus;
use meeting_agent::recording::storage::Storage;
use meeting_agent_devtools::participant::is_final_caption;
use meeting_agent_devtools::{LocalLiveKitServer, PythonParticipant};
use tokio::io::AsyncBufReadExt;

const T: Duration = Duration::from_secs(30);

/// The runtime stage as scripts/image_rootfs.sh describes it.
struct Image {
    rootfs: PathBuf,
    env: Vec<(String, String)>,
    /// USER's `uid:gid` and home folder in the image.
    user: (String, String),
    /// ENTRYPOINT, then CMD.
    command: Vec<String>,
}

impl Image {
    /// Builds (or reuses) the root filesystem with `binary` as the image's
    /// `/usr/bin/meeting-agent`.
    fn build(binary: &Path) -> Image {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image_rootfs.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(binary)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "scripts/image_rootfs.sh failed");
        let (mut rootfs, mut env, mut user, mut entrypoint, mut cmd) =
            (None, Vec::new(), None, Vec::new(), Vec::new());
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (kind, value) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "rootfs" => rootfs = Some(PathBuf::from(value)),
                "env" => {
                    let (k, v) = value.split_once('=').unwrap();
                    env.push((k.to_string(), v.to_string()));
                }
                "user" => {
                    let fields: Vec<&str> = value.split(' ').collect();
                    user = Some((fields[1].to_string(), fields[2].to_string()));
                }
                "entrypoint" => entrypoint.push(value.to_string()),
                "cmd" => cmd.push(value.to_string()),
                other => panic!("scripts/image_rootfs.sh printed {other:?}"),
            }
        }
        Image {
            rootfs: rootfs.expect("the root filesystem's path"),
            env,
            user: user.expect("the image's USER"),
            command: [entrypoint, cmd].concat(),
        }
    }

    /// A path inside the image, seen from here.
    fn path(&self, inside: &str) -> PathBuf {
        self.rootfs.join(inside.trim_start_matches('/'))
    }

    /// Empties `home` of all but what useradd put there (/etc/skel): what an earlier run left
    /// (recordings, the database, caches) goes.
    fn reset_home(&self, home: &Path) {
        let skel: Vec<_> = std::fs::read_dir(self.path("/etc/skel"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        for entry in std::fs::read_dir(home).unwrap().flatten() {
            if !skel.contains(&entry.file_name()) {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn env(&self, name: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == name).unwrap().1
    }
}

/// The image's command running inside it; killed (the whole process group: unshare, and with
/// it the PID namespace) when dropped.
struct Container {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Container {
    /// Runs `image` as `docker run` would: its own mount and PID namespaces with /proc, /dev
    /// and /sys mounted into the root filesystem (gone with the namespace), the image's user,
    /// and only the image's environment and `env` on top. The network is the host's, so
    /// 127.0.0.1 reaches the test's server.
    fn run(image: &Image, env: &[(&str, String)]) -> Container {
        let mount_and_enter = r#"root="$1"; user="$2"; shift 2
mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" && mount --rbind /sys "$root/sys" \
  && exec chroot --userspec="$user" --groups="${user#*:}" "$root" "$@""#;
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--pid", "--fork", "--kill-child"])
            .args(["sh", "-c", mount_and_enter, "container"])
            .arg(&image.rootfs)
            .arg(&image.user.0)
            .args(&image.command)
            .env_clear()
            // Docker's default PATH, and HOME from the image's passwd entry for USER.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &image.user.1)
            .envs(image.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("unshare (util-linux)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for reader in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(err),
        ] {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Container { child, log }
    }

    /// Waits (`within`) for a log line containing `text`.
    async fn wait_log(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the agent ended ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the agent's log within {within:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the process group this test made (process_group(0) above),
            // whose leader, unshare, has not been reaped yet.
            unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// The words of fixtures/speech.wav whisper must find (most of them).
const WORDS: [&str; 8] = [
    "morning",
    "quarterly",
    "numbers",
    "launch",
    "maria",
    "budget",
    "finance",
    "friday",
];

fn heard(text: &str) -> Vec<&'static str> {
    let text = text.to_lowercase();
    WORDS.into_iter().filter(|w| text.contains(w)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_registers_captions_and_records() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "runs the image as root does (mmdebstrap, unshare, chroot): run the tests as root"
    );
    // One run at a time in the one root filesystem (another checkout's tests may share the
    // cache): held until the test ends.
    let roots = meeting_agent::config::cache_dir().join("image-rootfs");
    std::fs::create_dir_all(&roots).unwrap();
    let lock = std::fs::File::create(roots.join(".run-lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this function owns, open until it returns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let image = Image::build(Path::new(env!("CARGO_BIN_EXE_meeting-agent")));
    // The data folder (the user's home) as the image has it: nothing from an earlier run.
    let data = image.path(image.env("MEETING_AGENT_DATA_DIR"));
    image.reset_home(&data);
    // The deployment's part: the server and its keys, and a configuration that records every
    // meeting (small, to spare the CI machine's two cores) to the image's data folder.
    let config = "/etc/meeting-agent/image-test.toml";
    std::fs::create_dir_all(image.path("/etc/meeting-agent")).unwrap();
    std::fs::write(
        image.path(config),
        "[agent]\nload_threshold = 1.0\nstatus_interval_secs = 1.0\n\
         [recording]\nauto = true\nwidth = 640\nheight = 360\nfps = 15\n",
    )
    .unwrap();

    let server = LocalLiveKitServer::start().await.unwrap();
    let mut agent = Container::run(
        &image,
        &[
            ("LIVEKIT_URL", server.ws_url()),
            ("LIVEKIT_API_KEY", server.api_key.clone()),
            ("LIVEKIT_API_SECRET", server.api_secret.clone()),
            ("MEETING_AGENT_CONFIG", config.to_string()),
        ],
    );
    agent.wait_log("worker registered", T).await;

    // Dispatched automatically into the new room; the participant speaks once the agent is in.
    let room = "image-room";
    let speech = meeting_agent_devtools::fixtures::dir()
        .unwrap()
        .join("speech.wav");
    let mut p = PythonParticipant::spawn(
        &server,
        room,
        "sam",
        &[
            "--wav",
            speech.to_str().unwrap(),
            "--once",
            "--video",
            "320x240",
            "--fps",
            "15",
            "--wait-for-agent",
            "30",
        ],
    )
    .unwrap();
    p.wait_for(T, |e| e["event"] == "agent_present")
        .await
        .unwrap_or_else(|| panic!("the agent never joined:\n{}", agent.log_text()));

    // Captions of the ~9 s of speech, as lk.transcription text streams: until the last word,
    // or 5 s without a new one (the speech is over).
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && !heard(&said).contains(&"friday") {
        match p.wait_for(Duration::from_secs(5), is_final_caption).await {
            Some(e) => {
                said.push_str(e["text"].as_str().unwrap_or_default());
                said.push(' ');
            }
            None if !said.is_empty() => break,
            None => {}
        }
    }
    eprintln!("captions from the image: {said}");
    assert!(
        heard(&said).len() >= WORDS.len() / 2,
        "captions {said:?} have too few of {WORDS:?}:\n{}",
        agent.log_text()
    );

    // The meeting ends; its recording is stored in the image's data folder.
    p.stop().await;
    let _ = server.close_room(room).await;
    let storage = Storage::Local {
        dir: data.join("recordings"),
    };
    let deadline = Instant::now() + T;
    let meta = loop {
        if let Some(meta) = storage
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.status == RecordingStatus::Complete)
        {
            break meta;
        }
        assert!(
            Instant::now() < deadline,
            "no complete recording in {}:\n{}",
            data.join("recordings").display(),
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let file = data.join("recordings").join(&meta.key);
    let stat = std::fs::metadata(&file).unwrap();
    let size = stat.len();
    // Written by the image's USER.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        format!("{}:{}", stat.uid(), stat.gid()),
        image.user.0,
        "the recording's owner"
    );
    assert!(size > 20_000, "{} is {size} bytes", file.display());
    let decoded = tokio::task::spawn_blocking(move || inspect::decode(&file, &[]))
        .await
        .unwrap()
        .expect("the recording decodes");
    let seconds = decoded.duration().as_secs_f64();
    eprintln!(
        "recording {}: {size} bytes, {seconds:.1} s, {} | {}",
        meta.key, decoded.video_caps, decoded.audio_caps
    );
    assert!(seconds > 8.0, "the recording plays {seconds:.1} s");
    assert!(decoded.video_caps.contains("video/x-h264"));
    assert!(decoded.audio_caps.contains("mpegversion=(int)4"));
    // The speech is in it.
    let peak = decoded.audio.iter().map(|s| s.unsigned_abs()).max();
    assert!(peak.unwrap_or(0) > 1000, "the recording's audio is silent");
    // For whoever reads the output: what the agent warned about inside the image.
    for line in agent.log.lock().unwrap().iter() {
        if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
            eprintln!("agent: {line}");
        }
    }
    drop(agent);
    image.reset_home(&data);
}
