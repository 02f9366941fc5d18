//! The daemon's core, shared by every front end (the local API now, the uplink
//! later): the assistant, the live vehicle, the state store and the open
//! conversations, plus the event bus that carries late answers and status.
//!
//! [`Engine::ask`] is blocking (inference and SQLite): callers on the async
//! runtime run it in `spawn_blocking`. One std mutex guards the mutable parts: a
//! turn holds it for well under a millisecond, and turns of one conversation must
//! not interleave anyway, so a finer scheme would buy nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::dialogue::{Assistant, DialogueError, Session, Turn};
use crate::event_log::{EventLog, Numbered, Resumed};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, TurnRecord};
use crate::vehicle::Vehicle;
pub use outbox::Outbox;

mod outbox;
use daemon::heartbeat::{Heartbeat, Heartbeats};
use models::Intent;

/// Conversations kept in memory at once; the least recently used goes first
/// (its history stays in the store).
const MAX_OPEN_CONVERSATIONS: usize = 1024;

/// An answered turn as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct AskResponse {
    pub turn_id: uuid::Uuid,
    #[serde(flatten)]
    pub turn: Turn,
}

/// What `/v1/events` carries.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An answer that was not ready when its request returned (202).
    Answer(Box<AskResponse>),
    /// A turn's request failed after its request returned.
    AnswerFailed {
        turn_id: uuid::Uuid,
        conversation_id: String,
        error: String,
    },
    /// A queued request left the outbox undelivered (expired, or evicted when the
    /// queue was full); its driver must be told.
    Dropped(crate::store::Dropped),
    /// An answer from the cloud to an escalation of this conversation.
    Response {
        conversation_id: String,
        in_reply_to: uuid::Uuid,
        text: String,
        actions: Vec<protocol::Action>,
        #[serde(skip_serializing_if = "Option::is_none")]
        handoff: Option<protocol::Handoff>,
        /// Who wrote it: `bedrock:<model>`, `local` (no model), `agent:<name>`.
        #[serde(skip_serializing_if = "Option::is_none")]
        answered_by: Option<String>,
    },
    /// The uplink's connection changed.
    Uplink { state: UplinkState },
    /// A request for the cloud changed state: `pending` (queued in the car),
    /// `sent` (the broker took it), `received` (the cloud acknowledged it); its
    /// answer comes as a `response`.
    Escalation {
        conversation_id: String,
        escalation_id: i64,
        intent: String,
        status: String,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Answer(_) => "answer",
            Event::AnswerFailed { .. } => "answer_failed",
            Event::Dropped(_) => "dropped",
            Event::Response { .. } => "response",
            Event::Uplink { .. } => "uplink",
            Event::Escalation { .. } => "escalation",
        }
    }

    /// The conversation an event belongs to; `None` for events of the whole car
    /// (the uplink's state), which every subscriber gets.
    pub fn conversation_id(&self) -> Option<&str> {
        match self {
            Event::Answer(a) => Some(&a.turn.conversation_id),
            Event::Dropped(d) => Some(&d.conversation_id),
            Event::Response { conversation_id, .. }
            | Event::AnswerFailed { conversation_id, .. }
            | Event::Escalation { conversation_id, .. } => Some(conversation_id),
            Event::Uplink { .. } => None,
        }
    }
}

struct Mutable {
    vehicle: Vehicle,
    store: Store,
    sessions: HashMap<String, (Session, Instant)>,
}

pub struct Engine {
    assistant: Assistant,
    mutable: Mutex<Mutable>,
    events: EventLog<Event>,
    pub metrics: Metrics,
    started: Instant,
    uplink: Mutex<UplinkState>,
    /// The broker granted every subscription of the current connection.
    uplink_subscribed: std::sync::atomic::AtomicBool,
    /// Anonymous counters since the last batch went up.
    analytics: Mutex<crate::analytics::Analytics>,
    /// Wakes the uplink when something is queued.
    outbox_changed: tokio::sync::Notify,
    /// The loops' heartbeats, for the systemd watchdog.
    heartbeats: Heartbeats,
    /// Every turn is a task of this loop: one that never finishes makes it stale.
    inference: Heartbeat,
}

