//! The supervisor's state, behind one trait per concern: dedupe, conversations,
//! profiles, appointments, handoffs (with the driver-bound outbox they feed), and
//! analytics.
//!
//! The traits are shaped for a shared production store such as DynamoDB: every
//! record has a partition key (and a sort key where records are ordered), and every
//! write that decides ownership is conditional (`put if absent`, `update if the
//! status is still X`). The default implementation, [`SqliteStore`], serves one
//! host; several processes on that host share its file. How N hosts share one
//! store is written down in `ARCHITECTURE.md`.

mod sqlite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Schema(#[from] knowledge::KnowledgeError),
    #[error("store: a stored record is not readable: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a claim on an incoming message found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First sight: this instance owns it until the lease ends.
    New,
    /// Already handled (or being handled under a live lease): drop it.
    Duplicate,
}

/// A message to claim.
#[derive(Debug, Clone, PartialEq)]
pub struct NewClaim {
    pub message_id: String,
    pub thing: String,
    /// Kept so that another instance can take the message over.
    pub payload: Vec<u8>,
}

/// Keyed by `message_id` (partition key). A claim is a conditional put. The
/// `_many` forms write a batch in one transaction (group commit; a
/// `BatchWriteItem` / `TransactWriteItems` in DynamoDB): at a few thousand
/// messages a second, one commit per message is most of the store's cost.
pub trait DedupeStore: Send + Sync {
    /// Records each message as received by `owner`, unless it is already known.
    fn claim_many(&self, claims: &[NewClaim], owner: &str, lease_ms: i64) -> StoreResult<Vec<Claim>>;
    /// Marks each handled, with what was concluded about it, and appends the
    /// turns it added to its conversation, all in one transaction: an instance
    /// that dies before this leaves neither, and the one that takes the
    /// escalation over does not repeat the turns.
    fn complete_many(&self, completed: &[Completed]) -> StoreResult<()>;
    /// Claims whose lease ran out before they were completed (their owner died):
    /// re-leased to `owner` with a conditional update, and returned for handling.
    fn take_over_stale(&self, owner: &str, lease_ms: i64, limit: usize) -> StoreResult<Vec<Vec<u8>>>;
    /// The reply published for a completed escalation, as its exact bytes (so a
    /// car that asks again gets the same message, which it drops if it has it).
    fn reply(&self, message_id: &str) -> StoreResult<Option<Vec<u8>>>;

    fn claim(&self, message_id: &str, thing: &str, payload: &[u8], owner: &str, lease_ms: i64) -> StoreResult<Claim> {
        let claim = NewClaim {
            message_id: message_id.to_string(),
            thing: thing.to_string(),
            payload: payload.to_vec(),
        };
        Ok(self.claim_many(&[claim], owner, lease_ms)?.remove(0))
    }

    fn complete(&self, outcome: &Outcome, turns: &[(ConversationTurn, Usage)]) -> StoreResult<()> {
        self.complete_many(&[Completed {
            outcome: outcome.clone(),
            turns: turns.to_vec(),
            reply: None,
        }])
    }
}

/// An escalation handled: its outcome and the conversation turns it added.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub outcome: Outcome,
    pub turns: Vec<(ConversationTurn, Usage)>,
    /// The reply envelope as published (or queued), for re-delivery.
    pub reply: Option<Vec<u8>>,
}

/// How one escalation was handled: the row the report and the audit read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub message_id: String,
    pub thing: String,
    pub conversation_id: String,
    pub edge_intent: String,
    pub intent: String,
    /// Why the supervisor changed the edge's label, when it did.
    pub correction: Option<String>,
    pub sentiment: String,
    pub sentiment_score: f32,
    pub route: String,
    pub provider: String,
    pub articles: Vec<String>,
    pub usage: Usage,
    pub failure: Option<String>,
    pub handled_at: jiff::Timestamp,
}

/// Tokens a model spent, and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// One turn of a conversation: partition key `conversation_id`, sort key `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationTurn {
    pub role: Role,
    pub text: String,
    pub at: jiff::Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Driver,
    Assistant,
    Agent,
}

pub trait ConversationStore: Send + Sync {
    fn append(&self, conversation_id: &str, thing: &str, turn: &ConversationTurn, usage: Usage) -> StoreResult<()>;
    /// The last `limit` turns, oldest first.
    fn recent(&self, conversation_id: &str, limit: usize) -> StoreResult<Vec<ConversationTurn>>;
    /// Tokens and cost spent on one conversation so far.
    fn usage(&self, conversation_id: &str) -> StoreResult<Usage>;
}

