//! edge-agent: the in-vehicle assistant daemon. This crate owns the command line,
//! the car's configuration, the live vehicle
//! context, local answers and the dialogue, the car's state store, and the
//! commands built on them (`classify`, `chat`, `kb build`, `validate`).
//!
//! **Architecture Invariant:** edge-agent depends on no AWS SDK, no broker and no
//! demo code; everything it needs runs on the head unit, offline.

pub mod analytics;
pub mod api;
pub mod assemble;
pub mod chat;
pub mod classify;
pub mod cli;
pub mod client;
pub mod config;
pub mod dialogue;
pub mod engine;
pub mod event_log;
pub mod failpoint;
pub mod fleet;
pub mod knowledge_base;
pub mod listener;
pub mod metrics;
pub mod privacy;
pub mod serve;
pub mod store;
pub mod uplink;
pub mod vehicle;
pub mod watchdog;