/// What the watchdog's inference probe classifies.
const INFERENCE_PROBE: &str = "how much range do I have left";

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("assistant", &self.assistant).finish()
    }
}

/// Facts for `/v1/health`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`, or `degraded` (answers go on; see `reason`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub model: ModelHealth,
    pub knowledge: KnowledgeHealth,
    pub uplink: UplinkHealth,
    pub state: crate::store::StateHealth,
    pub pending_escalations: usize,
    pub open_conversations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelHealth {
    pub encoder: String,
    pub dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeHealth {
    pub pack: String,
    pub version: u64,
    pub articles: usize,
    /// The fleet bundle answering, when one was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_version: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UplinkHealth {
    pub state: UplinkState,
    /// The broker granted the subscriptions of this connection: the cloud's
    /// answers and acknowledgements can arrive.
    pub subscribed: bool,
}

/// Where the uplink stands; escalations wait in the outbox whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkState {
    NotConfigured,
    Connecting,
    Connected,
    Disconnected,
}

impl Engine {
    pub fn new(assistant: Assistant, vehicle: Vehicle, mut store: Store) -> Engine {
        // The low bits of a v7 uuid are random: this boot's ids are not the last one's.
        let events = EventLog::new(uuid::Uuid::now_v7().as_u128() as u32);
        let heartbeats = Heartbeats::default();
        let metrics = Metrics::new();
        store.count_failures_in(metrics.state_write_failures.clone());
        Engine {
            assistant,
            mutable: Mutex::new(Mutable {
                vehicle,
                store,
                sessions: HashMap::new(),
            }),
            events,
            metrics,
            started: Instant::now(),
            uplink: Mutex::new(UplinkState::NotConfigured),
            uplink_subscribed: std::sync::atomic::AtomicBool::new(false),
            analytics: Mutex::new(crate::analytics::Analytics::default()),
            outbox_changed: tokio::sync::Notify::new(),
            inference: heartbeats.register("inference"),
            heartbeats,
        }
    }

    /// The heartbeats of the daemon's loops; inference is registered from the start.
    pub fn heartbeats(&self) -> &Heartbeats {
        &self.heartbeats
    }

    /// Runs the classifier on a fixed utterance, as a driver's turn would, and
    /// counts as inference showing life (the watchdog's probe; blocking).
    pub fn probe_inference(&self) -> Result<(), models::ModelError> {
        let _task = self.inference.task();
        self.assistant.classifier().classify(INFERENCE_PROBE)?;
        Ok(())
    }

    pub fn assistant(&self) -> &Assistant {
        &self.assistant
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Numbered<Event>> {
        self.events.subscribe()
    }

    /// The events after `last_seen` (a client's `Last-Event-ID`), then the live stream.
    pub fn resume_events(&self, last_seen: &str) -> Resumed<Event> {
        self.events.resume(last_seen)
    }

    pub fn publish(&self, event: Event) {
        if let Event::Dropped(dropped) = &event {
            let reason = serde_json::to_value(dropped.reason).ok();
            let reason = reason
                .as_ref()
                .and_then(|r| r.as_str())
                .unwrap_or("unknown")
                .to_string();
            self.metrics
                .outbox_dropped
                .get_or_create(&crate::metrics::DropLabels { reason })
                .inc();
        }
        self.events.publish(event);
    }

    /// Answers one turn (blocking).
    pub fn ask(&self, turn_id: uuid::Uuid, conversation_id: &str, text: &str) -> Result<AskResponse, DialogueError> {
        let started = Instant::now();
        let _task = self.inference.task();
        let mut guard = self.locked();
        let m = &mut *guard;
        m.vehicle.refresh();
        if !m.sessions.contains_key(conversation_id) && m.sessions.len() >= MAX_OPEN_CONVERSATIONS {
            if let Some(oldest) = m
                .sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                m.sessions.remove(&oldest);
            }
        }
        let (session, used) = m
            .sessions
            .entry(conversation_id.to_string())
            .or_insert_with(|| (Session::new(conversation_id), Instant::now()));
        *used = Instant::now();
        crate::failpoint::hit("inference:wedge");
        let turn = self.assistant.respond(session, m.vehicle.state(), &m.store, text)?;
        self.observe_state(&m.store.health());
        drop(guard);
        self.metrics.turn(&turn, started.elapsed());
        self.analytics
            .lock()
            .expect("analytics mutex")
            .record(&turn, started.elapsed());
        for dropped in &turn.dropped {
            self.publish(Event::Dropped(dropped.clone()));
        }
        if turn.escalation.is_some() {
            self.outbox_changed.notify_one();
        }
        if let Some(receipt) = &turn.escalation {
            self.publish(Event::Escalation {
                conversation_id: conversation_id.to_string(),
                escalation_id: receipt.id,
                intent: turn.understood.intent.as_str().to_string(),
                status: receipt.status.to_string(),
            });
        }
        Ok(AskResponse { turn_id, turn })
    }

