//! The outbox as the uplink sees it: the next rows to send, and what became of
//! them (sent, acknowledged, refused, expired), each change told to the driver
//! as an event. The dialogue writes escalations into the same store; the
//! engine's lock orders the two.

use std::collections::HashSet;

use super::{Engine, Event};
use crate::store::{PendingEscalation, StoreError};

/// A view of the engine's outbox (blocking calls: SQLite).
#[derive(Clone, Copy)]
pub struct Outbox<'a> {
    pub(super) engine: &'a Engine,
}

impl<'a> Outbox<'a> {
    /// Resolves when something was queued or left the queue.
    pub fn changed(self) -> tokio::sync::futures::Notified<'a> {
        self.engine.outbox_changed.notified()
    }

    /// The next rows to send, skipping
    /// those in flight, at most `free` of them. Only ids are read until the
    /// choice is made, so a long queue or a full window costs little.
    pub fn next(&self, free: usize, in_flight: &HashSet<i64>) -> Result<Vec<PendingEscalation>, StoreError> {
        let m = self.engine.locked();
        let ids: Vec<i64> = m
            .store
            .next_pending_ids(free + in_flight.len())?
            .into_iter()
            .filter(|id| !in_flight.contains(id))
            .take(free)
            .collect();
        m.store.pending_by_ids(&ids)
    }

    /// The broker took a row (its PUBACK): the driver's request is `sent`. It
    /// stays in the outbox until the cloud acknowledges it.
    pub fn sent(&self, id: i64) -> Result<(), StoreError> {
        let row = self.engine.locked().store.mark_sent(id, jiff::Timestamp::now())?;
        if let Some(row) = row {
            self.engine.publish_status(row, "sent");
        }
        Ok(())
    }

    /// The cloud acknowledged an escalation: it leaves the outbox, and its driver's
    /// request is `received`. The row's id, or `None` for a repeated acknowledgement.
    pub fn acknowledged(&self, message_id: &uuid::Uuid) -> Result<Option<i64>, StoreError> {
        let row = self.engine.locked().store.acknowledged(message_id)?;
        Ok(row.map(|row| {
            let id = row.id;
            self.engine.publish_status(row, "received");
            self.engine.outbox_changed.notify_one();
            id
        }))
    }

    /// Acknowledged escalations still without an answer after `wait_ms` (the
    /// wait doubling each time): the uplink asks for them again (blocking).
    pub fn unanswered(&self, wait_ms: i64, limit: usize) -> Result<Vec<PendingEscalation>, StoreError> {
        self.engine
            .locked()
            .store
            .unanswered_due(jiff::Timestamp::now(), wait_ms, 12, limit)
    }

    /// Removes a row that can never be sent, and tells its driver.
    pub fn refuse(&self, id: i64) -> Result<(), StoreError> {
        let dropped = self.engine.locked().store.refuse(id)?;
        if let Some(dropped) = dropped {
            self.engine.publish(Event::Dropped(dropped));
        }
        Ok(())
    }

    /// Drops what has outlived its time to live, and tells the drivers.
    pub fn expire(&self) -> Result<usize, StoreError> {
        let expired = self.engine.locked().store.expire_due(jiff::Timestamp::now())?;
        for dropped in &expired {
            tracing::info!(id = dropped.id, intent = %dropped.intent, "expired before it could be sent");
            self.engine.publish(Event::Dropped(dropped.clone()));
        }
        Ok(expired.len())
    }
}
