//! daemon: what edge-agent and cloud-bridge share, and only that. Retry backoff,
//! the CLI's tables, logging, process
//! signals as the root of the cancellation tree, heartbeats and the systemd
//! watchdog, systemd notify, layered configuration, and finding and loading the
//! shipped model and knowledge pack.
//!
//! **Architecture Invariant:** this crate holds no dialogue, uplink, store or API
//! code, and cloud-bridge reaches the car's crate only through its `demo` feature
//! (`tests/tests/it/layers.rs` checks both with `cargo tree`).

pub mod backoff;
pub mod config;
pub mod heartbeat;
pub mod locate;
pub mod logging;
pub mod metrics;
pub mod signals;
pub mod systemd;
pub mod table;
