//! A real S3 server on loopback for tests and local development: the `s3s-fs` binary (it
//! checks SigV4 signatures, presigned expiry included) over a temporary folder, with a
//! generated key pair. Stop it (as an outage would) and resume it on the same port and folder.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::process::{Child, Command};

use meeting_agent::config::S3Config;

pub const S3S_FS_VERSION: &str = "0.14.1";

#[derive(Debug, Error)]
pub enum LocalS3Error {
    #[error("s3s-fs binary not found at {0} (scripts/setup.sh installs it, or set S3S_FS_BIN)")]
    Missing(PathBuf),
    #[error("cannot start s3s-fs: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("s3s-fs did not become ready within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
}

/// Where set-up installs s3s-fs: `S3S_FS_BIN` or the cache.
pub fn s3s_fs_binary() -> PathBuf {
    super::tool_binary(
        "S3S_FS_BIN",
        &format!("s3s-fs-{S3S_FS_VERSION}"),
        "bin/s3s-fs",
    )
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct LocalS3 {
    child: Option<Child>,
    pub port: u16,
    /// The folder s3s-fs serves (one sub-folder per bucket).
    pub dir: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    pub log_path: PathBuf,
    root: PathBuf,
}

impl LocalS3 {
    /// Starts s3s-fs on a free loopback port over a new temporary folder.
    pub async fn start() -> Result<Self, LocalS3Error> {
        let binary = s3s_fs_binary();
        if !binary.is_file() {
            return Err(LocalS3Error::Missing(binary));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let root =
            std::env::temp_dir().join(format!("meeting-agent-s3-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("data");
        std::fs::create_dir_all(&dir)?;
        let mut s3 = Self {
            child: None,
            port,
            dir,
            access_key: format!("AK{}", random_hex(8).to_uppercase()),
            secret_key: random_hex(20),
            log_path: root.join("s3s-fs.log"),
            root,
        };
        s3.spawn().await?;
        Ok(s3)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings for a bucket on this server (path-style, 5 MiB parts, no prefix).
    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: String::new(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            force_path_style: true,
            part_size_mib: 5,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    async fn spawn(&mut self) -> Result<(), LocalS3Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(s3s_fs_binary());
        super::participant::die_with_parent(&mut command);
        let child = command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key])
            .args(["--secret-key", &self.secret_key])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop().await;
        Err(LocalS3Error::NotReady(timeout, self.log_path.clone()))
    }

    /// Kills the server (as an outage would) and waits for it to end. The data stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and folder.
    pub async fn resume(&mut self) -> Result<(), LocalS3Error> {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        // The dead process's port can take a moment to be free again.
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spawn().await
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
