//! The daemon's side of systemd's service protocol: `READY=1` once the models
//! and the knowledge base are loaded and the API listens, `STOPPING=1` on the way
//! out, and `WATCHDOG=1` pings sent only while every real loop has shown life
//! (see [`crate::heartbeat`]).
//!
//! The loops that serve requests without a loop of their own are probed through
//! the same path as real work: the API by a request the daemon makes to its own
//! socket, inference by classifying a fixed utterance on the blocking pool (a
//! driver's question that never finishes also makes inference stale).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) all of this is silent and nothing is
//! spawned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::heartbeat::{Heartbeat, Heartbeats};

/// Tells the service manager the daemon is ready, with a status line.
pub fn notify_ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the daemon is stopping.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// The watchdog period systemd asks for (`WatchdogSec=`), when it asks for one
/// for this process.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|period| !period.is_zero())
}

/// Starts the pinger when systemd asks for a watchdog: `WATCHDOG=1` while no
/// loop of `heartbeats` is stale. A loop silent for half the period is stale, so a
/// wedge stops the pings well before systemd's deadline passes. Returns the period.
pub fn start_watchdog(
    heartbeats: &Heartbeats,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Duration> {
    let period = watchdog_period()?;
    prepare_heartbeats(heartbeats);
    tracker.spawn(ping(heartbeats.clone(), period, shutdown.clone()));
    tracing::info!(period_ms = period.as_millis() as u64, loops = ?heartbeats.loops(), "systemd watchdog on");
    Some(period)
}

/// The daemon's watchdog: the probes of the API and of inference, which beat
/// only through the paths real requests take, and the pinger.
pub fn start_daemon_watchdog(
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

/// Sets how long a loop may stay silent from systemd's watchdog period (half of
/// it), before any loop makes its ticker. Without a watchdog, nothing changes.
pub fn prepare_heartbeats(heartbeats: &Heartbeats) {
    if let Some(period) = watchdog_period() {
        heartbeats.set_stale_after(period / 2);
    }
}

/// Sends `WATCHDOG=1` every quarter period while no loop is stale.
async fn ping(heartbeats: Heartbeats, period: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(period / 4);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: Vec<&'static str> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stale = heartbeats.stale();
        if stale.is_empty() {
            if !reported.is_empty() {
                tracing::info!("every loop is alive again: watchdog pings resume");
            }
            send(&[NotifyState::Watchdog]);
        } else if stale != reported {
            tracing::error!(
                loops = %stale.join(", "),
                "loops show no life: watchdog pings stop, and systemd will restart the service"
            );
        }
        reported = stale;
    }
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
