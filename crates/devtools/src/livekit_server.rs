//! A real livekit-server on loopback, started and stopped by tests, benchmarks and local
//! development. Ports are chosen free at start and kept across restarts. Everything listens
//! on loopback only: ICE over TCP is off because its listener ignores `bind_addresses`.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::process::{Child, Command};

pub const SERVER_VERSION: &str = "v1.13.5";
pub const DEV_API_KEY: &str = "devkey";
/// livekit-server wants secrets of at least 32 characters outside `--dev`.
pub const DEV_API_SECRET: &str = "meeting-agent-dev-secret-0123456789abcdef";

#[derive(Debug, Error)]
pub enum DevServerError {
    #[error(
        "livekit-server binary not found at {0} (run scripts/setup.sh, or set LIVEKIT_SERVER_BIN)"
    )]
    Missing(PathBuf),
    #[error("cannot start livekit-server: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("livekit-server did not become ready within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
}

/// Where set-up installs the server: `LIVEKIT_SERVER_BIN` or the cache.
pub fn server_binary() -> PathBuf {
    super::tool_binary(
        "LIVEKIT_SERVER_BIN",
        &format!("livekit-server-{SERVER_VERSION}"),
        "server",
    )
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    http: u16,
    rtc_udp: u16,
}

impl Ports {
    fn pick() -> std::io::Result<Self> {
        let free_tcp = || -> std::io::Result<u16> {
            Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let free_udp =
            || -> std::io::Result<u16> { Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()) };
        Ok(Self {
            http: free_tcp()?,
            rtc_udp: free_udp()?,
        })
    }
}

pub struct LocalLiveKitServer {
    child: Option<Child>,
    ports: Ports,
    pub api_key: String,
    pub api_secret: String,
    pub log_path: PathBuf,
    dir: PathBuf,
}

impl LocalLiveKitServer {
    pub async fn start() -> Result<Self, DevServerError> {
        let binary = server_binary();
        if !binary.is_file() {
            return Err(DevServerError::Missing(binary));
        }
        let ports = Ports::pick()?;
        let dir = std::env::temp_dir().join(format!(
            "meeting-agent-lk-{}-{}",
            std::process::id(),
            ports.http
        ));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            ports,
            api_key: DEV_API_KEY.into(),
            api_secret: DEV_API_SECRET.into(),
            log_path: dir.join("server.log"),
            dir,
        };
        server.spawn().await?;
        Ok(server)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ports.http)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// `agents.target_load` is the server's own cut-off: it offers no job to a worker whose
    /// reported load is at or above it (default 0.7), whatever the worker's status says. The
    /// tests and the demo share two busy cores, so the worker alone decides when it is full.
    fn config_yaml(&self) -> String {
        let p = self.ports;
        format!(
            "port: {http}\nbind_addresses: [\"127.0.0.1\"]\nrtc:\n  tcp_port: 0\n  udp_port: {udp}\n  use_external_ip: false\n  node_ip: 127.0.0.1\n  enable_loopback_candidate: true\n  interfaces: {{includes: [lo]}}\n  ips: {{includes: [127.0.0.1/32]}}\nkeys:\n  {key}: {secret}\nroom:\n  empty_timeout: 20\n  departure_timeout: 5\nagents:\n  target_load: 1.0\nlogging:\n  level: info\n",
            http = p.http,
            udp = p.rtc_udp,
            key = self.api_key,
            secret = self.api_secret
        )
    }

    async fn spawn(&mut self) -> Result<(), DevServerError> {
        let config = self.dir.join("livekit.yaml");
        std::fs::write(&config, self.config_yaml())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(server_binary());
        super::participant::die_with_parent(&mut command);
        let child = command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let timeout = Duration::from_secs(20);
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.http)).await
            {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
                let mut buf = [0u8; 64];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.")) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DevServerError::NotReady(timeout, self.log_path.clone()))
    }

    /// Kills the server (as a crash would) and waits for the process to end.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops and starts the server on the same ports.
    pub async fn restart(&mut self) -> Result<(), DevServerError> {
        self.stop().await;
        // The ports were just released by the dead process; rebinding them can race the kernel briefly.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.spawn().await
    }
}

impl Drop for LocalLiveKitServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            self.print_agent_log();
        }
    }
}

/// Server log lines a failing test shows: what the server did about workers and jobs.
const AGENT_LOG_LINES: usize = 30;

impl LocalLiveKitServer {
    /// Prints (to the failing test's output) the server's last log lines about agent workers
    /// and job dispatch, which say whether a room was offered to the agent at all.
    fn print_agent_log(&self) {
        let Ok(log) = std::fs::read_to_string(&self.log_path) else {
            return;
        };
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("agent") || l.contains("job") || l.contains("worker"))
            .collect();
        eprintln!(
            "--- livekit-server ({}): last agent and job lines ---",
            self.log_path.display()
        );
        for line in &lines[lines.len().saturating_sub(AGENT_LOG_LINES)..] {
            eprintln!("{}", line.chars().take(400).collect::<String>());
        }
    }
}

impl LocalLiveKitServer {
    /// Calls a RoomService method over Twirp/JSON (loopback HTTP), as an admin.
    pub async fn room_service(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> std::io::Result<serde_json::Value> {
        use livekit_api::access_token::{AccessToken, VideoGrants};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_grants(VideoGrants {
                room_create: true,
                room_list: true,
                room_admin: true,
                // Room-scoped calls (metadata, participants) need the room in the grant.
                room: body["room"].as_str().unwrap_or_default().to_string(),
                ..Default::default()
            })
            .to_jwt()
            .map_err(std::io::Error::other)?;
        let body = body.to_string();
        let request = format!(
            "POST /twirp/livekit.RoomService/{method} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.http)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if !head.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "RoomService/{method}: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        serde_json::from_str(payload).map_err(std::io::Error::other)
    }

    /// Ends `room`. A room whose last participant left may have closed by itself already
    /// (DeleteRoom answers 404): the same end, and `Ok(false)` says so.
    pub async fn close_room(&self, room: &str) -> std::io::Result<bool> {
        match self
            .room_service("DeleteRoom", &serde_json::json!({ "room": room }))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("404") => Ok(false),
            Err(e) => Err(e),
        }
    }
}
