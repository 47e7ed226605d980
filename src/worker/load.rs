//! Machine CPU load (0..1) from /proc/stat, the figure LiveKit's own agents report.

/// Smoothed share of all cores in use. Samples closer together than about 100 ms are too
/// coarse (jiffies) to mean anything, so they return the previous value.
#[derive(Debug, Default)]
pub struct CpuLoad {
    last: Option<(u64, u64)>,
    smoothed: f32,
}

/// Jiffies (1/100 s per core) a sample must span.
const MIN_SPAN_JIFFIES: u64 = 10;

impl CpuLoad {
    /// Busy share of all cores, exponentially smoothed (0 on the first call or off Linux).
    pub fn sample(&mut self) -> f32 {
        let Some(now) = read_proc_stat() else {
            return 0.0;
        };
        match self.last {
            None => self.last = Some(now),
            Some((busy0, total0)) if now.1 >= total0 + MIN_SPAN_JIFFIES => {
                let load = now.0.saturating_sub(busy0) as f32 / (now.1 - total0) as f32;
                self.smoothed = 0.5 * self.smoothed + 0.5 * load.clamp(0.0, 1.0);
                self.last = Some(now);
            }
            Some(_) => {}
        }
        self.smoothed
    }
}

/// (busy, total) jiffies of the aggregate `cpu` line.
fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        assert_eq!(
            parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0"),
            Some((150, 1000))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        let mut l = CpuLoad::default();
        l.sample();
        let v = l.sample();
        assert!((0.0..=1.0).contains(&v));
    }
}
