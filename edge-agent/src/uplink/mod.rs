//! The uplink: delivers the outbox to the cloud over MQTT and brings responses
//! back.
//!
//! MQTT 3.1.1 on purpose: the car needs QoS 1, a persistent session and retained
//! fleet manifests, all of which 3.1.1 has and IoT Core supports, and rumqttc's
//! 3.1.1 client is its most exercised. MQTT 5's shared subscriptions are needed
//! by cloud-bridge, not the car, and IoT Core bridges the two versions.
//!
//! Traps of rumqttc 0.25 this module is built around (see
//! `shared/research/cloud-sync-anchors.md`):
//! - `publish()` returns no packet id: rows are paired with PUBACKs through the
//!   order of `Outgoing::Publish(pkid)` events, with few messages in flight;
//! - its in-memory pending queue is dropped when the broker has no session, and a
//!   reused event loop may still hold requests from before a disconnect: so each
//!   connection gets a fresh client and event loop, and after every CONNACK every
//!   unacknowledged row of the outbox is sent again (at least once; receivers
//!   deduplicate on `message_id`);
//! - `poll()` has no backoff: a failed connection waits a jittered exponential
//!   delay here (`daemon::backoff`) (IoT Core also refuses more than one CONNECT/s per client id);
//! - the default maximum packet is 10 KiB and an oversize publish kills the
//!   connection: the limit is raised to IoT Core's, and `protocol` refuses or
//!   trims anything bigger before it is published;
//! - `publish().await` blocks on a full request channel: `try_publish` is used.
//!
//! A broker's PUBACK means the broker has the escalation, not the cloud (a broker
//! restart can lose a shared subscription, and with it every message the broker
//! acknowledged). So a row leaves the outbox only when cloud-bridge acknowledges
//! it (`protocol::Ack`, or its answer): the PUBACK only marks it `sent`. Until the
//! cloud's acknowledgement it is sent again with the same `message_id`, after a
//! timeout that doubles per attempt and after every reconnect ([`AwaitingCloud`]).

mod awaiting;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
mod link;
mod pusher;
mod reports;
mod tags;

use std::sync::Arc;
use std::time::Duration;

use daemon::backoff::Backoff;
use daemon::heartbeat::Heartbeat;
use protocol::{Body, Topics};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::analytics::Analytics;
use crate::config::UplinkConfig;
use crate::engine::{Engine, UplinkState};
use awaiting::{AwaitingCloud, SeenIds};
pub use link::{Connector, LinkEvent, MqttLink, RumqttcConnector, RumqttcLink};
use pusher::{Push, Pusher};
use tags::{Tag, Tags};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink: {0}")]
    Config(String),
    #[error("MQTT connection: {0}")]
    Connection(String),
    #[error("MQTT request refused locally: {0}")]
    Request(String),
}

/// The uplink's part in fleet knowledge updates: notices from the channel's
/// retained topic go to the updater, and what it reports goes up.
#[derive(Debug)]
pub struct FleetLink {
    /// `<prefix>/fleet/<channel>/knowledge`, subscribed by its exact name.
    pub topic: String,
    pub notices: tokio::sync::mpsc::Sender<Vec<u8>>,
    pub reports: tokio::sync::watch::Receiver<crate::fleet::KnowledgeReport>,
    /// Also update the IoT Core named shadow `knowledge`.
    pub shadow: bool,
    /// The report is sent on connecting, on every change, and this often, so a
    /// report the cloud missed (it was down) is made good.
    pub report_every: Duration,
}

