//! Named failure points for crash tests: a test-only hook.
//!
//! Built with the `test-util` feature, [`hit`] stops the process at the point
//! named by `EDGE_AGENT_FAILPOINT`: it says so on stderr and waits, so that the
//! test can kill it (-9) exactly there, or watch what a wedged loop does to the
//! watchdog (`inference:wedge`). Without the feature it is nothing.

/// Stops here when `EDGE_AGENT_FAILPOINT` names this point (`test-util` only).
#[cfg(feature = "test-util")]
pub fn hit(name: &str) {
    if std::env::var("EDGE_AGENT_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "test-util"))]
#[inline(always)]
pub fn hit(_name: &str) {}
