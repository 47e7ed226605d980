//! Several agent worker *processes* (the real `meeting-agent worker` binary) against one
//! livekit-server, sharing a store and S3: for the failover tests and the `failover` bench.
//! Each worker's log is kept in memory to see which rooms it took and when it registered.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meeting_agent::config::S3Config;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::LocalLiveKitServer;

/// The agent's binary beside the running one (target/<profile>/), or `MEETING_AGENT_BIN`.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MEETING_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running binary's path");
    // target/<profile>/meeting-agent-dev, or target/<profile>/deps/<test>-<hash>
    let mut dir = exe.parent().expect("a folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("meeting-agent")
}

/// What several workers share: a livekit-server, PostgreSQL, S3, and a scratch folder for
/// their disks (`ma-<tag>-<pid>`).
pub struct SharedServices {
    pub server: LocalLiveKitServer,
    pub postgres: crate::LocalPostgres,
    pub s3: crate::LocalS3,
    pub dir: PathBuf,
}

impl SharedServices {
    pub async fn start(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ma-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Self {
            server: LocalLiveKitServer::start().await?,
            postgres: crate::LocalPostgres::start()?,
            s3: crate::LocalS3::start().await?,
            dir,
        })
    }

    /// Workers of at most `max_jobs` rooms each, draining for at most `drain_timeout_secs`.
    pub fn fleet(&self, max_jobs: u32, drain_timeout_secs: u64) -> FleetConfig<'_> {
        FleetConfig {
            server: &self.server,
            store_url: self.postgres.url(),
            s3: self.s3.config("recordings"),
            max_jobs,
            drain_timeout_secs,
        }
    }
}

/// What the workers share.
pub struct FleetConfig<'a> {
    pub server: &'a LocalLiveKitServer,
    pub store_url: String,
    pub s3: S3Config,
    /// Each worker's most rooms (`agent.max_jobs`).
    pub max_jobs: u32,
    /// Seconds a draining worker waits for its meetings.
    pub drain_timeout_secs: u64,
}

impl FleetConfig<'_> {
    /// One worker's configuration file: captions, recording to S3 (its spool in its own
    /// `data_dir`, the worker's disk), the shared store; no control API (three would share its
    /// port), no virtual backgrounds.
    pub fn toml(&self, data_dir: &Path) -> String {
        format!(
            r#"data_dir = "{data}"
[livekit]
url = "{url}"
api_key = "{key}"
api_secret = "{secret}"
[agent]
load_threshold = 1.0
max_jobs = {max_jobs}
drain_timeout_secs = {drain}
status_interval_secs = 0.5
[api]
enabled = false
[video]
virtual_backgrounds = false
[store]
enabled = true
url = "{store}"
[recording]
auto = true
storage = "s3"
dir = "{rec}"
[recording.s3]
endpoint = "{endpoint}"
bucket = "{bucket}"
access_key = "{ak}"
secret_key = "{sk}"
"#,
            data = data_dir.display(),
            url = self.server.ws_url(),
            key = self.server.api_key,
            secret = self.server.api_secret,
            max_jobs = self.max_jobs,
            drain = self.drain_timeout_secs,
            store = self.store_url,
            rec = data_dir.join("recordings").display(),
            endpoint = self.s3.endpoint,
            bucket = self.s3.bucket,
            ak = self.s3.access_key,
            sk = self.s3.secret_key,
        )
    }
}

/// One worker process.
pub struct FleetWorker {
    pub name: String,
    pub data_dir: PathBuf,
    pub pid: u32,
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl FleetWorker {
    /// Starts `meeting-agent worker` with `config` written into `data_dir`.
    pub fn spawn(name: &str, fleet: &FleetConfig<'_>, data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let config_path = data_dir.join("agent.toml");
        std::fs::write(&config_path, fleet.toml(data_dir))?;
        let mut command = Command::new(agent_binary());
        crate::participant::die_with_parent(&mut command);
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .arg("worker")
            .env_remove("MEETING_AGENT_CONFIG")
            .env_remove("MEETING_AGENT_DATABASE_URL")
            .env("MEETING_AGENT_LOG", "warn,meeting_agent=info")
            .env("MEETING_AGENT_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        let tag = name.to_string();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("FLEET_LOG").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), line));
            }
        });
        Ok(Self {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            pid,
            child,
            log,
        })
    }

    /// Log lines so far containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Waits until a log line contains `needle`; false after `within`.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.lines_with(needle).is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// When a log line containing `needle` first came after `since`.
    pub fn first_after(&self, needle: &str, since: Instant) -> Option<Instant> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(at, l)| *at >= since && l.contains(needle))
            .map(|(at, _)| *at)
    }

    /// The rooms this worker accepted a job for, in order.
    pub fn rooms_accepted(&self) -> Vec<String> {
        self.lines_with("job accepted")
            .iter()
            .filter_map(|l| {
                let rest = &l[l.find("room=")? + 5..];
                Some(
                    rest.split_whitespace()
                        .next()?
                        .trim_matches('"')
                        .to_string(),
                )
            })
            .collect()
    }

    /// The last log lines (for a failing test's message).
    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let start = log.len().saturating_sub(n);
        log[start..]
            .iter()
            .map(|(_, l)| format!("[{}] {l}\n", self.name))
            .collect()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as i32, signal);
        }
    }

    /// SIGTERM: drain.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL: a crash (nothing runs after it).
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Its exit status, or `None` if still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

/// Which captioning session a caption event came from, if `event` is one: captions are sent
/// on behalf of the speaker (the sender's identity is the speaker's), and the segment id
/// carries the session's epoch (`SG_<track>_<epoch>_<n>`).
pub fn caption_session(event: &serde_json::Value) -> Option<String> {
    if event["event"] != "text_stream" || event["topic"] != "lk.transcription" {
        return None;
    }
    let segment = event["attributes"]["lk.segment_id"].as_str()?;
    let mut parts = segment.rsplitn(3, '_');
    parts.next()?;
    parts.next().map(str::to_string)
}
