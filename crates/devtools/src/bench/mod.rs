//! `meeting-agent-dev bench ...`: the figures in BENCHMARKS.md. Each prints its table row.

pub mod alignment;
pub mod api;
pub mod asr;
pub mod browser;
pub mod capacity;
pub mod captions;
pub mod console;
pub mod controls;
pub mod deepfilter;
pub mod denoise;
pub mod failover;
pub mod hls;
pub mod load;
pub mod media;
pub mod meeting;
pub mod recording;
pub mod search;
pub mod speakers;
pub mod summary;
pub mod vad;
pub mod vb;
pub mod webhooks;

pub use meeting::{dispatch, recv_cpu, room_memory, soak};

/// The value at fraction `p` (0..=1) of `sorted` (nearest rank); `sorted` must not be empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Prints one BENCHMARKS.md row.
pub fn row(figure: &str, value: f64, unit: &str, target: &str, command: &str) {
    let value = if value.abs() < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    };
    println!(
        "| {figure} | {value} | {unit} | {target} | `{command}` | {} |",
        machine_and_date()
    );
}

fn machine_and_date() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {date}")
}

/// CPU time of the calling thread, in seconds (what a single-core throughput figure needs).
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
