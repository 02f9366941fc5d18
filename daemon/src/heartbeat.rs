//! Heartbeats of the daemon's long-running loops (the API, inference, the uplink,
//! the knowledge updater), and the one question the systemd watchdog asks of
//! them: has every loop shown life recently?
//!
//! A loop registers a [`Heartbeat`] and beats while it waits (a tick arm in its
//! `select!`, or [`Heartbeat::waiting`]). Work it hands elsewhere (a blocking
//! thread) it tracks as a [`Task`] ([`Heartbeat::task`], or
//! [`Heartbeat::task_for`] with its own allowance), so that one stuck unit makes
//! the loop stale even while the loop itself still beats. A loop that ends on
//! purpose drops its heartbeat and is no longer asked about.
//!
//! **Invariant:** a loop is never reported alive by anything but its own code
//! path: the beats come from inside the loop (or from a probe that goes through
//! the same path as the real work), never from a timer beside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A waiting loop beats four times per `stale_after`, within these bounds: often
/// enough that a late tick never makes it stale, rarely enough that an idle head
/// unit is not woken for nothing (every 3.75 s with `WatchdogSec=30s`).
const BEAT_BOUNDS: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// The registry of loops. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Heartbeats {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    epoch: Instant,
    /// A loop that has not beaten for this many milliseconds is stale.
    stale_after_ms: AtomicU64,
    loops: Mutex<Vec<Weak<LoopState>>>,
}

#[derive(Debug)]
struct LoopState {
    name: &'static str,
    /// Milliseconds since the registry's epoch until which the loop counts as alive.
    alive_until_ms: AtomicU64,
    /// Units of work in progress: id -> (start in ms since the epoch, the
    /// allowance in ms, or `None` for the registry's `stale_after`).
    tasks: Mutex<HashMap<u64, (u64, Option<u64>)>>,
    next_task: AtomicU64,
}

/// One loop's heartbeat. Dropping it takes the loop off the registry.
#[derive(Debug)]
pub struct Heartbeat {
    state: Arc<LoopState>,
    registry: Arc<Registry>,
}

/// A unit of work in progress (see [`Heartbeat::task`]); it ends when dropped.
#[derive(Debug)]
pub struct Task {
    id: u64,
    state: Arc<LoopState>,
    registry: Arc<Registry>,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats::new(Duration::from_secs(10))
    }
}

impl Heartbeats {
    /// A registry in which a loop silent for longer than `stale_after` is stale.
    pub fn new(stale_after: Duration) -> Heartbeats {
        Heartbeats {
            inner: Arc::new(Registry {
                epoch: Instant::now(),
                stale_after_ms: AtomicU64::new(stale_after.as_millis() as u64),
                loops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// How long a loop may stay silent.
    pub fn stale_after(&self) -> Duration {
        self.inner.stale_after()
    }

    /// How often a waiting loop (or a probe) should beat.
    pub fn beat_every(&self) -> Duration {
        self.inner.beat_every()
    }

    /// Sets how long a loop may stay silent (the watchdog sets it from systemd's
    /// period once the daemon knows it).
    pub fn set_stale_after(&self, stale_after: Duration) {
        self.inner
            .stale_after_ms
            .store(stale_after.as_millis() as u64, Ordering::Release);
    }

    /// Registers a loop, alive as of now.
    pub fn register(&self, name: &'static str) -> Heartbeat {
        let state = Arc::new(LoopState {
            name,
            alive_until_ms: AtomicU64::new(0),
            tasks: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(0),
        });
        let mut loops = self.inner.loops.lock().expect("heartbeat registry");
        loops.retain(|l| l.strong_count() > 0);
        loops.push(Arc::downgrade(&state));
        drop(loops);
        let heartbeat = Heartbeat {
            state,
            registry: self.inner.clone(),
        };
        heartbeat.beat();
        heartbeat
    }

    /// The names of the registered loops, in registration order.
    pub fn loops(&self) -> Vec<&'static str> {
        self.live_loops().iter().map(|l| l.name).collect()
    }

    /// The loops that have not shown life within `stale_after`: silent for too
    /// long, or with a unit of work running for too long. Empty when all is well.
    pub fn stale(&self) -> Vec<&'static str> {
        let now = self.inner.now_ms();
        let limit = self.inner.stale_after().as_millis() as u64;
        self.live_loops()
            .iter()
            .filter(|l| {
                let silent = now > l.alive_until_ms.load(Ordering::Acquire);
                let stuck = l
                    .tasks
                    .lock()
                    .expect("heartbeat tasks")
                    .values()
                    .any(|(started, allowance)| now.saturating_sub(*started) > allowance.unwrap_or(limit));
                silent || stuck
            })
            .map(|l| l.name)
            .collect()
    }

    fn live_loops(&self) -> Vec<Arc<LoopState>> {
        self.inner
            .loops
            .lock()
            .expect("heartbeat registry")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms.load(Ordering::Acquire))
    }

    fn beat_every(&self) -> Duration {
        (self.stale_after() / 4).clamp(BEAT_BOUNDS.0, BEAT_BOUNDS.1)
    }
}

impl Heartbeat {
    /// The loop is alive now.
    pub fn beat(&self) {
        let until = self.registry.now_ms() + self.registry.stale_after().as_millis() as u64;
        self.state.alive_until_ms.store(until, Ordering::Release);
    }