/// Runs the uplink until `shutdown`: one connection at a time, each fresh, with
/// a jittered backoff between them and never two CONNECTs closer than
/// `min_connect_interval_ms`.
pub async fn run<C: Connector>(
    mut connector: C,
    engine: Arc<Engine>,
    config: UplinkConfig,
    fleet: Option<FleetLink>,
    shutdown: CancellationToken,
) -> Result<(), UplinkError> {
    let mut uplink = Uplink::new(engine, config, fleet)?;
    // The loop beats while it awaits the link (and its backoffs), so a loop stuck
    // anywhere else falls silent. The beat adds no branch to the select: the
    // link's future is cancelled no more often than before.
    let heartbeat = uplink.engine.heartbeats().register("uplink");
    let min_connect_interval = Duration::from_millis(uplink.config.min_connect_interval_ms);
    let mut last_connect: Option<Instant> = None;
    loop {
        if let Some(last) = last_connect {
            if stopped_while_waiting(&heartbeat, &shutdown, last + min_connect_interval).await {
                return Ok(());
            }
        }
        last_connect = Some(Instant::now());
        uplink.engine.set_uplink_state(UplinkState::Connecting);
        let ended = uplink.connection(connector.connect(), &heartbeat, &shutdown).await;
        uplink.engine.set_uplink_state(UplinkState::Disconnected);
        let Some(error) = ended else {
            return Ok(());
        };
        let delay = uplink.backoff.next_delay();
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "uplink disconnected");
        if stopped_while_waiting(&heartbeat, &shutdown, Instant::now() + delay).await {
            return Ok(());
        }
    }
}

/// Waits until `until`, beating; true when `shutdown` came first.
async fn stopped_while_waiting(heartbeat: &Heartbeat, shutdown: &CancellationToken, until: Instant) -> bool {
    heartbeat
        .waiting(async {
            tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep_until(until) => false,
            }
        })
        .await
}

/// The car's topics, resolved once.
struct UplinkTopics {
    escalations: String,
    responses: String,
    status: String,
    shadow: String,
    analytics: String,
}

impl UplinkTopics {
    fn new(config: &UplinkConfig) -> Result<UplinkTopics, protocol::ProtocolError> {
        let topics = Topics::new(&config.topic_prefix)?;
        let thing = &config.thing_name;
        Ok(UplinkTopics {
            escalations: topics.escalations(thing)?,
            responses: topics.responses(thing)?,
            status: topics.status(thing)?,
            shadow: topics.knowledge_shadow(thing, "update")?,
            analytics: topics.analytics(thing)?,
        })
    }
}

/// What lives across connections.
struct Uplink {
    engine: Arc<Engine>,
    config: UplinkConfig,
    topics: UplinkTopics,
    fleet: Option<FleetLink>,
    awaiting: AwaitingCloud,
    seen: SeenIds,
    backoff: Backoff,
    analytics_every: Option<Duration>,
    next_analytics: Instant,
    next_report: Instant,
    ask_again_every: Duration,
    next_ask_again: Instant,
}

/// The bookkeeping of one connection.
struct Connection {
    connected: bool,
    tags: Tags,
    pusher: Pusher,
    /// The analytics batch awaiting its PUBACK.
    analytics_in_flight: Option<Analytics>,
    /// SUBACKs still to come before the car counts as subscribed (`usize::MAX`
    /// after a refusal: not subscribed on this connection).
    subacks_awaited: usize,
}

impl Uplink {
    fn new(engine: Arc<Engine>, config: UplinkConfig, fleet: Option<FleetLink>) -> Result<Uplink, UplinkError> {
        let topics = UplinkTopics::new(&config).map_err(|e| UplinkError::Config(e.to_string()))?;
        let analytics_every =
            (config.analytics_interval_seconds > 0).then(|| Duration::from_secs(config.analytics_interval_seconds));
        let backoff = Backoff::new(
            Duration::from_millis(config.backoff_initial_ms),
            Duration::from_millis(config.backoff_max_ms.max(config.backoff_initial_ms)),
            u64::from(std::process::id()) ^ jiff::Timestamp::now().as_nanosecond() as u64,
        );
        let ask_again_every = Duration::from_millis((config.answer_timeout_ms / 2).max(100));
        let now = Instant::now();
        Ok(Uplink {
            awaiting: AwaitingCloud::new(&config, u64::from(std::process::id()).rotate_left(17)),
            seen: SeenIds::default(),
            backoff,
            next_analytics: now + analytics_every.unwrap_or(Duration::ZERO),
            analytics_every,
            next_report: now,
            ask_again_every,
            next_ask_again: now + ask_again_every,
            engine,
            config,
            topics,
            fleet,
        })
    }

