//! The process's metrics registry (the `prometheus` crate's default registry). Each feature
//! declares its own counters and gauges where it counts, as `LazyLock` statics made by
//! [`counter`] and [`gauge`]; the control API's `/metrics` renders whatever is registered, so a
//! new metric touches only the feature that keeps it. A metric appears with its first use.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge};

/// A counter registered under `name` (registration of the same name twice is a bug).
pub fn counter(name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("a valid metric name");
    prometheus::register(Box::new(counter.clone())).expect("each metric registered once");
    counter
}

/// A gauge registered under `name`.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("a valid metric name");
    prometheus::register(Box::new(gauge.clone())).expect("each metric registered once");
    gauge
}

/// A gauge of fractional values registered under `name`.
pub fn float_gauge(name: &str, help: &str) -> Gauge {
    let gauge = Gauge::new(name, help).expect("a valid metric name");
    prometheus::register(Box::new(gauge.clone())).expect("each metric registered once");
    gauge
}

/// A counter with labels (bounded values only: never an identity or a name from a room).
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::IntCounterVec {
    let counter = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
        .expect("a valid metric name");
    prometheus::register(Box::new(counter.clone())).expect("each metric registered once");
    counter
}

/// A histogram with `buckets` (upper bounds, ascending) registered under `name`.
pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("a valid metric name and buckets");
    prometheus::register(Box::new(histogram.clone())).expect("each metric registered once");
    histogram
}

/// Everything registered, in Prometheus' text format.
pub fn render_registered() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        tracing::warn!(error = %e, "metrics could not be encoded");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn registered_metrics_are_rendered() {
        let c = super::counter("meeting_agent_test_events_total", "Events of this test.");
        c.inc_by(3);
        let g = super::gauge("meeting_agent_test_level", "A level of this test.");
        g.set(-2);
        let out = super::render_registered();
        assert!(out.contains("meeting_agent_test_events_total 3"), "{out}");
        assert!(out.contains("meeting_agent_test_level -2"), "{out}");
        assert!(
            out.contains("# TYPE meeting_agent_test_events_total counter"),
            "{out}"
        );
    }
}
