//! The message kinds. In JSON the kind is the envelope's `kind` field and its
//! fields sit beside the envelope's (`{"schema_version": ..., "kind":
//! "escalation", "utterance": ...}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{Intent, Sentiment};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Car to cloud: what the car could not or should not answer.
    Escalation(Escalation),
    /// Cloud to car: an answer, an action, or a handoff update.
    Response(Response),
    /// Fleet channel to car: a signed knowledge update is available.
    KnowledgeManifest(KnowledgeManifestNotice),
    /// Car to cloud: counters and histograms for a period.
    AnalyticsBatch(AnalyticsBatch),
    /// Car to cloud: the car's state (connection, knowledge version, queue).
    Status(Status),
    /// Cloud to car: an escalation is durably claimed in the cloud, so the car
    /// may drop it from its outbox. Added in 1.3.
    Ack(Ack),
}

/// The cloud has an escalation: it is claimed in the cloud's store and will be
/// answered (or taken over by another instance) even if this one dies now.
///
/// Version rules: sent on the car's `responses` topic, before the answer, and
/// again for every re-sent copy of the escalation. A car older than 1.3 ignores
/// it (an unknown kind) and keeps removing rows on the broker's PUBACK. A 1.3 car
/// talking to an older cloud gets no `ack`: the answer's `in_reply_to` counts as
/// one, and until then the escalation is re-sent (the cloud drops the copies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The `message_id` of the escalation acknowledged.
    pub acknowledges: uuid::Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Emergencies: sent first, never evicted, never held back by consent.
    Urgent,
    Normal,
}

impl Priority {
    /// As the wire and the car's store spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub utterance: String,
    /// One of the contract's 30 labels. A label outside the contract is refused
    /// when the message is read: the label set changes only with the contract.
    pub intent: Intent,
    pub intent_confidence: f32,
    /// The best in-scope label and its confidence, also when `intent` is
    /// `out_of_scope` (below the car's gate), for the cloud's re-check. Added in
    /// 1.4; absent from older cars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_intent: Option<Intent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_confidence: Option<f32>,
    pub sentiment: Sentiment,
    /// In [-1, 1]: p(positive) - p(negative).
    pub sentiment_score: f32,
    /// The vehicle-context snapshot (after the car's privacy rules).
    #[serde(default)]
    pub vehicle: serde_json::Value,
    /// Oldest first; trimmed oldest-first to fit the size limit.
    #[serde(default)]
    pub recent_turns: Vec<RecentTurn>,
    pub locale: String,
    pub market: String,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentTurn {
    pub text: String,
    pub answer: String,
    pub intent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The `message_id` of the escalation answered.
    pub in_reply_to: uuid::Uuid,
    /// What the car says: short, spoken style.
    pub text: String,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// More responses will follow for this escalation (status updates while a
    /// driver waits for a person).
    #[serde(default)]
    pub more_to_come: bool,
    /// Who wrote `text`: `bedrock:<model>`, `local` (the offline provider, no
    /// model), `agent:<name>`, or `supervisor` (fixed protocol texts). Added in 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    BookingConfirmed {
        appointment_id: String,
        dealer: String,
        starts_at: jiff::Timestamp,
        service: String,
    },
    BookingCancelled {
        appointment_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub status: HandoffStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    Queued,
    Assigned,
    Closed,
}

/// A knowledge update is available. The manifest is carried as the exact bytes
/// that were signed (a JSON text), so the signature is checked over those bytes,
/// never over a re-serialised copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeManifestNotice {
    pub channel: String,
    pub manifest: String,
    /// Base64 ed25519 signature over `manifest`'s bytes.
    pub signature: String,
    /// Which of the car's trusted keys signed it.
    pub key_id: String,
    /// Which cars should take it now. Not signed, and need not be: it only
    /// narrows who applies a bundle the signature already allows.
    #[serde(default)]
    pub rollout: Rollout,
}

/// A staged rollout: the cars listed, plus a stable share of the fleet; or
/// paused. The default is every car.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Share of the fleet, 0..=100, chosen by a hash of the thing name (so
    /// widening keeps the cars already in).
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cars: Vec<String>,
    /// Stopped: no car that has not applied it starts now.
    #[serde(default)]
    pub paused: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            percent: 100,
            cars: Vec::new(),
            paused: false,
        }
    }
}

impl Rollout {
    /// Whether the car `thing` takes the bundle now.
    pub fn includes(&self, thing: &str) -> bool {
        !self.paused && (self.cars.iter().any(|c| c == thing) || Rollout::bucket(thing) < u32::from(self.percent))
    }

    /// The car's place in the fleet, 0..100 (FNV-1a of the thing name).
    pub fn bucket(thing: &str) -> u32 {
        let hash = thing.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % 100) as u32
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsBatch {
    pub period_start: jiff::Timestamp,
    pub period_end: jiff::Timestamp,
    /// Anonymous counts, e.g. `intent.fuel_level`, `route.local`, `sentiment.negative`.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    #[serde(default)]
    pub histograms: BTreeMap<String, Histogram>,
}

/// Counts per bucket: `counts[i]` is the number of values `<= bounds[i]`, minus
/// those of earlier buckets; the last count is for values above every bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub agent_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_failure: Option<String>,
    pub queued_escalations: u64,
    /// When the knowledge version was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_applied_at: Option<jiff::Timestamp>,
    /// The version the last failure was about, and when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_failure_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_failure_at: Option<jiff::Timestamp>,
}