    /// Serves one connection until it fails (its error) or `shutdown` (`None`).
    async fn connection<L: MqttLink>(
        &mut self,
        mut link: L,
        heartbeat: &Heartbeat,
        shutdown: &CancellationToken,
    ) -> Option<UplinkError> {
        let mut conn = Connection {
            connected: false,
            tags: Tags::default(),
            pusher: Pusher::new(),
            analytics_in_flight: None,
            subacks_awaited: 0,
        };
        let ended = loop {
            if conn.connected && conn.pusher.state == Push::Due {
                let pushed = conn
                    .pusher
                    .push(
                        &mut link,
                        &mut conn.tags,
                        &self.engine,
                        &self.config,
                        &self.topics.escalations,
                        &mut self.awaiting,
                    )
                    .await;
                if let Err(e) = pushed {
                    break Some(e);
                }
            }
            match self.next_step(&mut conn, &mut link, heartbeat, shutdown).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e),
            }
        };
        if let Some(batch) = conn.analytics_in_flight.take() {
            // Not acknowledged: its counts go into the next batch.
            self.engine.restore_analytics(batch);
        }
        ended
    }

    /// Waits for the next thing to do on the connection and does it; `false` at
    /// shutdown.
    async fn next_step<L: MqttLink>(
        &mut self,
        conn: &mut Connection,
        link: &mut L,
        heartbeat: &Heartbeat,
        shutdown: &CancellationToken,
    ) -> Result<bool, UplinkError> {
        let connected = conn.connected;
        let resend_due = self.awaiting.next_due();
        let window_open = conn.pusher.in_flight.len() < usize::from(self.config.inflight);
        let throttled_until = conn.pusher.throttled_until();
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = self.engine.outbox().changed() => conn.pusher.wake(),
            () = tokio::time::sleep_until(self.next_analytics), if connected && self.analytics_every.is_some() => {
                self.send_analytics(conn, link)?;
            }
            changed = reports::changed_or_due(self.fleet.as_mut(), self.next_report), if connected && self.fleet.is_some() => {
                self.send_fleet_report(changed, conn, link).await?;
            }
            () = tokio::time::sleep_until(throttled_until.unwrap_or_else(Instant::now)), if connected && throttled_until.is_some() => {
                conn.pusher.state = Push::Due;
            }
            // Expiry is checked at send time; a quiet outbox is looked at now and then.
            () = tokio::time::sleep(Duration::from_secs(5)) => conn.pusher.wake(),
            // An answer that has not come is asked for again (same message id):
            // the cloud sends its stored reply, which the car drops if it has it.
            () = tokio::time::sleep_until(self.next_ask_again), if connected => self.ask_again(conn, link).await,
            // An escalation the cloud has not acknowledged in time goes again.
            () = tokio::time::sleep_until(resend_due.unwrap_or_else(Instant::now)), if connected && resend_due.is_some() && window_open => {
                conn.pusher.wake();
            }
            event = heartbeat.waiting(link.next()) => self.on_link_event(event?, conn, link).await?,
        }
        Ok(true)
    }

    /// What the link reported: the connection came up, a publish left or was
    /// acknowledged, a subscription was answered, or a message arrived.
    async fn on_link_event<L: MqttLink>(
        &mut self,
        event: LinkEvent,
        conn: &mut Connection,
        link: &mut L,
    ) -> Result<(), UplinkError> {
        match event {
            LinkEvent::Connected { session_present } => self.on_connected(session_present, conn, link).await?,
            LinkEvent::Sent { pkid } => conn.tags.sent(pkid),
            LinkEvent::Subscribed { granted } => {
                conn.subacks_awaited = conn.subacks_awaited.saturating_sub(1);
                if !granted {
                    tracing::error!("the broker refused a subscription: responses or fleet notices will not arrive (check the policy)");
                    conn.subacks_awaited = usize::MAX;
                } else if conn.subacks_awaited == 0 {
                    self.engine.set_uplink_subscribed(true);
                }
            }
            LinkEvent::Acked { pkid } => self.on_acked(conn.tags.acked(pkid), conn).await,
            LinkEvent::Received { topic, payload } => self.route(&topic, payload, conn).await,
            LinkEvent::Other => {}
        }
        Ok(())
    }

    async fn on_connected<L: MqttLink>(
        &mut self,
        session_present: bool,
        conn: &mut Connection,
        link: &mut L,
    ) -> Result<(), UplinkError> {
        tracing::info!(session_present, "uplink connected");
        conn.connected = true;
        conn.pusher.wake();
        self.backoff.reset();
        self.awaiting.reconnected();
        self.engine.set_uplink_state(UplinkState::Connected);
        // Subscribed on every CONNACK, whatever the session says: a restarted
        // broker may restore a session without its subscriptions.
        self.engine.set_uplink_subscribed(false);
        link.subscribe(&self.topics.responses)?;
        conn.subacks_awaited = 1;
        if let Some(fleet) = self.fleet.as_ref() {
            link.subscribe(&fleet.topic)?;
            conn.subacks_awaited += 1;
            self.send_fleet_report(Ok(()), conn, link).await?;
        }
        Ok(())
    }

    /// A PUBACK, by what it acknowledges.
    async fn on_acked(&mut self, tag: Option<Tag>, conn: &mut Connection) {
        match tag {
            Some(Tag::StatusReport | Tag::AskedAgain) | None => {}
            Some(Tag::AnalyticsBatch) => conn.analytics_in_flight = None,
            Some(Tag::Escalation(id)) => {
                // The broker has it; the row stays until the cloud says so.
                conn.pusher.broker_took(id);
                self.awaiting.broker_took(id);
                let engine = self.engine.clone();
                let marked = tokio::task::spawn_blocking(move || engine.outbox().sent(id)).await;
                if !matches!(marked, Ok(Ok(()))) {
                    tracing::warn!(id, "sent, but its status could not be recorded");
                }
            }
        }
    }

    /// A message from the broker: the cloud's acknowledgement or answer, or a
    /// fleet notice for the updater.
    async fn route(&mut self, topic: &str, payload: Vec<u8>, conn: &mut Connection) {
        if topic == self.topics.responses {
            if let Some(id) = on_response_topic(&self.engine, payload, &mut self.seen).await {
                self.awaiting.acknowledged(id);
                conn.pusher.wake();
            }
        } else if let Some(fleet) = self.fleet.as_ref().filter(|f| f.topic == topic) {
            if fleet.notices.try_send(payload).is_err() {
                tracing::warn!("the knowledge updater is busy: a fleet notice waits for the next delivery");
            }
        }
    }
}

