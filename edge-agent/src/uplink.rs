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

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use daemon::backoff::Backoff;
use protocol::{Body, Envelope, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::UplinkConfig;
use crate::engine::{Engine, UplinkState};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink: {0}")]
    Config(String),
    #[error("MQTT connection: {0}")]
    Connection(String),
    #[error("MQTT request refused locally: {0}")]
    Request(String),
}

/// What the link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    Connected {
        session_present: bool,
    },
    /// A publish left with this packet id (in the order publishes were made).
    Sent {
        pkid: u16,
    },
    /// The broker acknowledged a publish.
    Acked {
        pkid: u16,
    },
    /// The broker answered a subscription: `granted` is false when it refused
    /// any of its filters.
    Subscribed {
        granted: bool,
    },
    Received {
        topic: String,
        payload: Vec<u8>,
    },
    Other,
}

/// One MQTT connection: the seam tests can drive.
pub trait MqttLink: Send {
    /// Queues a QoS 1 publish without waiting.
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError>;
    fn subscribe(&mut self, topic: &str) -> Result<(), UplinkError>;
    /// Drives the connection to its next event; an error ends the connection.
    fn next(&mut self) -> impl Future<Output = Result<LinkEvent, UplinkError>> + Send;
}

/// Makes a fresh connection for each attempt.
pub trait Connector: Send {
    type Link: MqttLink;
    fn connect(&mut self) -> Self::Link;
}

/// rumqttc, configured for AWS IoT Core.
pub struct RumqttcConnector {
    options: rumqttc::MqttOptions,
}

impl RumqttcConnector {
    pub fn new(config: &UplinkConfig) -> Result<RumqttcConnector, UplinkError> {
        let mut options = rumqttc::MqttOptions::new(&config.thing_name, &config.host, config.port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_seconds))
            .set_clean_session(false)
            // Room for the largest publish IoT Core takes, plus MQTT framing.
            .set_max_packet_size(protocol::MAX_PAYLOAD_BYTES + 1024, protocol::MAX_PAYLOAD_BYTES + 1024)
            .set_inflight(config.inflight)
            .set_request_channel_capacity(usize::from(config.inflight) * 2 + 8);
        if config.tls {
            let read = |path: &str, what: &str| {
                std::fs::read(path).map_err(|e| UplinkError::Config(format!("cannot read the {what} {path}: {e}")))
            };
            let ca = read(&config.ca_file, "CA bundle")?;
            let cert = read(&config.cert_file, "device certificate")?;
            let key = read(&config.key_file, "device key")?;
            let alpn = config.alpn.then(|| vec![b"x-amzn-mqtt-ca".to_vec()]);
            options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn,
                client_auth: Some((cert, key)),
            }));
        }
        Ok(RumqttcConnector { options })
    }
}

pub struct RumqttcLink {
    client: rumqttc::AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl Connector for RumqttcConnector {
    type Link = RumqttcLink;

    fn connect(&mut self) -> RumqttcLink {
        let capacity = usize::from(self.options.inflight()) * 2 + 8;
        let (client, mut eventloop) = rumqttc::AsyncClient::new(self.options.clone(), capacity);
        // Small messages that must not wait for Nagle's algorithm.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        RumqttcLink { client, eventloop }
    }
}

impl MqttLink for RumqttcLink {
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError> {
        self.client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .map_err(|e| UplinkError::Request(e.to_string()))
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), UplinkError> {
        self.client
            .try_subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .map_err(|e| UplinkError::Request(e.to_string()))
    }

    async fn next(&mut self) -> Result<LinkEvent, UplinkError> {
        use rumqttc::{Event, Incoming, Outgoing};
        let event = self
            .eventloop
            .poll()
            .await
            .map_err(|e| UplinkError::Connection(e.to_string()))?;
        Ok(match event {
            Event::Incoming(Incoming::ConnAck(ack)) => LinkEvent::Connected {
                session_present: ack.session_present,
            },
            Event::Incoming(Incoming::PubAck(ack)) => LinkEvent::Acked { pkid: ack.pkid },
            Event::Incoming(Incoming::SubAck(ack)) => LinkEvent::Subscribed {
                granted: ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_))),
            },
            Event::Incoming(Incoming::Publish(p)) => LinkEvent::Received {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent { pkid },
            _ => LinkEvent::Other,
        })
    }
}