/// The vehicle and its owner, keyed by thing name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub thing: String,
    pub owner_name: String,
    pub model: String,
    pub model_year: u16,
    pub vin: String,
    pub mileage_km: u32,
    pub market: String,
    pub locale: String,
    /// IANA zone; "next Friday morning" is read in it.
    pub time_zone: String,
    pub preferred_dealer: String,
    pub warranty_until: jiff::civil::Date,
    pub warranty_km: u32,
    #[serde(default)]
    pub service_history: Vec<ServiceRecord>,
    #[serde(default)]
    pub preferences: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub date: jiff::civil::Date,
    pub mileage_km: u32,
    pub work: String,
}

pub trait ProfileStore: Send + Sync {
    fn get(&self, thing: &str) -> StoreResult<Option<Profile>>;
    fn put(&self, profile: &Profile) -> StoreResult<()>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    pub appointment_id: String,
    pub thing: String,
    pub dealer: String,
    pub service: String,
    pub starts_at: jiff::Timestamp,
    pub status: AppointmentStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    /// Booked, waiting for the driver's (or the model's) confirmation.
    Held,
    Confirmed,
    Cancelled,
}

/// A recall campaign for a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    pub campaign: String,
    pub model: String,
    pub years: (u16, u16),
    pub summary: String,
    pub remedy: String,
}

/// Dealer appointments: partition key `dealer`, sort key `starts_at`. `hold` is a
/// conditional put (a slot is held once), `confirm` a conditional update.
pub trait AppointmentStore: Send + Sync {
    /// The start times already taken at a dealer between two instants.
    fn taken(&self, dealer: &str, from: jiff::Timestamp, to: jiff::Timestamp) -> StoreResult<Vec<jiff::Timestamp>>;
    fn hold(&self, appointment: &Appointment) -> StoreResult<()>;
    fn confirm(&self, appointment_id: &str, thing: &str) -> StoreResult<Appointment>;
    fn by_thing(&self, thing: &str) -> StoreResult<Vec<Appointment>>;
    /// Stores (or replaces, by campaign) a recall; fleet ops fill the store.
    fn put_recall(&self, recall: &Recall) -> StoreResult<()>;
    fn recalls(&self, model: &str, year: u16) -> StoreResult<Vec<Recall>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffState {
    Queued,
    Assigned,
    Closed,
}

impl HandoffState {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffState::Queued => "queued",
            HandoffState::Assigned => "assigned",
            HandoffState::Closed => "closed",
        }
    }
}

/// A conversation handed to the contact centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub handoff_id: String,
    /// The escalation that asked for a person; every message to the car answers it.
    pub message_id: String,
    pub thing: String,
    pub conversation_id: String,
    pub reason: String,
    pub urgent: bool,
    pub state: HandoffState,
    pub agent: Option<String>,
    pub created_at: jiff::Timestamp,
    pub taken_at: Option<jiff::Timestamp>,
    pub closed_at: Option<jiff::Timestamp>,
    pub estimated_wait_seconds: u32,
    pub utterance: String,
}

/// A message waiting to go to a car: partition key `thing`, sort key `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub seq: i64,
    pub thing: String,
    pub conversation_id: String,
    pub response: protocol::Response,
}

/// Handoffs (partition key `handoff_id`; state changes are conditional on the
/// current state) and the outbox of messages for cars that agents and status
/// updates write, and that any instance may deliver (a lease per row).
pub trait HandoffStore: Send + Sync {
    fn open(&self, handoff: &Handoff) -> StoreResult<()>;
    fn get(&self, handoff_id: &str) -> StoreResult<Option<Handoff>>;
    /// Open handoffs (queued first, oldest first), or every handoff with `all`.
    fn list(&self, all: bool) -> StoreResult<Vec<Handoff>>;
    /// Queued handoffs older than the given instant (for status updates and
    /// wait estimates), oldest first.
    fn queued(&self) -> StoreResult<Vec<Handoff>>;
    /// Moves `from` -> `to`, or fails with `Conflict` when the state is not `from`.
    fn transition(
        &self,
        handoff_id: &str,
        from: HandoffState,
        to: HandoffState,
        agent: Option<&str>,
        at: jiff::Timestamp,
    ) -> StoreResult<Handoff>;
    /// Sets the time of the last status update to `at` if it is still `previous`
    /// (a compare-and-set, so that one instance sends each update); false when
    /// another got there first.
    fn touch_status(
        &self,
        handoff_id: &str,
        previous: Option<jiff::Timestamp>,
        at: jiff::Timestamp,
    ) -> StoreResult<bool>;
    fn last_status(&self, handoff_id: &str) -> StoreResult<Option<jiff::Timestamp>>;
    fn enqueue(&self, thing: &str, conversation_id: &str, response: &protocol::Response) -> StoreResult<i64>;
    /// Leases up to `limit` undelivered messages to `owner`.
    fn lease_outbound(&self, owner: &str, lease_ms: i64, limit: usize) -> StoreResult<Vec<OutboundMessage>>;
    fn delivered(&self, seq: i64) -> StoreResult<()>;
}

