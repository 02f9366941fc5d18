//! protocol: the wire contract between edge-agent (the car) and cloud-bridge (the
//! cloud supervisor). It owns the intent and sentiment labels and their routes
//! ([`labels`], the contract), the versioned JSON envelope and its message kinds
//! ([`envelope`], [`messages`]), the topic tree and its access rules, written once
//! and rendered as a mosquitto ACL and an AWS IoT Core policy ([`topics`]), and the
//! payload size limit with escalation trimming ([`size`]).
//!
//! **Architecture Invariant:** the crate does no IO: it turns values into bytes,
//! bytes into values, and names into topics. Both sides link the same code, so the
//! car and the cloud cannot disagree about a field, a topic or a limit.

pub mod envelope;
pub mod labels;
pub mod messages;
pub mod size;
pub mod topics;

pub use envelope::{decode, encode, Envelope, ProtocolError, MAX_PAYLOAD_BYTES, SCHEMA_MAJOR, SCHEMA_VERSION};
pub use labels::{Intent, Route, Sentiment, UnknownLabel};
pub use messages::{
    Ack, Action, AnalyticsBatch, Body, Escalation, Handoff, HandoffStatus, Histogram, KnowledgeManifestNotice,
    Priority, RecentTurn, Response, Rollout, Status,
};
pub use size::encode_escalation;
pub use topics::{Acl, Topics};
