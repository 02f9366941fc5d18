//! A service manager's notify socket, owned by a test: what a daemon sends
//! (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) and when it arrived.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// The notifications received so far, with when they arrived.
pub struct NotifyListener {
    socket: UnixDatagram,
    pub received: Vec<(Instant, String)>,
}

impl NotifyListener {
    pub fn bind(path: &Path) -> NotifyListener {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        NotifyListener {
            socket,
            received: Vec::new(),
        }
    }

    /// Reads until `until` returns true for a message, or `timeout` passes.
    pub fn read_until(&mut self, timeout: Duration, until: impl Fn(&str) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = until(&text);
                self.received.push((at, text));
                if hit {
                    return Some(at);
                }
            }
        }
        None
    }

    /// Waits up to 30 s for `READY=1`; panics with the service's log if it never comes.
    pub fn wait_ready(&mut self, log: &Path) -> Instant {
        self.read_until(Duration::from_secs(30), |m| m.lines().any(|l| l == "READY=1"))
            .unwrap_or_else(|| panic!("no READY=1; log:\n{}", std::fs::read_to_string(log).unwrap_or_default()))
    }

    pub fn pings_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.received
            .iter()
            .filter(|(at, text)| *at >= from && *at <= to && text.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect()
    }
}
