//! The end-to-end tests: real mosquitto, the edge-agent and cloud-bridge binaries,
//! systemd's protocol, bubblewrap, a full disk, the workspace's layers.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

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
