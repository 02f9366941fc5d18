//! The pusher: drains the outbox into the link, urgent first, within the
//! in-flight window, the cloud's acknowledgement window and the publish throttle.
//! Its state says whether there may be something to send now ([`Push`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Body, Envelope};

use super::awaiting::AwaitingCloud;
use super::link::MqttLink;
use super::{Tag, Tags, UplinkError};
use crate::config::UplinkConfig;
use crate::engine::Engine;
use crate::store::{PendingEscalation, Priority};

/// Whether the pusher should look at the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Push {
    /// Nothing is sendable: the window is full, or the outbox was drained.
    Idle,
    /// Something may be sendable: connected, a slot freed, a row queued.
    Due,
    /// Rows wait for the publish throttle, which opens at this instant.
    Throttled(tokio::time::Instant),
}

/// One connection's pusher.
pub(super) struct Pusher {
    pub(super) state: Push,
    /// Outbox rows published on this connection and not yet taken by the broker.
    pub(super) in_flight: HashSet<i64>,
    /// The publish throttle: no publish before this.
    next_publish: tokio::time::Instant,
    /// Expiry is checked at send time, at most once a second.
    last_expiry: Option<tokio::time::Instant>,
}

impl Pusher {
    pub(super) fn new() -> Pusher {
        Pusher {
            state: Push::Due,
            in_flight: HashSet::new(),
            next_publish: tokio::time::Instant::now(),
            last_expiry: None,
        }
    }

    /// Something may have become sendable. A throttled pusher waits for its
    /// throttle all the same.
    pub(super) fn wake(&mut self) {
        if self.state == Push::Idle {
            self.state = Push::Due;
        }
    }

    /// When the throttle opens, if the pusher is waiting for it.
    pub(super) fn throttled_until(&self) -> Option<tokio::time::Instant> {
        match self.state {
            Push::Throttled(until) => Some(until),
            Push::Idle | Push::Due => None,
        }
    }

    /// The broker took a row: its slot in the window is free.
    pub(super) fn broker_took(&mut self, id: i64) {
        self.in_flight.remove(&id);
        self.wake();
    }

    /// Fills the in-flight window from the outbox, urgent first.
    pub(super) async fn push<L: MqttLink>(
        &mut self,
        link: &mut L,
        tags: &mut Tags,
        engine: &Arc<Engine>,
        config: &UplinkConfig,
        topic: &str,
        awaiting: &mut AwaitingCloud,
    ) -> Result<(), UplinkError> {
        let free = usize::from(config.inflight).saturating_sub(self.in_flight.len());
        if free == 0 {
            self.state = Push::Idle;
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        let mut held = awaiting.held(now);
        held.extend(self.in_flight.iter().copied());
        let pending = self.next_rows(engine, free, held).await?;
        // Everything sendable is sent unless the throttle stops us first.
        self.state = Push::Idle;
        let min_interval = (config.publish_per_second > 0).then(|| Duration::from_secs(1) / config.publish_per_second);
        let mut sent = HashSet::new();
        for row in pending {
            // Only so many wait for the cloud at once; an emergency always goes.
            let new = !awaiting.contains(row.id);
            if new && row.priority == Priority::Normal && awaiting.len() >= config.ack_window {
                continue;
            }
            if let Some(interval) = min_interval {
                let now = tokio::time::Instant::now();
                if now < self.next_publish {
                    self.state = Push::Throttled(self.next_publish);
                    break;
                }
                self.next_publish = now.max(self.next_publish) + interval;
            }
            let Some(bytes) = encode_or_refuse(engine, &row, &config.thing_name).await else {
                continue;
            };
            link.publish(topic, bytes)?;
            tags.published(Tag::Escalation(row.id));
            self.in_flight.insert(row.id);
            awaiting.published(row.id);
            sent.insert(row.id);
        }
        // A row whose time came but was not sent has left the outbox, or waits
        // its turn as any queued row does: either way it needs no timer.
        awaiting.forget_due_unsent(now, &sent);
        Ok(())
    }

    /// The next `free` rows not `held`, after dropping the expired (at most once a
    /// second). The outbox is SQLite: off the async workers.
    async fn next_rows(
        &mut self,
        engine: &Arc<Engine>,
        free: usize,
        held: HashSet<i64>,
    ) -> Result<Vec<PendingEscalation>, UplinkError> {
        let expire = self.last_expiry.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if expire {
            self.last_expiry = Some(tokio::time::Instant::now());
        }
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || {
            if expire {
                // A database that cannot be written still lets the spool go.
                if let Err(error) = engine.outbox().expire() {
                    tracing::warn!(%error, "expired escalations could not be removed");
                }
            }
            engine.outbox().next(free, &held)
        })
        .await
        .map_err(|e| UplinkError::Request(e.to_string()))?
        .map_err(|e| UplinkError::Request(e.to_string()))
    }
}

/// The row's wire form; a row that can never be sent is dropped, and its driver
/// told.
async fn encode_or_refuse(engine: &Arc<Engine>, row: &PendingEscalation, thing: &str) -> Option<Vec<u8>> {
    match envelope_for(row, thing) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(id = row.id, %error, "an escalation can never be sent: dropped, and its driver told");
            let engine = engine.clone();
            let id = row.id;
            let _ = tokio::task::spawn_blocking(move || engine.outbox().refuse(id)).await;
            None
        }
    }
}

/// The wire form of an outbox row: its own message id on every attempt, so the
/// receiver can drop repeats.
pub(super) fn envelope_for(row: &PendingEscalation, thing: &str) -> Result<Vec<u8>, protocol::ProtocolError> {
    let escalation: protocol::Escalation = serde_json::from_value(row.payload.clone())
        .map_err(|e| protocol::ProtocolError::Invalid(format!("outbox row {}: {e}", row.id)))?;
    let mut envelope = Envelope::new(thing, Some(&row.conversation_id), Body::Escalation(escalation)).with_new_trace();
    if let Some(id) = row.message_id {
        envelope.message_id = id;
    }
    let (bytes, trimmed) = protocol::encode_escalation(&mut envelope)?;
    if trimmed > 0 {
        tracing::info!(id = row.id, trimmed, "oldest turns trimmed to fit the publish limit");
    }
    Ok(bytes)
}