    /// Starts a unit of work. The loop is stale while any unit has run for longer
    /// than the registry allows, whatever else beats. Ending it is a beat.
    pub fn task(&self) -> Task {
        self.start_task(None)
    }

    /// Starts a unit of work that may take up to `allowance` (a knowledge apply).
    pub fn task_for(&self, allowance: Duration) -> Task {
        self.start_task(Some(allowance.as_millis() as u64))
    }

    fn start_task(&self, allowance_ms: Option<u64>) -> Task {
        let id = self.state.next_task.fetch_add(1, Ordering::Relaxed);
        let now = self.registry.now_ms();
        self.state
            .tasks
            .lock()
            .expect("heartbeat tasks")
            .insert(id, (now, allowance_ms));
        Task {
            id,
            state: self.state.clone(),
            registry: self.registry.clone(),
        }
    }

    /// How often this loop should beat while it waits.
    pub fn beat_every(&self) -> Duration {
        self.registry.beat_every()
    }

    /// A ticker for a `select!` arm: `_ = ticker.tick() => heartbeat.beat()`.
    /// Set the registry's `stale_after` before loops make their tickers.
    pub fn ticker(&self) -> tokio::time::Interval {
        let mut ticker = tokio::time::interval(self.registry.beat_every());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    }

    /// Awaits `wait`, a legitimate wait (a backoff, an idle receive), beating
    /// meanwhile.
    pub async fn waiting<F: std::future::Future>(&self, wait: F) -> F::Output {
        let mut ticker = self.ticker();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                output = &mut wait => {
                    self.beat();
                    return output;
                }
                _ = ticker.tick() => self.beat(),
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.state.tasks.lock().expect("heartbeat tasks").remove(&self.id);
        let until = self.registry.now_ms() + self.registry.stale_after().as_millis() as u64;
        self.state.alive_until_ms.fetch_max(until, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_loop_goes_stale_and_a_beat_brings_it_back() {
        let beats = Heartbeats::new(Duration::from_millis(30));
        let api = beats.register("api");
        let uplink = beats.register("uplink");
        assert!(beats.stale().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        uplink.beat();
        assert_eq!(beats.stale(), vec!["api"]);
        api.beat();
        assert!(beats.stale().is_empty());
    }

    #[test]
    fn a_stuck_task_makes_the_loop_stale_even_while_it_beats() {
        let beats = Heartbeats::new(Duration::from_millis(30));
        let inference = beats.register("inference");
        let stuck = inference.task();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            inference.beat();
        }
        assert_eq!(beats.stale(), vec!["inference"]);
        drop(stuck);
        assert!(beats.stale().is_empty());
    }

    #[test]
    fn a_long_task_has_its_own_allowance_and_no_more() {
        let beats = Heartbeats::new(Duration::from_millis(100));
        let knowledge = beats.register("knowledge");
        let _apply = knowledge.task_for(Duration::from_millis(600));
        std::thread::sleep(Duration::from_millis(250));
        knowledge.beat();
        assert!(beats.stale().is_empty(), "the apply is within its allowance");
        std::thread::sleep(Duration::from_millis(400));
        knowledge.beat();
        assert_eq!(beats.stale(), vec!["knowledge"]);
    }

    #[test]
    fn beats_are_four_per_stale_period_within_bounds() {
        let beats = Heartbeats::new(Duration::from_secs(15));
        assert_eq!(beats.beat_every(), Duration::from_millis(3750));
        beats.set_stale_after(Duration::from_secs(1));
        assert_eq!(beats.beat_every(), Duration::from_millis(250));
        beats.set_stale_after(Duration::from_secs(600));
        assert_eq!(beats.beat_every(), Duration::from_secs(5));
    }

    #[test]
    fn a_dropped_heartbeat_is_no_longer_asked_about() {
        let beats = Heartbeats::new(Duration::from_millis(10));
        let uplink = beats.register("uplink");
        let api = beats.register("api");
        assert_eq!(beats.loops(), vec!["uplink", "api"]);
        drop(uplink);
        std::thread::sleep(Duration::from_millis(30));
        api.beat();
        assert_eq!(beats.loops(), vec!["api"]);
        assert!(beats.stale().is_empty());
    }
}
