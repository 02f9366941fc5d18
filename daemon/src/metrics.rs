//! Prometheus registration as both daemons do it: a metric registered under its
//! name and help, and kept by the daemon's metrics struct.

use prometheus_client::registry::{Metric, Registry};

/// Registers `metric` under `name` and hands it back, for the caller to keep.
pub fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn the_metric_kept_is_the_one_exported() {
        let mut registry = Registry::with_prefix("test");
        let kept = registered(&mut registry, "events", "Events seen", Counter::<u64>::default());
        kept.inc_by(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("test_events_total 3"), "{text}");
        assert!(text.contains("# HELP test_events Events seen."), "{text}");
    }
}
