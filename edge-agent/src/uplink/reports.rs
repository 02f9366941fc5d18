//! What the uplink sends besides escalations: the analytics batch, the car's
//! status (and the knowledge shadow) for fleet ops, and acknowledged escalations
//! asked again for their answer.

use std::sync::Arc;

use protocol::{Body, Envelope};
use tokio::time::Instant;

use super::link::MqttLink;
use super::pusher::envelope_for;
use super::tags::Tag;
use super::{Connection, FleetLink, Uplink, UplinkError};
use crate::engine::Engine;
use crate::fleet::KnowledgeReport;

/// Resolves when the updater's report changed or the periodic report is due;
/// an error when the updater has stopped. Only polled with a fleet link.
pub(super) async fn changed_or_due(fleet: Option<&mut FleetLink>, due: Instant) -> Result<(), ()> {
    let Some(fleet) = fleet else {
        return std::future::pending().await;
    };
    tokio::select! {
        changed = fleet.reports.changed() => changed.map_err(|_| ()),
        () = tokio::time::sleep_until(due) => Ok(()),
    }
}

impl Uplink {
    /// Sends the analytics batch, unless one still awaits its PUBACK.
    pub(super) fn send_analytics<L: MqttLink>(
        &mut self,
        conn: &mut Connection,
        link: &mut L,
    ) -> Result<(), UplinkError> {
        self.next_analytics = Instant::now() + self.analytics_every.unwrap_or_default();
        if conn.analytics_in_flight.is_some() {
            return Ok(());
        }
        let Some(batch) = self.engine.take_analytics() else {
            return Ok(());
        };
        let body = Body::AnalyticsBatch(batch.batch(jiff::Timestamp::now()));
        match protocol::encode(&Envelope::new(&self.config.thing_name, None, body)) {
            Ok(bytes) => {
                if let Err(e) = link.publish(&self.topics.analytics, bytes) {
                    self.engine.restore_analytics(batch);
                    return Err(e);
                }
                conn.tags.published(Tag::AnalyticsBatch);
                conn.analytics_in_flight = Some(batch);
            }
            Err(error) => tracing::error!(%error, "analytics batch not sent"),
        }
        Ok(())
    }

    /// Sends the fleet report now (`changed` is an error once the updater has
    /// stopped: then nothing more is reported).
    pub(super) async fn send_fleet_report<L: MqttLink>(
        &mut self,
        changed: Result<(), ()>,
        conn: &mut Connection,
        link: &mut L,
    ) -> Result<(), UplinkError> {
        if changed.is_err() {
            self.fleet = None;
            return Ok(());
        }
        let Some(fleet) = self.fleet.as_mut() else {
            return Ok(());
        };
        self.next_report = Instant::now() + fleet.report_every;
        let report = fleet.reports.borrow_and_update().clone();
        let shadow = fleet.shadow.then_some(self.topics.shadow.as_str());
        let status_topic = &self.topics.status;
        let sent = send_report(
            link,
            &self.engine,
            &self.config.thing_name,
            status_topic,
            shadow,
            &report,
        )
        .await?;
        for _ in 0..sent {
            conn.tags.published(Tag::StatusReport);
        }
        Ok(())
    }

    /// Asks again for the answers of acknowledged escalations that have none
    /// after `answer_timeout_ms` (same message id).
    pub(super) async fn ask_again<L: MqttLink>(&mut self, conn: &mut Connection, link: &mut L) {
        self.next_ask_again = Instant::now() + self.ask_again_every;
        let engine = self.engine.clone();
        let wait_ms = self.config.answer_timeout_ms as i64;
        let limit = usize::from(self.config.inflight);
        let due = tokio::task::spawn_blocking(move || engine.outbox().unanswered(wait_ms, limit)).await;
        for row in due.ok().and_then(Result::ok).unwrap_or_default() {
            let Ok(bytes) = envelope_for(&row, &self.config.thing_name) else {
                continue;
            };
            // A refused publish shows as the link's error on its next event.
            if link.publish(&self.topics.escalations, bytes).is_err() {
                break;
            }
            conn.tags.published(Tag::AskedAgain);
        }
    }
}

/// Publishes the car's status (and the knowledge shadow, when asked); returns how
/// many publishes await a PUBACK.
async fn send_report<L: MqttLink>(
    link: &mut L,
    engine: &Arc<Engine>,
    thing: &str,
    status_topic: &str,
    shadow_topic: Option<&str>,
    report: &KnowledgeReport,
) -> Result<usize, UplinkError> {
    let e = engine.clone();
    let queued = tokio::task::spawn_blocking(move || e.health().map(|h| h.pending_escalations).unwrap_or(0))
        .await
        .unwrap_or(0);
    let status = protocol::Status {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        knowledge_version: report.version,
        knowledge_failure: report.failure.as_ref().map(|f| f.reason.clone()),
        queued_escalations: queued as u64,
        knowledge_applied_at: report.applied_at,
        knowledge_failure_version: report.failure.as_ref().and_then(|f| f.version),
        knowledge_failure_at: report.failure.as_ref().map(|f| f.at),
    };
    let envelope = Envelope::new(thing, None, Body::Status(status));
    let bytes = protocol::encode(&envelope).map_err(|e| UplinkError::Request(e.to_string()))?;
    link.publish(status_topic, bytes)?;
    let mut sent = 1;
    if let Some(topic) = shadow_topic {
        link.publish(topic, report.shadow_update().to_string().into_bytes())?;
        sent += 1;
    }
    Ok(sent)
}
