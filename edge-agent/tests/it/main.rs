//! edge-agent's integration tests: the built binary and the library on the shipped
//! model and pack, a real broker (rumqttd), real sockets and a disk that lets the car
//! down.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

mod api;
mod chat;
mod classify;
mod conversations;
mod dialogue;
mod fleet;
mod hostile;
mod knowledge_pack;
mod outbox;
mod state;
mod systemd;
mod uplink;
