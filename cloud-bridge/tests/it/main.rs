//! cloud-bridge's integration tests: the supervisor, the real AWS SDK clients on the
//! wire against local servers, fleet ops and the binary's errors.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

mod bedrock;
mod cli;
mod common;
mod fleet_ops;
mod iot_data;
mod supervisor;
