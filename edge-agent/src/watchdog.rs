//! The daemon's watchdog probes: the loops that serve requests without a loop of
//! their own are probed through the same path as real work, the API by a request
//! the daemon makes to its own socket, inference by classifying a fixed utterance
//! on the blocking pool (a driver's question that never finishes also makes
//! inference stale). The pinger itself is [`daemon::systemd`]'s.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) nothing is spawned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::heartbeat::Heartbeat;
use daemon::systemd::{start_watchdog, watchdog_period};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;

/// The daemon's watchdog: the probes of the API and of inference, which beat
/// only through the paths real requests take, and the pinger.
pub fn start(
    engine: &Arc<Engine>,
    socket: PathBuf,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Duration> {
    watchdog_period()?;
    tracker.spawn(probe_api(socket, engine.heartbeats().register("api"), shutdown.clone()));
    tracker.spawn(probe_inference(engine.clone(), shutdown.clone()));
    start_watchdog(engine.heartbeats(), tracker, shutdown)
}

/// A request to the daemon's own socket, now and then.
async fn probe_api(socket: PathBuf, heartbeat: Heartbeat, shutdown: CancellationToken) {
    let every = heartbeat.beat_every();
    loop {
        let started = Instant::now();
        let probe = crate::client::request(&socket, hyper::Method::GET, "/v1/health", None);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            answered = probe => match answered {
                Ok((200, _)) => heartbeat.beat(),
                Ok((status, _)) => tracing::warn!(status, "the API's own health probe failed"),
                Err(error) => tracing::warn!(%error, "the API's own health probe failed"),
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every.saturating_sub(started.elapsed())) => {}
        }
    }
}

/// Classifies a fixed utterance on the blocking pool, now and then.
async fn probe_inference(engine: Arc<Engine>, shutdown: CancellationToken) {
    let every = engine.heartbeats().beat_every();
    loop {
        let probing = engine.clone();
        let probe = tokio::task::spawn_blocking(move || probing.probe_inference());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            done = probe => if let Ok(Err(error)) = done {
                tracing::warn!(%error, "the inference probe failed");
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
