//! What the uplink remembers across connections: the escalations published and
//! not yet acknowledged by the cloud, with their resend timers
//! ([`AwaitingCloud`]), and the response ids already seen ([`SeenIds`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::config::UplinkConfig;

/// Recently seen response ids, to drop duplicates (delivery is at least once).
#[derive(Default)]
pub(super) struct SeenIds {
    order: VecDeque<uuid::Uuid>,
    set: HashSet<uuid::Uuid>,
}

impl SeenIds {
    const KEEP: usize = 4096;

    pub(super) fn first_time(&mut self, id: uuid::Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Escalations published but not yet acknowledged by the cloud, across
/// connections: each is sent again when its timer runs out (the timeout doubles
/// per attempt, jittered) and after every reconnect.
pub(super) struct AwaitingCloud {
    rows: HashMap<i64, Awaiting>,
    timeout: Duration,
    max_timeout: Duration,
    rng: models::rng::SplitMix64,
}

struct Awaiting {
    attempts: u32,
    /// When it is sent again; `None` while a publish is on the wire.
    due: Option<tokio::time::Instant>,
}

impl AwaitingCloud {
    pub(super) fn new(config: &UplinkConfig, seed: u64) -> AwaitingCloud {
        AwaitingCloud {
            rows: HashMap::new(),
            timeout: Duration::from_millis(config.ack_timeout_ms.max(1)),
            max_timeout: Duration::from_millis(config.ack_timeout_max_ms.max(config.ack_timeout_ms)),
            rng: models::rng::SplitMix64::new(seed),
        }
    }

    /// A publish of the row left.
    pub(super) fn published(&mut self, id: i64) {
        let row = self.rows.entry(id).or_insert(Awaiting { attempts: 0, due: None });
        row.attempts += 1;
        row.due = None;
    }

    /// The broker took the row: the cloud's acknowledgement is awaited from now.
    pub(super) fn broker_took(&mut self, id: i64) {
        let base = self
            .timeout
            .saturating_mul(1 << self.rows.get(&id).map_or(0, |r| r.attempts.saturating_sub(1).min(16)));
        let wait = base
            .min(self.max_timeout)
            .mul_f64(0.5 + 0.5 * f64::from(self.rng.next_f32()));
        if let Some(row) = self.rows.get_mut(&id) {
            row.due = Some(tokio::time::Instant::now() + wait);
        }
    }

    pub(super) fn acknowledged(&mut self, id: i64) {
        self.rows.remove(&id);
    }

    /// A new connection: everything unacknowledged is sent again now.
    pub(super) fn reconnected(&mut self) {
        let now = tokio::time::Instant::now();
        for row in self.rows.values_mut() {
            row.due = Some(now);
        }
    }

    /// Rows that must not be sent now: on the wire, or waiting for their timer.
    pub(super) fn held(&self, now: tokio::time::Instant) -> HashSet<i64> {
        self.rows
            .iter()
            .filter(|(_, r)| r.due.is_none_or(|due| due > now))
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn next_due(&self) -> Option<tokio::time::Instant> {
        self.rows.values().filter_map(|r| r.due).min()
    }

    pub(super) fn contains(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Forgets the rows that were due at `now` but not sent then.
    pub(super) fn forget_due_unsent(&mut self, now: tokio::time::Instant, sent: &HashSet<i64>) {
        self.rows
            .retain(|id, row| sent.contains(id) || row.due.is_none_or(|due| due > now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised() {
        let mut seen = SeenIds {
            order: VecDeque::new(),
            set: HashSet::new(),
        };
        let id = uuid::Uuid::now_v7();
        assert!(seen.first_time(id));
        assert!(!seen.first_time(id));
    }
}