/// Recently seen response ids, to drop duplicates (delivery is at least once).
struct SeenIds {
    order: VecDeque<uuid::Uuid>,
    set: HashSet<uuid::Uuid>,
}

impl SeenIds {
    const KEEP: usize = 4096;

    fn first_time(&mut self, id: uuid::Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Escalations published but not yet acknowledged by the cloud, across
/// connections: each is sent again when its timer runs out (the timeout doubles
/// per attempt, jittered) and after every reconnect.
struct AwaitingCloud {
    rows: HashMap<i64, Awaiting>,
    timeout: Duration,
    max_timeout: Duration,
    rng: models::rng::SplitMix64,
}

struct Awaiting {
    attempts: u32,
    /// When it is sent again; `None` while a publish is on the wire.
    due: Option<tokio::time::Instant>,
}

impl AwaitingCloud {
    fn new(config: &UplinkConfig, seed: u64) -> AwaitingCloud {
        AwaitingCloud {
            rows: HashMap::new(),
            timeout: Duration::from_millis(config.ack_timeout_ms.max(1)),
            max_timeout: Duration::from_millis(config.ack_timeout_max_ms.max(config.ack_timeout_ms)),
            rng: models::rng::SplitMix64::new(seed),
        }
    }

    /// A publish of the row left.
    fn published(&mut self, id: i64) {
        let row = self.rows.entry(id).or_insert(Awaiting { attempts: 0, due: None });
        row.attempts += 1;
        row.due = None;
    }

    /// The broker took the row: the cloud's acknowledgement is awaited from now.
    fn broker_took(&mut self, id: i64) {
        let base = self
            .timeout
            .saturating_mul(1 << self.rows.get(&id).map_or(0, |r| r.attempts.saturating_sub(1).min(16)));
        let wait = base
            .min(self.max_timeout)
            .mul_f64(0.5 + 0.5 * f64::from(self.rng.next_f32()));
        if let Some(row) = self.rows.get_mut(&id) {
            row.due = Some(tokio::time::Instant::now() + wait);
        }
    }

    fn acknowledged(&mut self, id: i64) {
        self.rows.remove(&id);
    }

    /// A new connection: everything unacknowledged is sent again now.
    fn reconnected(&mut self) {
        let now = tokio::time::Instant::now();
        for row in self.rows.values_mut() {
            row.due = Some(now);
        }
    }

    /// Rows that must not be sent now: on the wire, or waiting for their timer.
    fn held(&self, now: tokio::time::Instant) -> HashSet<i64> {
        self.rows
            .iter()
            .filter(|(_, r)| r.due.is_none_or(|due| due > now))
            .map(|(id, _)| *id)
            .collect()
    }

    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.rows.values().filter_map(|r| r.due).min()
    }

    fn contains(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Forgets the rows that were due at `now` but not sent then.
    fn forget_due_unsent(&mut self, now: tokio::time::Instant, sent: &HashSet<i64>) {
        self.rows
            .retain(|id, row| sent.contains(id) || row.due.is_none_or(|due| due > now));
    }
}

/// What a publish awaiting its PUBACK was: the broker's packet id comes back
/// with the PUBACK, and this says what that acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// An outbox row: the broker has it once acked, and it stays in the outbox
    /// until the cloud says so.
    Escalation(i64),
    /// The analytics batch held in `Connection::analytics_in_flight`.
    AnalyticsBatch,
    /// A status report (or shadow update). A lost one is not resent: the next
    /// connection reports the state as it is then.
    StatusReport,
    /// An acknowledged escalation asked again for its answer; a lost one is asked
    /// again later.
    AskedAgain,
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

/// Runs the uplink until `shutdown`.
pub async fn run<C: Connector>(
    mut connector: C,
    engine: Arc<Engine>,
    config: UplinkConfig,
    mut fleet: Option<FleetLink>,
    shutdown: CancellationToken,
) -> Result<(), UplinkError> {
    let topics = Topics::new(&config.topic_prefix).map_err(|e| UplinkError::Config(e.to_string()))?;
    let status_topic = topics
        .status(&config.thing_name)
        .map_err(|e| UplinkError::Config(e.to_string()))?;
    let shadow_topic = topics
        .knowledge_shadow(&config.thing_name, "update")
        .map_err(|e| UplinkError::Config(e.to_string()))?;
    let escalations = topics
        .escalations(&config.thing_name)
        .map_err(|e| UplinkError::Config(e.to_string()))?;
    let responses = topics
        .responses(&config.thing_name)
        .map_err(|e| UplinkError::Config(e.to_string()))?;
    let analytics_topic = topics
        .analytics(&config.thing_name)
        .map_err(|e| UplinkError::Config(e.to_string()))?;
    let analytics_every =
        (config.analytics_interval_seconds > 0).then(|| Duration::from_secs(config.analytics_interval_seconds));
    let mut next_analytics = tokio::time::Instant::now() + analytics_every.unwrap_or(Duration::ZERO);
    let mut next_report = tokio::time::Instant::now();
    let mut backoff = Backoff::new(
        Duration::from_millis(config.backoff_initial_ms),
        Duration::from_millis(config.backoff_max_ms.max(config.backoff_initial_ms)),
        u64::from(std::process::id()) ^ jiff::Timestamp::now().as_nanosecond() as u64,
    );
    let min_interval = (config.publish_per_second > 0).then(|| Duration::from_secs(1) / config.publish_per_second);
    let mut seen = SeenIds {
        order: VecDeque::new(),
        set: HashSet::new(),
    };
    let min_connect_interval = Duration::from_millis(config.min_connect_interval_ms);
    let mut last_connect: Option<tokio::time::Instant> = None;
    // The loop beats while it awaits the link (and its backoffs), so a loop stuck
    // anywhere else falls silent. The beat adds no branch to the select: the
    // link's future is cancelled no more often than before.
    let heartbeat = engine.heartbeats().register("uplink");
    let mut awaiting = AwaitingCloud::new(&config, u64::from(std::process::id()).rotate_left(17));
    let ask_again_every = Duration::from_millis((config.answer_timeout_ms / 2).max(100));
    let mut next_ask_again = tokio::time::Instant::now() + ask_again_every;
    loop {
        // Never two CONNECTs closer than IoT Core allows, even after a flap.
        if let Some(last) = last_connect {
            let wait = async {
                tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep_until(last + min_connect_interval) => false,
                }
            };
            if heartbeat.waiting(wait).await {
                return Ok(());
            }
        }
        last_connect = Some(tokio::time::Instant::now());
        engine.set_uplink_state(UplinkState::Connecting);
        let mut link = connector.connect();
        let mut connection = Connection {
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
            in_flight: HashSet::new(),
            connected: false,
            next_publish: tokio::time::Instant::now(),
            need_pump: true,
            last_expiry: None,
            analytics_in_flight: None,
            subacks_awaited: 0,
        };
        let ended = loop {
            if connection.connected && connection.need_pump {
                if let Err(e) = connection
                    .pump(&mut link, &engine, &config, &escalations, min_interval, &mut awaiting)
                    .await
                {
                    break e;
                }
            }
            let throttle = tokio::time::sleep_until(connection.next_publish);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    engine.set_uplink_state(UplinkState::Disconnected);
                    return Ok(());
                }
                _ = engine.outbox_changed.notified() => connection.need_pump = true,
                _ = tokio::time::sleep_until(next_analytics), if connection.connected && analytics_every.is_some() => {
                    next_analytics = tokio::time::Instant::now() + analytics_every.unwrap_or_default();
                    if connection.analytics_in_flight.is_none() {
                        if let Some(batch) = engine.take_analytics() {
                            let envelope = Envelope::new(
                                &config.thing_name,
                                None,
                                Body::AnalyticsBatch(batch.batch(jiff::Timestamp::now())),
                            );
                            match protocol::encode(&envelope) {
                                Ok(bytes) => {
                                    if let Err(e) = link.publish(&analytics_topic, bytes) {
                                        engine.restore_analytics(batch);
                                        break e;
                                    }
                                    connection.awaiting_pkid.push_back(Published::AnalyticsBatch);
                                    connection.analytics_in_flight = Some(batch);
                                }
                                Err(error) => tracing::error!(%error, "analytics batch not sent"),
                            }
                        }
                    }
                }
                changed = async {
                    let fleet = fleet.as_mut().expect("guarded");
                    tokio::select! {
                        changed = fleet.reports.changed() => changed.map_err(|_| ()),
                        _ = tokio::time::sleep_until(next_report) => Ok(()),
                    }
                }, if connection.connected && fleet.is_some() => {
                    if changed.is_err() {
                        // The updater has stopped: nothing more to report.
                        fleet = None;
                        continue;
                    }
                    let fleet = fleet.as_mut().expect("guarded");
                    next_report = tokio::time::Instant::now() + fleet.report_every;
                    let report = fleet.reports.borrow_and_update().clone();
                    match send_report(&mut link, &engine, &config.thing_name, &status_topic, fleet.shadow.then_some(shadow_topic.as_str()), &report).await {
                        Ok(n) => connection.awaiting_pkid.extend(std::iter::repeat_n(Published::StatusReport, n)),
                        Err(e) => break e,
                    }
                }
                _ = throttle, if connection.connected && min_interval.is_some() && connection.need_pump => {}
                // Expiry is checked at send time; a quiet outbox is looked at now and then.
                _ = tokio::time::sleep(Duration::from_secs(5)) => connection.need_pump = true,
                // An answer that has not come is asked for again (same message id):
                // the cloud sends its stored reply, which the car drops if it has it.
                _ = tokio::time::sleep_until(next_ask_again), if connection.connected => {
                    next_ask_again = tokio::time::Instant::now() + ask_again_every;
                    let e = engine.clone();
                    let wait_ms = config.answer_timeout_ms as i64;
                    let limit = usize::from(config.inflight);
                    let due = tokio::task::spawn_blocking(move || e.outbox_unanswered(wait_ms, limit)).await;
                    for row in due.ok().and_then(Result::ok).unwrap_or_default() {
                        let Ok(bytes) = envelope_for(&row, &config.thing_name) else { continue };
                        // A refused publish shows as the link's error on its next event.
                        if link.publish(&escalations, bytes).is_err() {
                            break;
                        }
                        connection.awaiting_pkid.push_back(Published::AskedAgain);
                    }
                }
                // An escalation the cloud has not acknowledged in time goes again.
                _ = tokio::time::sleep_until(awaiting.next_due().unwrap_or_else(tokio::time::Instant::now)),
                    if connection.connected && awaiting.next_due().is_some() && connection.in_flight.len() < usize::from(config.inflight) => {
                    connection.need_pump = true;
                }
                event = heartbeat.waiting(link.next()) => match event {
                    Ok(LinkEvent::Connected { session_present }) => {
                        tracing::info!(session_present, "uplink connected");
                        connection.connected = true;
                        connection.need_pump = true;
                        backoff.reset();
                        awaiting.reconnected();
                        engine.set_uplink_state(UplinkState::Connected);
                        // Subscribed on every CONNACK, whatever the session says: a
                        // restarted broker may restore a session without its subscriptions.
                        engine.set_uplink_subscribed(false);
                        if let Err(e) = link.subscribe(&responses) {
                            break e;
                        }
                        connection.subacks_awaited = 1;
                        if let Some(fleet) = fleet.as_mut() {
                            if let Err(e) = link.subscribe(&fleet.topic) {
                                break e;
                            }
                            connection.subacks_awaited += 1;
                            next_report = tokio::time::Instant::now() + fleet.report_every;
                            let report = fleet.reports.borrow_and_update().clone();
                            let sent = send_report(&mut link, &engine, &config.thing_name, &status_topic, fleet.shadow.then_some(shadow_topic.as_str()), &report).await;
                            match sent {
                                Ok(n) => connection.awaiting_pkid.extend(std::iter::repeat_n(Published::StatusReport, n)),
                                Err(e) => break e,
                            }
                        }
                    }
                    Ok(LinkEvent::Sent { pkid }) => {
                        if let Some(published) = connection.awaiting_pkid.pop_front() {
                            connection.by_pkid.insert(pkid, published);
                        }
                    }
                    Ok(LinkEvent::Subscribed { granted }) => {
                        connection.subacks_awaited = connection.subacks_awaited.saturating_sub(1);
                        if !granted {
                            tracing::error!("the broker refused a subscription: responses or fleet notices will not arrive (check the policy)");
                            connection.subacks_awaited = usize::MAX;
                        } else if connection.subacks_awaited == 0 {
                            engine.set_uplink_subscribed(true);
                        }
                    }
                    Ok(LinkEvent::Acked { pkid }) => {
                        match connection.by_pkid.remove(&pkid) {
                            Some(Published::StatusReport | Published::AskedAgain) | None => {}
                            Some(Published::AnalyticsBatch) => connection.analytics_in_flight = None,
                            Some(Published::Escalation(id)) => {
                                // The broker has it; the row stays until the cloud says so.
                                connection.in_flight.remove(&id);
                                connection.need_pump = true;
                                awaiting.broker_took(id);
                                let engine = engine.clone();
                                let marked = tokio::task::spawn_blocking(move || engine.outbox_sent(id)).await;
                                if !matches!(marked, Ok(Ok(()))) {
                                    tracing::warn!(id, "sent, but its status could not be recorded");
                                }
                            }
                        }
                    }
                    Ok(LinkEvent::Received { topic, payload }) => {
                        if topic == responses {
                            if let Some(id) = on_response_topic(&engine, payload, &mut seen).await {
                                awaiting.acknowledged(id);
                                connection.need_pump = true;
                            }
                        } else if let Some(fleet) = fleet.as_ref().filter(|f| f.topic == topic) {
                            if fleet.notices.try_send(payload).is_err() {
                                tracing::warn!("the knowledge updater is busy: a fleet notice waits for the next delivery");
                            }
                        }
                    }
                    Ok(LinkEvent::Other) => {}
                    Err(e) => break e,
                },
            }
        };
        engine.set_uplink_state(UplinkState::Disconnected);
        if let Some(batch) = connection.analytics_in_flight.take() {
            // Not acknowledged: its counts go into the next batch.
            engine.restore_analytics(batch);
        }
        let delay = backoff.next_delay();
        tracing::warn!(error = %ended, retry_in_ms = delay.as_millis() as u64, "uplink disconnected");
        let wait = async {
            tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(delay) => false,
            }
        };
        if heartbeat.waiting(wait).await {
            return Ok(());
        }
    }
}

