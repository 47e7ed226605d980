//! How many threads whisper may use for the next job, from the cores the machine leaves idle.
//!
//! ggml's worker threads wait for each other at a barrier after every graph step, spinning. On
//! a machine whose cores are all busy (a recording, participants, other rooms, other
//! programs), a second whisper thread is descheduled for a whole time slice at a time while the
//! first spins waiting for it: on a saturated 2-core machine two threads stalled captions for
//! tens of seconds, while one thread kept them flowing. So whisper gets more than one thread
//! only while that many cores were idle since its previous job ended (from `/proc/stat`), and
//! never more than configured. Measured between jobs, so whisper's own spinning never counts.

use std::time::{Duration, Instant};

/// A gap shorter than this says too little about the machine: the last choice stands.
const MIN_WINDOW: Duration = Duration::from_millis(100);
/// A core counts as free when it was idle at least this share of the window.
const IDLE_CORE: f64 = 0.8;

/// Idle and total jiffies of all CPUs together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    pub idle: u64,
    pub total: u64,
}

impl CpuTimes {
    /// The machine's busy share of all cores between `earlier` and `self` (0..=1).
    pub fn busy_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        let idle = self.idle.saturating_sub(earlier.idle);
        if total == 0 {
            return 0.0;
        }
        1.0 - idle as f64 / total as f64
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
fn parse_cpu_line(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    let total = values.iter().take(8).sum();
    Some(CpuTimes { idle, total })
}

/// The machine's CPU times now (`None` off Linux).
pub fn read_cpu_times() -> Option<CpuTimes> {
    parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Chooses whisper's thread count per job.
pub struct ThreadBudget {
    configured: usize,
    cores: usize,
    /// The machine's CPU times when the previous job ended, and when.
    since: Option<(CpuTimes, Instant)>,
    last_choice: usize,
}

impl ThreadBudget {
    pub fn new(configured: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            configured: configured.max(1),
            cores,
            since: None,
            last_choice: 1,
        }
    }

    /// Threads for the job about to start.
    pub fn for_next_job(&mut self) -> usize {
        if self.configured == 1 {
            return 1;
        }
        let (Some((before, at)), Some(now)) = (self.since, read_cpu_times()) else {
            return self.last_choice;
        };
        if at.elapsed() < MIN_WINDOW {
            return self.last_choice;
        }
        self.last_choice = choose(self.configured, self.cores, before, now);
        self.last_choice
    }

    /// A job ended: the window for the next choice starts now.
    pub fn job_ended(&mut self) {
        if self.configured > 1 {
            self.since = read_cpu_times().map(|t| (t, Instant::now()));
        }
    }
}

/// Whole cores idle between `before` and `now`, at most `configured`, at least one.
fn choose(configured: usize, cores: usize, before: CpuTimes, now: CpuTimes) -> usize {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return 1;
    }
    let idle_share = now.idle.saturating_sub(before.idle) as f64 / total as f64;
    let idle_cores = idle_share * cores as f64;
    ((idle_cores / IDLE_CORE).floor() as usize).clamp(1, configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(
            parse_cpu_line(stat),
            Some(CpuTimes {
                idle: 820,
                total: 981
            })
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_cpu_line("cpu  x y\n"), None);
        assert!(read_cpu_times().is_some(), "Linux has /proc/stat");
    }

    #[test]
    fn threads_follow_the_idle_cores() {
        let t = |idle, total| CpuTimes { idle, total };
        let start = t(0, 0);
        // 2 cores, both idle: the configured 2.
        assert_eq!(choose(2, 2, start, t(200, 200)), 2);
        // 2 cores, one busy elsewhere: one idle core is not enough for a second thread.
        assert_eq!(choose(2, 2, start, t(100, 200)), 1);
        // Saturated: one.
        assert_eq!(choose(2, 2, start, t(0, 200)), 1);
        // 8 cores, 6 idle: at most as configured.
        assert_eq!(choose(4, 8, start, t(600, 800)), 4);
        assert_eq!(choose(8, 8, start, t(600, 800)), 7);
        // No time passed: one.
        assert_eq!(choose(2, 2, start, start), 1);
    }

    #[test]
    fn one_configured_thread_is_always_one() {
        let mut budget = ThreadBudget::new(1);
        budget.job_ended();
        assert_eq!(budget.for_next_job(), 1);
        let mut budget = ThreadBudget::new(2);
        assert_eq!(budget.for_next_job(), 1, "nothing measured yet");
    }
}