/// One day of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayReport {
    pub day: String,
    pub escalations: u64,
    pub edge_turns: u64,
    pub edge_local: u64,
    pub edge_escalated: u64,
    pub mean_sentiment: Option<f64>,
    pub negative_share: Option<f64>,
    pub top_intents: Vec<(String, u64)>,
    pub corrections: u64,
    pub handoffs: u64,
    pub mean_wait_seconds: Option<f64>,
    pub max_wait_seconds: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// The cars' analytics batches (deduplicated on `message_id`, summed per day and
/// counter) and the per-day report over everything above.
pub trait AnalyticsStore: Send + Sync {
    /// Adds a batch's counters once; false when the batch was seen before.
    fn record_batch(&self, message_id: &str, day: &str, counters: &BTreeMap<String, u64>) -> StoreResult<bool>;
    fn report(&self, days: u32, today: jiff::civil::Date) -> StoreResult<Vec<DayReport>>;
}

/// A signed knowledge release as published: the notice, keyed by channel and
/// version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub channel: String,
    pub version: u64,
    pub notice: protocol::KnowledgeManifestNotice,
    pub published_at: jiff::Timestamp,
    pub published_by: String,
}

/// What a car last reported about its knowledge (partition key: thing name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarKnowledge {
    pub thing: String,
    pub version: Option<u64>,
    pub applied_at: Option<jiff::Timestamp>,
    pub failure: Option<String>,
    pub failure_version: Option<u64>,
    pub failure_at: Option<jiff::Timestamp>,
    pub reported_at: jiff::Timestamp,
}

/// One line of the fleet-ops audit log: who did what to which channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: jiff::Timestamp,
    pub actor: String,
    pub action: String,
    pub channel: String,
    pub version: Option<u64>,
    pub detail: String,
}

/// Knowledge releases, the cars' reports and the audit log. Releases are keyed
/// by (channel, version) and written once; a car's report replaces the one
/// before only when it is newer; the audit log is append-only.
pub trait FleetStore: Send + Sync {
    /// Records a release, or updates its rollout or refreshes its manifest (same
    /// channel, version and payload); other content under a version is a conflict.
    fn put_release(&self, release: &Release) -> StoreResult<()>;
    fn release(&self, channel: &str, version: u64) -> StoreResult<Option<Release>>;
    /// The newest release of a channel.
    fn latest_release(&self, channel: &str) -> StoreResult<Option<Release>>;
    fn record_car(&self, report: &CarKnowledge) -> StoreResult<()>;
    fn cars(&self) -> StoreResult<Vec<CarKnowledge>>;
    fn audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The newest `limit` entries, newest first.
    fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditEntry>>;
}

/// Every store the supervisor uses.
#[derive(Clone)]
pub struct Stores {
    pub dedupe: std::sync::Arc<dyn DedupeStore>,
    pub conversations: std::sync::Arc<dyn ConversationStore>,
    pub profiles: std::sync::Arc<dyn ProfileStore>,
    pub appointments: std::sync::Arc<dyn AppointmentStore>,
    pub handoffs: std::sync::Arc<dyn HandoffStore>,
    pub analytics: std::sync::Arc<dyn AnalyticsStore>,
    pub fleet: std::sync::Arc<dyn FleetStore>,
}

impl Stores {
    /// All of them on one SQLite file.
    pub fn sqlite(store: std::sync::Arc<SqliteStore>) -> Stores {
        Stores {
            dedupe: store.clone(),
            conversations: store.clone(),
            profiles: store.clone(),
            appointments: store.clone(),
            handoffs: store.clone(),
            analytics: store.clone(),
            fleet: store,
        }
    }
}
