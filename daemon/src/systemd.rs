//! A daemon's side of systemd's service protocol: `READY=1` once it can serve,
//! `STOPPING=1` on the way out, and `WATCHDOG=1` pings sent only while every
//! loop registered with [`crate::heartbeat`] has shown life.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) all of this is silent and nothing is
//! spawned.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::heartbeat::Heartbeats;

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
