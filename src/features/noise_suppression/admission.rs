//! Process-wide admission of microphones to DeepFilterNet. One process serves many meetings
//! and one DeepFilterNet stream costs several times RNNoise's CPU, so the streams running at
//! once are capped across every room; a microphone over the cap gets RNNoise. A slot is held
//! by the microphone's stage and given back when it is dropped (track ended, participant left,
//! switched back to RNNoise).

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Microphones running DeepFilterNet now, process-wide.
pub static DFN_STREAMS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    crate::metrics::gauge(
        "meeting_agent_deepfilternet_streams",
        "Microphones running DeepFilterNet now.",
    )
});

/// Requests for DeepFilterNet answered with RNNoise (over budget, or the model is not loaded).
pub static DFN_REFUSALS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_deepfilternet_refusals_total",
        "Microphones that asked for DeepFilterNet and got RNNoise (over budget or no model).",
    )
});

/// DeepFilterNet frames whose inference failed (the frame went out unprocessed).
pub static DFN_ERRORS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_deepfilternet_errors_total",
        "DeepFilterNet frames whose inference failed (passed through unprocessed).",
    )
});

/// Headroom on the measured speed: calibration runs on an idle machine, rooms do not.
pub const SAFETY: f64 = 0.7;

/// Streams a machine can run: `cpu_share` of `cores`, each core running `x_realtime` streams'
/// worth of audio per second of CPU, with [`SAFETY`] headroom.
pub fn streams_for_speed(x_realtime: f64, cores: usize, cpu_share: f64) -> usize {
    let streams = cpu_share * cores as f64 * x_realtime * SAFETY;
    if streams.is_finite() && streams > 0.0 {
        streams.floor().min(10_000.0) as usize
    } else {
        0
    }
}

/// The process-wide cap and count.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    running: AtomicUsize,
}

impl Admission {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            running: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// A slot, or `None` when `max` streams run already.
    pub fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        DFN_STREAMS.inc();
        Some(Slot {
            admission: self.clone(),
        })
    }
}

/// One microphone's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.running.fetch_sub(1, Ordering::AcqRel);
        DFN_STREAMS.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_admitted_up_to_the_cap_and_given_back_when_dropped() {
        let admission = Admission::new(2);
        let a = admission.try_admit().expect("first");
        let b = admission.try_admit().expect("second");
        assert!(admission.try_admit().is_none(), "over budget");
        assert_eq!(admission.running(), 2);
        drop(a);
        assert_eq!(admission.running(), 1);
        let c = admission.try_admit().expect("a freed slot is taken again");
        assert!(admission.try_admit().is_none());
        drop((b, c));
        assert_eq!(admission.running(), 0);
        assert!(
            Admission::new(0).try_admit().is_none(),
            "a zero budget admits none"
        );
    }

    #[test]
    fn concurrent_admission_never_exceeds_the_cap() {
        let admission = Admission::new(5);
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        (0..10)
                            .filter_map(|_| admission.try_admit())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<Slot>>()
        });
        assert_eq!(held.len(), 5);
        drop(held);
        assert_eq!(admission.running(), 0);
    }

    #[test]
    fn the_budget_follows_the_measured_speed() {
        // 8x real time on 4 cores, half of them: 4 * 0.5 * 8 * 0.7 = 11.2.
        assert_eq!(streams_for_speed(8.0, 4, 0.5), 11);
        // A slow machine: 2 cores at 0.9x, a quarter share: none.
        assert_eq!(streams_for_speed(0.9, 2, 0.25), 0);
        assert_eq!(streams_for_speed(f64::NAN, 4, 0.5), 0);
        assert_eq!(streams_for_speed(f64::INFINITY, 4, 0.5), 0);
        assert_eq!(streams_for_speed(-3.0, 4, 0.5), 0);
        assert_eq!(streams_for_speed(1e12, 4, 1.0), 10_000);
    }
}
