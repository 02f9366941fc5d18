//! The envelope every message travels in, and encoding with the version and size
//! checks both sides apply.
//!
//! Compatibility: unknown fields are ignored (a newer minor version may add some);
//! an unknown *major* version is refused with a clear error before the body is
//! looked at.

use serde::{Deserialize, Serialize};

use crate::messages::Body;

/// AWS IoT Core's largest PUBLISH payload (128 KiB), enforced by both sides: an
/// oversize publish is refused by IoT Core, and rumqttc drops the whole
/// connection over one.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// The major version this build speaks; a message with another major is refused.
pub const SCHEMA_MAJOR: u32 = 1;
/// What this build writes.
pub const SCHEMA_VERSION: &str = "1.4";

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is {size} bytes; the limit is {limit} (AWS IoT Core's publish limit)")]
    TooLarge { size: usize, limit: usize },
    #[error("escalation is {size} bytes even with every recent turn trimmed; the limit is {limit}: shorten the utterance or the vehicle snapshot")]
    CannotTrim { size: usize, limit: usize },
    #[error("schema version `{found}` is not supported: this build speaks {SCHEMA_MAJOR}.x; update it")]
    UnsupportedVersion { found: String },
    #[error("message is not valid: {0}")]
    Invalid(String),
    #[error("`{0}` is not a valid name for a topic level: use letters, digits, '-', '_' or '.'")]
    BadTopicLevel(String),
    #[error("topic `{topic}` breaks an AWS IoT Core rule: {rule}")]
    TopicRule { topic: String, rule: &'static str },
}

/// One message, with what every message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// `major.minor`; see [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// Unique and time-ordered (UUIDv7): the receiver deduplicates on it, since
    /// delivery is at least once.
    pub message_id: uuid::Uuid,
    /// The car's AWS IoT thing name (also its MQTT client id).
    pub thing_name: String,
    pub sent_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// W3C trace context (`00-<trace id>-<span id>-<flags>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub body: Body,
}

impl Envelope {
    /// A new envelope with a fresh time-ordered id, stamped now.
    pub fn new(thing_name: &str, conversation_id: Option<&str>, body: Body) -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION.to_string(),
            message_id: uuid::Uuid::now_v7(),
            thing_name: thing_name.to_string(),
            sent_at: jiff::Timestamp::now(),
            conversation_id: conversation_id.map(str::to_string),
            traceparent: None,
            body,
        }
    }

    /// Starts a trace for this message (random ids), in W3C `traceparent` form.
    pub fn with_new_trace(mut self) -> Envelope {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        self.traceparent = Some(format!("00-{trace}-{span}-01"));
        self
    }
}

/// Serialises, refusing what IoT Core would refuse.
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, ProtocolError> {
    let bytes = serde_json::to_vec(envelope).map_err(|e| ProtocolError::Invalid(e.to_string()))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ProtocolError::TooLarge {
            size: bytes.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(bytes)
}

/// Parses a received payload: size first, then the major version, then the body.
pub fn decode(bytes: &[u8]) -> Result<Envelope, ProtocolError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ProtocolError::TooLarge {
            size: bytes.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    #[derive(Deserialize)]
    struct Version {
        schema_version: String,
    }
    let version: Version = serde_json::from_slice(bytes)
        .map_err(|e| ProtocolError::Invalid(format!("no readable schema_version: {e}")))?;
    let major = version
        .schema_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major != Some(SCHEMA_MAJOR) {
        return Err(ProtocolError::UnsupportedVersion {
            found: version.schema_version,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Invalid(e.to_string()))
}
