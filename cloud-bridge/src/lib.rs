//! cloud-bridge: the escalated half of the product. It reads what cars could not
//! answer from MQTT, runs the supervisor pipeline (understanding, routing,
//! knowledge, profile, servicing tools, response generation on Bedrock or the
//! local provider), answers the car, books, or hands off to a person.
//!
//! See `ARCHITECTURE.md` for the map; `service` owns the broker connection,
//! `supervisor` the pipeline, `store` the state, `llm` the model seam.

pub mod agent;
pub mod assemble;
pub mod batch;
pub mod broker;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod failpoint;
pub mod fleet;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod report;
pub mod service;
pub mod servicing;
pub mod store;
pub mod supervisor;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tools;
