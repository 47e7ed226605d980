//! This process's resident memory and CPU time, read from /proc (Linux).

/// Resident set size in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// User + system CPU time of the whole process, in seconds.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of(std::path::Path::new("/proc/self/stat"))
}

/// User + system CPU time, in seconds, from a `stat` file of /proc (a process's, or one
/// thread's under `/proc/self/task/<tid>/stat`); 0 when it cannot be read.
pub fn cpu_seconds_of(stat: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
    let hz = 100.0; // USER_HZ is 100 on Linux
    (ticks(11) + ticks(12)) / hz
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::rss_bytes() > 1024 * 1024);
        let start = super::cpu_seconds();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(super::cpu_seconds() >= start);
    }
}
