//! Prometheus metrics for `/metrics`: the build, requests, turns, latency, the
//! queue and what left it undelivered.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::dialogue::Turn;
use crate::store::DropReason;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    pub intent: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `expired`, `evicted` or `too_large`.
    pub reason: String,
}

impl DropLabels {
    fn of(reason: DropReason) -> DropLabels {
        let name = serde_json::to_value(reason).ok();
        DropLabels {
            reason: name.as_ref().and_then(|n| n.as_str()).unwrap_or("unknown").to_string(),
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Requests for the cloud that left the outbox unsent, by why.
    pub outbox_dropped: Family<DropLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub turns: Family<TurnLabels, Counter>,
    pub turn_seconds: Histogram,
    pub rate_limited: Counter,
    /// Connections closed at accept for being over a cap.
    pub connections_refused: Counter,
    pub pending_escalations: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// 1 when connected to the cloud; 0 until the uplink exists.
    pub uplink_connected: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// 1 when the broker granted the uplink's subscriptions on this connection.
    pub uplink_subscribed: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub late_answers: Counter<u64, AtomicU64>,
    /// Writes the state database refused (full, read-only, damaged).
    pub state_write_failures: Counter<u64, AtomicU64>,
    /// 1 while the state database cannot be written.
    pub state_degraded: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Escalations waiting in the spool (the database could not take them).
    pub spooled_escalations: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        use daemon::metrics::registered;
        let mut r = Registry::with_prefix("edge_agent");
        let build = Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        r.register("build", "The running build, labelled with its version", build);
        let outbox_dropped = Family::<DropLabels, Counter>::default();
        // Each reason from the start, at 0, so a rate over it is defined.
        for reason in [DropReason::Expired, DropReason::Evicted, DropReason::TooLarge] {
            drop(outbox_dropped.get_or_create(&DropLabels::of(reason)));
        }
        // 50 µs to ~0.8 s.
        let turn_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 15,
        ));
        Metrics {
            outbox_dropped: registered(&mut r, "outbox_dropped", "Requests for the cloud that left the outbox unsent (expired, evicted from a full queue, too large); each driver was told", outbox_dropped),
            connections_refused: registered(&mut r, "connections_refused", "API connections closed at accept: over the total or per-client cap", Counter::default()),
            state_write_failures: registered(&mut r, "state_write_failures", "Writes the state database refused (full, read-only, damaged)", Counter::default()),
            state_degraded: registered(&mut r, "state_degraded", "1 while the state database cannot be written (answers go on; escalations use the spool)", Gauge::default()),
            spooled_escalations: registered(&mut r, "spooled_escalations", "Escalations waiting in the spool because the state database could not take them", Gauge::default()),
            requests: registered(&mut r, "api_requests", "API requests by endpoint and status", Family::default()),
            turns: registered(&mut r, "turns", "Answered turns by intent and route", Family::default()),
            turn_seconds: registered(&mut r, "turn_seconds", "Time to answer a turn", turn_seconds),
            rate_limited: registered(&mut r, "rate_limited", "Requests refused by the per-client rate limit", Counter::default()),
            pending_escalations: registered(&mut r, "pending_escalations", "Escalations queued for the cloud, not yet delivered", Gauge::default()),
            uplink_connected: registered(&mut r, "uplink_connected", "1 when the cloud uplink is connected", Gauge::default()),
            uplink_subscribed: registered(&mut r, "uplink_subscribed", "1 when the broker granted the uplink's subscriptions (responses, acknowledgements, fleet notices)", Gauge::default()),
            late_answers: registered(&mut r, "late_answers", "Answers delivered on /v1/events after a 202", Counter::default()),
            registry: r,
        }
    }

    /// A request for the cloud left the outbox unsent.
    pub fn dropped(&self, reason: DropReason) {
        self.outbox_dropped.get_or_create(&DropLabels::of(reason)).inc();
    }

    pub fn turn(&self, turn: &Turn, took: Duration) {
        self.turns
            .get_or_create(&TurnLabels {
                intent: turn.understood.intent.as_str().to_string(),
                route: turn.understood.route.as_str().to_string(),
            })
            .inc();
        self.turn_seconds.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
