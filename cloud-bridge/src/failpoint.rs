//! Named failure points for crash tests: a test-only hook.
//!
//! Built with the `test-util` feature, [`hit`] kills the process (an abort, as
//! sudden as `kill -9`) at the point named by `CLOUD_BRIDGE_FAILPOINT`, so that a
//! test can check what survives a crash exactly there: `escalation:claimed` (the
//! claim is durable, no acknowledgement has gone) and `escalation:acknowledged`
//! (the car has its acknowledgement, the answer has not gone). Without the
//! feature it is nothing.

/// Dies here when `CLOUD_BRIDGE_FAILPOINT` names this point (`test-util` only).
#[cfg(feature = "test-util")]
pub fn hit(name: &str) {
    if std::env::var("CLOUD_BRIDGE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "test-util"))]
#[inline(always)]
pub fn hit(_name: &str) {}
