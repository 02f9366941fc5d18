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
    #[expect(
        clippy::too_many_lines,
        reason = "one registration per metric, each with its help text"
    )]
    pub fn new() -> Metrics {
        use daemon::metrics::registered;
        let mut r = Registry::with_prefix("cloud_bridge");
        let build = Info::new(BuildLabel {
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        r.register("build", "The running build, labelled with its version", build);
        let handling_seconds = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]);
        Metrics(Arc::new(Inner {
            handoffs_queued: registered(
                &mut r,
                "handoffs_queued",
                "Handoffs waiting for a human agent (read from the store at each scrape)",
                Gauge::default(),
            ),
            received: registered(
                &mut r,
                "messages_received",
                "Messages read from the broker, by kind",
                Family::default(),
            ),
            duplicates: registered(
                &mut r,
                "duplicates",
                "Escalations already handled (dropped)",
                Counter::default(),
            ),
            rejected: registered(
                &mut r,
                "messages_rejected",
                "Messages refused, by reason",
                Family::default(),
            ),
            handled: registered(
                &mut r,
                "escalations_handled",
                "Escalations handled, by route and provider",
                Family::default(),
            ),
            corrections: registered(
                &mut r,
                "intent_corrections",
                "Edge intents the supervisor corrected",
                Family::default(),
            ),
            failures: registered(
                &mut r,
                "failures",
                "Failures, by kind (model, tool, store, delivery)",
                Family::default(),
            ),
            retries: registered(
                &mut r,
                "llm_retries",
                "Model calls retried after throttling or 5xx",
                Counter::default(),
            ),
            delivered: registered(
                &mut r,
                "responses_delivered",
                "Responses published to cars",
                Counter::default(),
            ),
            handling_seconds: registered(
                &mut r,
                "handling_seconds",
                "From receipt to the response being published",
                handling_seconds,
            ),
            connected: registered(
                &mut r,
                "broker_connected",
                "1 while connected to the broker (see broker_subscribed)",
                Gauge::default(),
            ),
            subscribed: registered(
                &mut r,
                "broker_subscribed",
                "1 while the broker has granted every subscription of this connection",
                Gauge::default(),
            ),
            acknowledged: registered(
                &mut r,
                "escalations_acknowledged",
                "Acknowledgements sent to cars, once an escalation (or a copy of it) is claimed",
                Counter::default(),
            ),
            in_flight: registered(
                &mut r,
                "escalations_in_flight",
                "Escalations being handled now",
                Gauge::default(),
            ),
            registry: r,
        }))
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