    pub fn conversation(&self, conversation_id: &str) -> Result<Vec<TurnRecord>, StoreError> {
        self.locked().store.turns(conversation_id)
    }

    /// Forgets one conversation; true when there was something to forget.
    pub fn forget(&self, conversation_id: &str) -> Result<bool, StoreError> {
        let mut m = self.locked();
        let in_memory = m.sessions.remove(conversation_id).is_some();
        Ok(m.store.forget(conversation_id)? > 0 || in_memory)
    }

    /// A change of owner: all history and every unsent escalation.
    pub fn forget_everything(&self) -> Result<(), StoreError> {
        let mut m = self.locked();
        m.sessions.clear();
        m.store.forget_everything()
    }

    /// True when the cloud's message `envelope_id` was seen before and the answer
    /// to `in_reply_to` is recorded (or no delivered row is kept for it).
    fn already_taken(&self, envelope_id: &uuid::Uuid, in_reply_to: &uuid::Uuid, now: jiff::Timestamp) -> bool {
        let m = self.locked();
        if !matches!(m.store.first_sight(envelope_id, now), Ok(false)) {
            return false;
        }
        !matches!(m.store.answer_recorded(in_reply_to), Ok(Some(false)))
    }

    /// The cloud answered an escalation: into the conversation's history, and out
    /// on `/v1/events` (blocking).
    /// Returns the outbox row the answer acknowledged, if it was still queued.
    /// A message taken before (by its envelope id, across restarts) is dropped,
    /// unless the answer it carries was never recorded (the car stopped between
    /// seeing it and recording it): then the cloud's copy is taken again.
    pub fn deliver_response(
        &self,
        envelope_id: uuid::Uuid,
        envelope_conversation: Option<String>,
        response: protocol::Response,
    ) -> Option<i64> {
        let now = jiff::Timestamp::now();
        if self.already_taken(&envelope_id, &response.in_reply_to, now) {
            tracing::debug!(%envelope_id, "a response already taken was dropped");
            return None;
        }
        // An answer is also an acknowledgement (a cloud older than 1.3 sends no
        // other, and an `ack` may have been lost).
        let acknowledged = self
            .outbox()
            .acknowledged(&response.in_reply_to)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "an answered escalation could not leave the outbox: it will be sent again");
                None
            });
        let mut m = self.locked();
        if let Err(error) = m.store.answered(&response.in_reply_to, now) {
            tracing::warn!(%error, "an answer could not be marked: the cloud may be asked for it again");
        }
        let known = m
            .store
            .delivered_escalation(&response.in_reply_to)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot look up the escalation answered");
                None
            });
        let Some((conversation_id, intent)) =
            known.or_else(|| envelope_conversation.map(|c| (c, "out_of_scope".into())))
        else {
            tracing::warn!(in_reply_to = %response.in_reply_to, "a response to no known escalation was ignored");
            return acknowledged;
        };
        let record = TurnRecord {
            at: now.to_string(),
            text: String::new(),
            answer: response.text.clone(),
            intent,
            intent_confidence: 1.0,
            sentiment: "neutral".to_string(),
            sentiment_score: 0.0,
            route: "cloud".to_string(),
            sources: Vec::new(),
            escalation_id: None,
            from_cloud: true,
        };
        if let Err(error) = m.store.record_turn(&conversation_id, &record, now) {
            tracing::error!(%error, "the cloud's answer could not be kept in the history");
        }
        if asks_the_driver(&response) {
            if let Some((session, _)) = m.sessions.get_mut(&conversation_id) {
                let about = record.intent.parse().unwrap_or(Intent::OutOfScope);
                session.cloud_asked(about, &response.text);
            }
        }
        drop(m);
        self.publish(Event::Response {
            conversation_id,
            in_reply_to: response.in_reply_to,
            text: response.text,
            actions: response.actions,
            handoff: response.handoff,
            answered_by: response.answered_by,
        });
        acknowledged
    }

    /// Takes the counters for a batch, starting a new period (empty: `None`).
    pub fn take_analytics(&self) -> Option<crate::analytics::Analytics> {
        let mut analytics = self.analytics.lock().expect("analytics mutex");
        if analytics.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *analytics))
    }

    /// Puts back counters whose batch was not acknowledged.
    pub fn restore_analytics(&self, batch: crate::analytics::Analytics) {
        self.analytics.lock().expect("analytics mutex").merge(batch);
    }

    pub fn uplink_state(&self) -> UplinkState {
        *self.uplink.lock().expect("uplink mutex")
    }

    /// Whether the broker granted the uplink's subscriptions (responses, fleet
    /// notices) on the current connection.
    pub fn uplink_subscribed(&self) -> bool {
        self.uplink_subscribed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_uplink_subscribed(&self, subscribed: bool) {
        self.uplink_subscribed
            .store(subscribed, std::sync::atomic::Ordering::Relaxed);
        self.metrics.uplink_subscribed.set(i64::from(subscribed));
    }

    pub fn set_uplink_state(&self, state: UplinkState) {
        if state != UplinkState::Connected {
            self.set_uplink_subscribed(false);
        }
        let previous = std::mem::replace(&mut *self.uplink.lock().expect("uplink mutex"), state);
        if previous != state {
            self.metrics
                .uplink_connected
                .set(i64::from(state == UplinkState::Connected));
            tracing::info!(?state, "uplink");
            self.publish(Event::Uplink { state });
        }
    }

    fn publish_status(&self, row: crate::store::Outboxed, status: &str) {
        self.publish(Event::Escalation {
            conversation_id: row.conversation_id,
            escalation_id: row.id,
            intent: row.intent,
            status: status.to_string(),
        });
    }

    /// The vehicle, the store and the open conversations, under the one lock.
    fn locked(&self) -> std::sync::MutexGuard<'_, Mutable> {
        self.mutable.lock().expect("engine mutex")
    }

    /// The outbox the uplink drains ([`Outbox`]).
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox { engine: self }
    }

    /// The state's gauges.
    fn observe_state(&self, state: &crate::store::StateHealth) {
        self.metrics.state_degraded.set(i64::from(!state.writable));
        self.metrics.spooled_escalations.set(state.spooled as i64);
    }

    pub fn health(&self) -> Result<Health, StoreError> {
        let m = self.locked();
        let state = m.store.health();
        self.observe_state(&state);
        let pending = m.store.pending_count().unwrap_or_else(|error| {
            tracing::warn!(%error, "the outbox cannot be counted");
            state.spooled
        });
        self.metrics.pending_escalations.set(pending as i64);
        let classifier = self.assistant.classifier();
        let knowledge = self.assistant.knowledge();
        let kb = knowledge.info();
        let reason = state.problem.as_ref().map(|problem| {
            format!("the state database cannot be written ({problem}): answers go on, escalations wait in the spool")
        });
        Ok(Health {
            status: if reason.is_some() { "degraded" } else { "ok" },
            reason,
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            model: ModelHealth {
                encoder: classifier.manifest().encoder.to_string(),
                dir: classifier.dir().display().to_string(),
            },
            knowledge: KnowledgeHealth {
                pack: kb.name.clone(),
                version: kb.version,
                articles: kb.articles,
                bundle_version: kb.bundle_version,
            },
            uplink: UplinkHealth {
                state: self.uplink_state(),
                subscribed: self.uplink_subscribed(),
            },
            state,
            pending_escalations: pending,
            open_conversations: m.sessions.len(),
        })
    }
}

/// A final answer from the cloud that asks the driver something ("shall I book
/// it?"): the driver's next yes or no is the reply. Status updates while a
/// person is awaited are not questions.
fn asks_the_driver(response: &protocol::Response) -> bool {
    !response.more_to_come && response.handoff.is_none() && response.text.trim_end().ends_with('?')
}
