//! Anonymous usage counters for the cloud: which intents, answered locally or
//! escalated, the sentiment distribution, and answer latency. Nothing in them
//! identifies a driver or repeats what was said, so they go up even with cloud
//! consent off.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dialogue::{Handling, Turn};

/// Upper bounds of the latency buckets, in milliseconds (the last bucket is above
/// every bound).
pub const LATENCY_BOUNDS_MS: [f64; 8] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 250.0];

/// Counters accumulated since the last batch went up.
#[derive(Debug, Clone, PartialEq)]
pub struct Analytics {
    pub since: jiff::Timestamp,
    pub counters: BTreeMap<String, u64>,
    pub latency_counts: Vec<u64>,
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics {
            since: jiff::Timestamp::now(),
            counters: BTreeMap::new(),
            latency_counts: vec![0; LATENCY_BOUNDS_MS.len() + 1],
        }
    }
}

impl Analytics {
    pub fn record(&mut self, turn: &Turn, took: Duration) {
        let u = &turn.understood;
        let handled = match turn.handling {
            Handling::Answered => "local",
            Handling::Rephrase => "rephrase",
            Handling::Escalated => "escalated",
        };
        for key in [
            format!("intent.{}", u.intent.as_str()),
            format!("handling.{handled}"),
            format!("sentiment.{}", u.sentiment.as_str()),
        ] {
            *self.counters.entry(key).or_default() += 1;
        }
        let ms = took.as_secs_f64() * 1e3;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency_counts[bucket] += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Adds back a batch that could not be delivered.
    pub fn merge(&mut self, other: Analytics) {
        self.since = self.since.min(other.since);
        for (k, v) in other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        for (mine, theirs) in self.latency_counts.iter_mut().zip(other.latency_counts) {
            *mine += theirs;
        }
    }

    /// The wire form, for the period up to `until`.
    pub fn batch(&self, until: jiff::Timestamp) -> protocol::AnalyticsBatch {
        protocol::AnalyticsBatch {
            period_start: self.since,
            period_end: until,
            counters: self.counters.clone(),
            histograms: [(
                "answer_ms".to_string(),
                protocol::Histogram {
                    bounds: LATENCY_BOUNDS_MS.to_vec(),
                    counts: self.latency_counts.clone(),
                },
            )]
            .into(),
        }
    }
}
