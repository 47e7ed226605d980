//! A throwaway PostgreSQL cluster on loopback for tests and benchmarks: initdb into a temporary
//! folder, pg_ctl start on a free port, and stop (as an outage would) and start again at will.
//! PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql (scripts/setup.sh installs them)"
    )]
    Missing,
    #[error("{step} failed: {message}")]
    Command { step: &'static str, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn bin_dir() -> Result<PathBuf, PostgresError> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| PostgresError::Missing)?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().ok_or(PostgresError::Missing)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub struct LocalPostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl LocalPostgres {
    pub fn start() -> Result<Self, PostgresError> {
        let bin = bin_dir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir =
            std::env::temp_dir().join(format!("meeting-agent-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run(
                "chown",
                Command::new("chown").args(["postgres:postgres"]).arg(&dir),
            )?;
        }
        let pg = Self { bin, dir, port };
        pg.as_owner(
            "initdb",
            &[
                "-A",
                "trust",
                "--no-sync",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "-D",
            ],
            &[&pg.data()],
        )?;
        pg.resume()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_owner(
        &self,
        tool: &'static str,
        args: &[&str],
        paths: &[&Path],
    ) -> Result<(), PostgresError> {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).args(paths);
        run(tool, &mut command)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&self) -> Result<(), PostgresError> {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.as_owner(
            "pg_ctl",
            &["-w", "-o", &options, "-l"],
            &[&log, Path::new("-D"), &self.data(), Path::new("start")],
        )
    }

    /// Stops at once, dropping connections, as a database going away would.
    pub fn halt(&self) -> Result<(), PostgresError> {
        self.as_owner(
            "pg_ctl",
            &["-w", "-m", "immediate", "-D"],
            &[&self.data(), Path::new("stop")],
        )
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.halt();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(step: &'static str, command: &mut Command) -> Result<(), PostgresError> {
    let out = command.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PostgresError::Command {
            step,
            message: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
