//! Spawns `tests/participants/publisher.py` (LiveKit's Python SDK) as a second real
//! participant and reads the JSON lines it prints.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::LocalLiveKitServer;

/// Whether a participant's event is a final caption: an `lk.transcription` text stream marked
/// final, as LiveKit clients read them.
pub fn is_final_caption(event: &Value) -> bool {
    event["event"] == "text_stream"
        && event["topic"] == "lk.transcription"
        && event["attributes"]["lk.transcription_final"] == "true"
}

/// The venv that set-up creates (LiveKit Python SDK, numpy).
pub fn python() -> PathBuf {
    std::env::var_os("MEETING_AGENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            meeting_agent::config::cache_dir()
                .join("venv")
                .join("bin")
                .join("python")
        })
}

pub fn participants_dir() -> PathBuf {
    crate::repository().join("tests").join("participants")
}

/// publisher.py flags of the A/V sync fixture: a camera flashing white and a beep at the same
/// instants every second. At 29.5 fps its frames fall anywhere between a 30-fps recording's
/// output frames, so each flash is seen at a different phase and their mean has no
/// whole-frame bias (at the recording's own rate every flash would be off by the same
/// fraction of a frame, up to 33 ms, the same way all run long).
pub const FLASH_BEEP_ARGS: [&str; 6] =
    ["--flash-beep", "1.0", "--video", "640x360", "--fps", "29.5"];

pub struct PythonParticipant {
    child: Child,
    events: mpsc::UnboundedReceiver<Value>,
    pub identity: String,
}

impl PythonParticipant {
    /// Joins `room` as `identity`; `args` are extra publisher.py flags (e.g. `--tone-hz 660`).
    pub fn spawn(
        server: &LocalLiveKitServer,
        room: &str,
        identity: &str,
        args: &[&str],
    ) -> std::io::Result<Self> {
        let common = [
            "--api-key",
            &server.api_key,
            "--api-secret",
            &server.api_secret,
            "--room",
            room,
            "--identity",
            identity,
        ];
        Self::spawn_script(server, "publisher.py", identity, &[&common, args].concat())
    }

    /// Runs `tests/participants/<script>` with `--url` and `args`; `identity` names it.
    pub fn spawn_script(
        server: &LocalLiveKitServer,
        script: &str,
        identity: &str,
        args: &[&str],
    ) -> std::io::Result<Self> {
        let url = ["--url", &server.ws_url()];
        Self::spawn_helper(script, identity, &[&url[..], args].concat())
    }

    /// Runs `tests/participants/<script>` with `args` alone: a helper that is no participant
    /// (the webhook receiver, the SMTP server), read the same way.
    pub fn spawn_helper(script: &str, identity: &str, args: &[&str]) -> std::io::Result<Self> {
        let mut command = Command::new(python());
        die_with_parent(&mut command);
        let mut child = command
            .arg(participants_dir().join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Self {
            child,
            events,
            identity: identity.to_string(),
        })
    }

    /// Waits for the next event matching `pred`, skipping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        tokio::time::timeout(timeout, async {
            while let Some(ev) = self.events.recv().await {
                if pred(&ev) {
                    return Some(ev);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Every event printed so far and not yet read.
    pub fn received(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// Stops the participant gracefully (SIGTERM: it disconnects first).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Ends the child when this process dies, even by a panic or a kill: test participants and
/// servers must never outlive the test that started them.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs `tests/participants/dispatch.py` (LiveKit's Python server API) and returns its JSON output.
pub async fn dispatch_cli(server: &LocalLiveKitServer, args: &[&str]) -> std::io::Result<Value> {
    let out = Command::new(python())
        .arg(participants_dir().join("dispatch.py"))
        .args(args)
        .args([
            "--url",
            &server.http_url(),
            "--api-key",
            &server.api_key,
            "--api-secret",
            &server.api_secret,
        ])
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "dispatch.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).map_err(std::io::Error::other)
}
