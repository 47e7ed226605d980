//! A latency histogram that many threads record into without locks: 1-ms buckets up to a
//! second, and one bucket for everything slower. Quantiles are read from the buckets (to the
//! millisecond), which is what an operator and the benchmarks ask of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets of 1 ms: [0, 1), [1, 2), ... [999, 1000), then >= 1000 ms.
const BUCKETS: usize = 1001;

pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    pub fn record(&self, latency: Duration) {
        let bucket = (latency.as_millis() as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency (ms, the upper edge of its bucket) below which a share `q` of the recorded
    /// ones lie; `None` before anything was recorded. 1000 stands for "a second or more".
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some((ms + 1).min(BUCKETS - 1) as f64);
            }
        }
        Some((BUCKETS - 1) as f64)
    }

    /// Forgets everything recorded (benchmarks measure from a point on).
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile_ms(0.95), None);
        for ms in 0..100u64 {
            h.record(Duration::from_micros(ms * 1000 + 500));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(50.0));
        assert_eq!(h.quantile_ms(0.95), Some(95.0));
        assert_eq!(h.quantile_ms(1.0), Some(100.0));
        h.record(Duration::from_secs(30));
        assert_eq!(
            h.quantile_ms(1.0),
            Some(1000.0),
            "the slowest bucket is open-ended"
        );
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
