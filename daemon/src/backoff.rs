//! The one retry backoff of both daemons (the car's reconnects and pack downloads,
//! the cloud's model calls): jittered exponential delays from backon, with a reset
//! for the loops that start over after a success.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Each delay is drawn in [d/2, d], d doubling from `initial` up to `max`, without
/// end; [`Backoff::reset`] starts over from `initial`.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    seed: u64,
    resets: u64,
}

impl Backoff {
    /// `seed` makes the jitter repeatable (tests); give each loop its own.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        // backon adds a jitter in [0, d) to each delay d: halving both ends puts
        // every delay in [d/2, d] of the doubling sequence from `initial` to `max`.
        let builder = ExponentialBuilder::default()
            .with_min_delay(initial / 2)
            .with_max_delay(max / 2)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.with_jitter_seed(seed).build(),
            builder,
            max,
            seed,
            resets: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Starts over from the initial delay, with fresh jitter.
    pub fn reset(&mut self) {
        self.resets += 1;
        self.delays = self
            .builder
            .with_jitter_seed(self.seed.wrapping_add(self.resets))
            .build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_its_cap_and_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 7);
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000];
        let delays: Vec<Duration> = bounds.iter().map(|_| b.next_delay()).collect();
        for (d, hi) in delays.iter().zip(bounds) {
            let hi = Duration::from_millis(hi);
            assert!(*d >= hi / 2 && *d <= hi, "{d:?} outside [{:?}, {hi:?}]", hi / 2);
        }
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 3, "no jitter: {delays:?}");
        b.reset();
        let first = b.next_delay();
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
            "{first:?}"
        );
    }
}
