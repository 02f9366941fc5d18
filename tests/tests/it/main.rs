//! The end-to-end tests: real mosquitto, the edge-agent and cloud-bridge binaries,
//! systemd's protocol, bubblewrap, a full disk, the workspace's layers.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

/// A line on stderr past the harness's capture, so CI's log shows a run's
/// figures (and the chaos seed) even when its test passes.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod chaos;
mod cloud;
mod common;
mod disk;
mod fleet;
mod layers;
mod mosquitto;
mod restart;
mod sandbox;
mod supervision;