/// The bookkeeping of one connection.
struct Connection {
    /// Rows published, waiting for their packet id, in publish order.
    awaiting_pkid: VecDeque<Published>,
    by_pkid: HashMap<u16, Published>,
    in_flight: HashSet<i64>,
    connected: bool,
    /// The publish throttle.
    next_publish: tokio::time::Instant,
    /// Something may be sendable: connected, a slot freed, a row queued.
    need_pump: bool,
    /// Expiry is checked at send time, at most once a second.
    last_expiry: Option<tokio::time::Instant>,
    /// The analytics batch awaiting its PUBACK.
    analytics_in_flight: Option<crate::analytics::Analytics>,
    /// SUBACKs still to come before the car counts as subscribed (`usize::MAX`
    /// after a refusal: not subscribed on this connection).
    subacks_awaited: usize,
}

impl Connection {
    /// Fills the in-flight window from the outbox, urgent first.
    async fn pump<L: MqttLink>(
        &mut self,
        link: &mut L,
        engine: &Arc<Engine>,
        config: &UplinkConfig,
        topic: &str,
        min_interval: Option<Duration>,
        awaiting: &mut AwaitingCloud,
    ) -> Result<(), UplinkError> {
        let window = usize::from(config.inflight);
        let free = window.saturating_sub(self.in_flight.len());
        if free == 0 {
            self.need_pump = false;
            return Ok(());
        }
        let expire = self.last_expiry.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if expire {
            self.last_expiry = Some(tokio::time::Instant::now());
        }
        let e = engine.clone();
        let now = tokio::time::Instant::now();
        let mut held = awaiting.held(now);
        held.extend(self.in_flight.iter().copied());
        let pending = tokio::task::spawn_blocking(move || {
            if expire {
                // A database that cannot be written still lets the spool go.
                if let Err(error) = e.outbox_expire() {
                    tracing::warn!(%error, "expired escalations could not be removed");
                }
            }
            e.outbox_next(free, &held)
        })
        .await
        .map_err(|e| UplinkError::Request(e.to_string()))?
        .map_err(|e| UplinkError::Request(e.to_string()))?;
        // Everything sendable is sent unless the throttle stops us first.
        self.need_pump = false;
        let mut sent = HashSet::new();
        for row in pending {
            // Only so many wait for the cloud at once; an emergency always goes.
            let new = !awaiting.contains(row.id);
            if new && row.priority == crate::store::Priority::Normal && awaiting.len() >= config.ack_window {
                continue;
            }
            if let Some(interval) = min_interval {
                let now = tokio::time::Instant::now();
                if now < self.next_publish {
                    self.need_pump = true;
                    break;
                }
                self.next_publish = now.max(self.next_publish) + interval;
            }
            let bytes = match envelope_for(&row, &config.thing_name) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::error!(id = row.id, %error, "an escalation can never be sent: dropped, and its driver told");
                    let e = engine.clone();
                    let _ = tokio::task::spawn_blocking(move || e.outbox_refuse(row.id)).await;
                    continue;
                }
            };
            link.publish(topic, bytes)?;
            self.awaiting_pkid.push_back(Published::Escalation(row.id));
            self.in_flight.insert(row.id);
            awaiting.published(row.id);
            sent.insert(row.id);
        }
        // A row whose time came but was not sent has left the outbox, or waits
        // its turn as any queued row does: either way it needs no timer.
        awaiting.forget_due_unsent(now, &sent);
        Ok(())
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
    report: &crate::fleet::KnowledgeReport,
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