/// A message on the car's response topic: the cloud's acknowledgement of an
/// escalation, or an answer (which acknowledges too). Returns the outbox row the
/// cloud acknowledged, if one left the outbox now.
async fn on_response_topic(engine: &Arc<Engine>, payload: Vec<u8>, seen: &mut SeenIds) -> Option<i64> {
    let envelope = match protocol::decode(&payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%error, "ignored a message on the response topic");
            return None;
        }
    };
    if !seen.first_time(envelope.message_id) {
        tracing::debug!(message_id = %envelope.message_id, "duplicate response dropped");
        return None;
    }
    // The outbox and history are SQLite: off the async workers.
    let engine = engine.clone();
    let handled = tokio::task::spawn_blocking(move || match envelope.body {
        Body::Ack(ack) => engine.outbox().acknowledged(&ack.acknowledges),
        Body::Response(response) => {
            Ok(engine.deliver_response(envelope.message_id, envelope.conversation_id, response))
        }
        _ => {
            tracing::warn!("ignored a message of another kind on the response topic");
            Ok(None)
        }
    })
    .await;
    match handled {
        Ok(Ok(acknowledged)) => acknowledged,
        Ok(Err(error)) => {
            tracing::error!(%error, "an acknowledged escalation could not leave the outbox: it will be sent again");
            None
        }
        Err(error) => {
            tracing::error!(%error, "a response could not be handled");
            None
        }
    }
}
