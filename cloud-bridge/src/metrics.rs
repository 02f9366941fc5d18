//! The service's Prometheus metrics: the build, messages in, duplicates,
//! outcomes by route, model calls, retries and every kind of failure, handling
//! latency, and the human-agent queue.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::tools::ToolError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CorrectionLabel {
    from: String,
    to: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
}

struct Inner {
    registry: Registry,
    received: Family<KindLabel, Counter>,
    duplicates: Counter,
    rejected: Family<KindLabel, Counter>,
    handled: Family<RouteLabel, Counter>,
    corrections: Family<CorrectionLabel, Counter>,
    failures: Family<KindLabel, Counter>,
    retries: Counter,
    delivered: Counter,
    handling_seconds: Histogram,
    connected: Gauge,
    subscribed: Gauge,
    acknowledged: Counter,
    in_flight: Gauge,
    handoffs_queued: Gauge,
}

/// Cheap to clone; every clone counts into one registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cloud_bridge");
        let inner = Inner {
            received: Family::default(),
            duplicates: Counter::default(),
            rejected: Family::default(),
            handled: Family::default(),
            corrections: Family::default(),
            failures: Family::default(),
            retries: Counter::default(),
            delivered: Counter::default(),
            handling_seconds: Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            connected: Gauge::default(),
            subscribed: Gauge::default(),
            acknowledged: Counter::default(),
            in_flight: Gauge::default(),
            handoffs_queued: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "build",
            "The running build, labelled with its version",
            Info::new(BuildLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        registry.register(
            "handoffs_queued",
            "Handoffs waiting for a human agent (read from the store at each scrape)",
            inner.handoffs_queued.clone(),
        );
        registry.register(
            "messages_received",
            "Messages read from the broker, by kind",
            inner.received.clone(),
        );
        registry.register(
            "duplicates",
            "Escalations already handled (dropped)",
            inner.duplicates.clone(),
        );
        registry.register(
            "messages_rejected",
            "Messages refused, by reason",
            inner.rejected.clone(),
        );
        registry.register(
            "escalations_handled",
            "Escalations handled, by route and provider",
            inner.handled.clone(),
        );
        registry.register(
            "intent_corrections",
            "Edge intents the supervisor corrected",
            inner.corrections.clone(),
        );
        registry.register(
            "failures",
            "Failures, by kind (model, tool, store, delivery)",
            inner.failures.clone(),
        );
        registry.register(
            "llm_retries",
            "Model calls retried after throttling or 5xx",
            inner.retries.clone(),
        );
        registry.register(
            "responses_delivered",
            "Responses published to cars",
            inner.delivered.clone(),
        );
        registry.register(
            "handling_seconds",
            "From receipt to the response being published",
            inner.handling_seconds.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while connected to the broker (see broker_subscribed)",
            inner.connected.clone(),
        );
        registry.register(
            "broker_subscribed",
            "1 while the broker has granted every subscription of this connection",
            inner.subscribed.clone(),
        );
        registry.register(
            "escalations_acknowledged",
            "Acknowledgements sent to cars, once an escalation (or a copy of it) is claimed",
            inner.acknowledged.clone(),
        );
        registry.register(
            "escalations_in_flight",
            "Escalations being handled now",
            inner.in_flight.clone(),
        );
        Metrics(Arc::new(Inner { registry, ..inner }))
    }

    pub fn received(&self, kind: &str) {
        self.0.received.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    pub fn duplicate(&self) {
        self.0.duplicates.inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.0.rejected.get_or_create(&KindLabel { kind: reason.into() }).inc();
    }

    pub fn handled(&self, route: &str, provider: &str, seconds: f64) {
        self.0
            .handled
            .get_or_create(&RouteLabel {
                route: route.into(),
                provider: provider.into(),
            })
            .inc();
        self.0.handling_seconds.observe(seconds);
    }

    pub fn corrected(&self, from: &str, to: &str) {
        self.0
            .corrections
            .get_or_create(&CorrectionLabel {
                from: from.into(),
                to: to.into(),
            })
            .inc();
    }

    /// Any failure, by kind: `llm_timeout`, `tool_invalid_arguments`, `store`, `delivery`, ...
    pub fn failure(&self, kind: &str) {
        self.0.failures.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    pub fn llm_failure(&self, kind: &str) {
        self.failure(&format!("llm_{kind}"));
    }

    pub fn tool_refused(&self, error: &ToolError) {
        self.failure(match error {
            ToolError::UnknownTool(_) => "tool_unknown",
            ToolError::InvalidArguments { .. } => "tool_invalid_arguments",
            ToolError::Refused(_) => "tool_refused",
            ToolError::Store(_) => "tool_store",
        });
    }

    pub fn llm_retry(&self) {
        self.0.retries.inc();
    }

    pub fn delivered(&self) {
        self.0.delivered.inc();
    }

    pub fn set_connected(&self, connected: bool) {
        self.0.connected.set(i64::from(connected));
    }

    pub fn connected(&self) -> bool {
        self.0.connected.get() == 1
    }

    pub fn set_subscribed(&self, subscribed: bool) {
        self.0.subscribed.set(i64::from(subscribed));
    }

    pub fn subscribed(&self) -> bool {
        self.0.subscribed.get() == 1
    }

    pub fn acknowledged(&self) {
        self.0.acknowledged.inc();
    }

    pub fn in_flight(&self, delta: i64) {
        self.0.in_flight.inc_by(delta);
    }

    pub fn set_handoffs_queued(&self, queued: usize) {
        self.0.handoffs_queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// The failures counted so far of one kind (for tests and `/health`).
    pub fn failures_of(&self, kind: &str) -> u64 {
        self.0.failures.get_or_create(&KindLabel { kind: kind.into() }).get()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry).expect("metrics encode to a String");
        out
    }
}