/// The wire form of an outbox row: its own message id on every attempt, so the
/// receiver can drop repeats.
fn envelope_for(row: &crate::store::PendingEscalation, thing: &str) -> Result<Vec<u8>, protocol::ProtocolError> {
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
        Body::Ack(ack) => engine.outbox_acknowledged(&ack.acknowledges),
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

#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    //! An MQTT link driven by the test: every publish is recorded and answered
    //! with the next packet id; the test decides which acknowledgements arrive, in
    //! which order, and when the connection fails.

    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc;

    use super::{Connector, LinkEvent, MqttLink, UplinkError};

    /// A publish the fake received: connection number (from 1), packet id,
    /// topic, payload.
    pub type Published = (usize, u16, String, Vec<u8>);
    type EventSender = mpsc::UnboundedSender<Result<LinkEvent, UplinkError>>;

    /// What the test sees and steers.
    #[derive(Clone)]
    pub struct FakeBroker {
        /// Every publish, in order.
        pub published: Arc<Mutex<Vec<Published>>>,
        events: Arc<Mutex<Option<EventSender>>>,
    }

    impl FakeBroker {
        /// Acknowledges a packet id on the current connection.
        pub fn ack(&self, pkid: u16) {
            self.send(Ok(LinkEvent::Acked { pkid }));
        }

        /// A message from the broker on `topic` (the cloud's acknowledgement, say).
        pub fn deliver(&self, topic: &str, payload: Vec<u8>) {
            self.send(Ok(LinkEvent::Received {
                topic: topic.to_string(),
                payload,
            }));
        }

        /// Drops the current connection.
        pub fn fail(&self) {
            self.send(Err(UplinkError::Connection("the test cut the connection".into())));
        }

        fn send(&self, event: Result<LinkEvent, UplinkError>) {
            if let Some(tx) = self.events.lock().expect("fake").as_ref() {
                let _ = tx.send(event);
            }
        }
    }

    pub struct FakeConnector {
        broker: FakeBroker,
        connections: usize,
    }

    impl FakeConnector {
        pub fn new() -> (FakeConnector, FakeBroker) {
            let broker = FakeBroker {
                published: Arc::default(),
                events: Arc::default(),
            };
            (
                FakeConnector {
                    broker: broker.clone(),
                    connections: 0,
                },
                broker,
            )
        }
    }

    pub struct FakeLink {
        connection: usize,
        next_pkid: u16,
        events: mpsc::UnboundedReceiver<Result<LinkEvent, UplinkError>>,
        loopback: EventSender,
        broker: FakeBroker,
    }

    impl Connector for FakeConnector {
        type Link = FakeLink;

        fn connect(&mut self) -> FakeLink {
            self.connections += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(Ok(LinkEvent::Connected { session_present: false }));
            *self.broker.events.lock().expect("fake") = Some(tx.clone());
            FakeLink {
                connection: self.connections,
                next_pkid: 1,
                events: rx,
                loopback: tx,
                broker: self.broker.clone(),
            }
        }
    }

    impl MqttLink for FakeLink {
        fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError> {
            let pkid = self.next_pkid;
            self.next_pkid += 1;
            self.broker
                .published
                .lock()
                .expect("fake")
                .push((self.connection, pkid, topic.to_string(), payload));
            let _ = self.loopback.send(Ok(LinkEvent::Sent { pkid }));
            Ok(())
        }

        fn subscribe(&mut self, _topic: &str) -> Result<(), UplinkError> {
            Ok(())
        }

        async fn next(&mut self) -> Result<LinkEvent, UplinkError> {
            match self.events.recv().await {
                Some(event) => event,
                None => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised() {
        let mut seen = SeenIds {
            order: VecDeque::new(),
            set: HashSet::new(),
        };
        let id = uuid::Uuid::now_v7();
        assert!(seen.first_time(id));
        assert!(!seen.first_time(id));
    }
}
