//! The running service: one MQTT 5 connection (mutual TLS in production) reading
//! every car's escalations, analytics and status through shared subscriptions, so
//! that N instances split the load; a task per message; loops that deliver what
//! agents and status updates queued, and that take over escalations whose owner
//! died; and the HTTP endpoints.
//!
//! Delivery is at least once on both hops, so each escalation is claimed in the
//! dedupe store by `message_id` before it is handled. Once the claim is durable
//! the car gets an `ack` on its responses topic (it keeps the escalation, and
//! sends it again, until then; a copy is acknowledged again), then the answer.
//! The broker gets its PUBACK (manual) only once the response is published or
//! queued.
//!
//! The subscriptions are made on every CONNACK, whatever `session_present` says
//! (mosquitto restores a persistent session without its `$share` subscriptions),
//! and every SUBACK's reason codes are checked: `/health` is `ok` only while the
//! broker has granted them all.

use std::sync::Arc;
use std::time::Duration;

use protocol::{Body, Envelope, Topics};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::GroupCommit;
use crate::broker::{mqtt_options, CredentialsError};
use crate::config::{Config, DeliveryMode};
use crate::delivery::{Delivery, IotDataDelivery, MqttDelivery};
use crate::metrics::Metrics;
use crate::store::{Claim, Completed, HandoffState, NewClaim, Stores};
use crate::supervisor::{wait_phrase, Supervisor};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("http: cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
    #[error("cannot start the store writer: {0}")]
    Writer(#[from] std::io::Error),
}

/// What every message task shares.
struct Shared {
    supervisor: Arc<Supervisor>,
    stores: Stores,
    delivery: Arc<dyn Delivery>,
    client: AsyncClient,
    topics: Topics,
    metrics: Metrics,
    config: Arc<Config>,
    owner: String,
    /// Claims and outcomes, group-committed off the async workers.
    claims: GroupCommit<NewClaim, Result<Claim, String>>,
    completions: GroupCommit<Completed, Result<(), String>>,
    /// Escalations this process is handling now.
    in_progress: Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>,
}

/// Marks an escalation as being handled here, for as long as it lives.
struct InProgress {
    set: Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>,
    id: uuid::Uuid,
}

impl InProgress {
    /// `None` when it is being handled here already.
    fn enter(set: &Arc<std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>>, id: uuid::Uuid) -> Option<InProgress> {
        set.lock()
            .expect("in-progress set")
            .insert(id)
            .then(|| InProgress { set: set.clone(), id })
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.set.lock().expect("in-progress set").remove(&self.id);
    }
}

/// Runs until `shutdown`: the broker connection, the message tasks, the
/// outbound and takeover loops. Message tasks in flight finish before it returns.
pub async fn run(
    config: Arc<Config>,
    supervisor: Arc<Supervisor>,
    metrics: Metrics,
    heartbeat: Option<daemon::heartbeat::Heartbeat>,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let topics = Topics::new(&config.mqtt.topic_prefix)?;

    let options = mqtt_options(&config)?;
    let owner = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let shared = Shared::start(
        &config,
        supervisor,
        client.clone(),
        topics.clone(),
        metrics.clone(),
        owner,
    )
    .await?;
    let tracker = TaskTracker::new();
    tracker.spawn(outbound_loop(shared.clone(), shutdown.clone()));
    tracker.spawn(takeover_loop(shared.clone(), tracker.clone(), shutdown.clone()));

    let filters: Vec<String> = ["escalations", "analytics", "status"]
        .iter()
        .map(|leaf| topics.shared_car_topic(&config.mqtt.share_group, leaf))
        .collect::<Result<_, _>>()?;
    let mut backoff = daemon::backoff::Backoff::new(
        Duration::from_millis(config.mqtt.backoff_initial_ms),
        Duration::from_millis(config.mqtt.backoff_max_ms.max(config.mqtt.backoff_initial_ms)),
        rand::random(),
    );
    loop {
        // The loop beats while it awaits the broker; the poll is cancelled only
        // by shutdown, as rumqttc's poll is not documented as cancel-safe.
        let poll = async {
            match &heartbeat {
                Some(heartbeat) => heartbeat.waiting(eventloop.poll()).await,
                None => eventloop.poll().await,
            }
        };
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = poll => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                // Healthy once the subscriptions are granted too.
                metrics.set_connected(true);
                metrics.set_subscribed(false);
                backoff.reset();
                tracing::info!(session_present = ack.session_present, "connected to the broker");
                subscribe(&client, &filters, Duration::ZERO);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                tracker.spawn(shared.clone().handle_message(publish));
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => on_suback(&ack.return_codes, &metrics, &client, &filters),
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                metrics.set_connected(false);
                metrics.set_subscribed(false);
                tracing::warn!(reason = ?d.reason_code, "the broker disconnected us");
            }
            Ok(_) => {}
            Err(error) => {
                metrics.set_connected(false);
                metrics.set_subscribed(false);
                metrics.failure("broker_connection");
                let pause = backoff.next_delay();
                tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "broker connection failed; reconnecting");
                if stopped_while_pausing(pause, heartbeat.as_ref(), &shutdown).await {
                    break;
                }
            }
        }
    }
    finish_in_flight(&tracker, &mut eventloop).await;
    let _ = client.disconnect().await;
    metrics.set_connected(false);
    metrics.set_subscribed(false);
    Ok(())
}

/// Lets message tasks finish their publish and ack (polling the connection
/// meanwhile), for at most 5 s.
async fn finish_in_flight(tracker: &TaskTracker, eventloop: &mut rumqttc::v5::EventLoop) {
    tracker.close();
    let drain = async {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        () = tracker.wait() => {}
        () = drain => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => tracing::warn!("messages still in flight at exit: their leases will expire and another instance takes them"),
    }
}

impl Shared {
    /// What the message tasks share: the delivery of answers, and the group
    /// commits of claims and outcomes.
    async fn start(
        config: &Arc<Config>,
        supervisor: Arc<Supervisor>,
        client: AsyncClient,
        topics: Topics,
        metrics: Metrics,
        owner: String,
    ) -> Result<Arc<Shared>, ServiceError> {
        let delivery: Arc<dyn Delivery> = match config.delivery.mode {
            DeliveryMode::Mqtt => Arc::new(MqttDelivery { client: client.clone() }),
            DeliveryMode::IotData => Arc::new(
                IotDataDelivery::from_environment(
                    &config.delivery.iot_data_endpoint,
                    Some(config.delivery.region.clone()).filter(|r| !r.is_empty()),
                )
                .await,
            ),
        };
        let stores = supervisor.stores().clone();
        let (dedupe, lease_ms, claimer) = (stores.dedupe.clone(), config.store.lease_ms, owner.clone());
        // Claims and outcomes are both on the way to the driver's answer (an
        // outcome is durable before its reply goes): no linger, batches of
        // whatever is waiting.
        let claims = GroupCommit::start("store-claims", Duration::ZERO, move |batch: &[NewClaim]| {
            match dedupe.claim_many(batch, &claimer, lease_ms) {
                Ok(found) => found.into_iter().map(Ok).collect(),
                Err(error) => batch.iter().map(|_| Err(error.to_string())).collect(),
            }
        })?;
        let dedupe = stores.dedupe.clone();
        let completions = GroupCommit::start("store-outcomes", Duration::ZERO, move |batch: &[Completed]| {
            let result = dedupe.complete_many(batch).map_err(|e| e.to_string());
            batch.iter().map(|_| result.clone()).collect()
        })?;
        Ok(Arc::new(Shared {
            stores,
            supervisor,
            delivery,
            client,
            topics,
            metrics,
            config: config.clone(),
            owner,
            claims,
            completions,
            in_progress: Arc::default(),
        }))
    }
}

/// A SUBACK: healthy when every filter was granted, else subscribe again soon.
fn on_suback(codes: &[SubscribeReasonCode], metrics: &Metrics, client: &AsyncClient, filters: &[String]) {
    let refused: Vec<_> = codes
        .iter()
        .filter(|code| !matches!(code, SubscribeReasonCode::Success(_)))
        .collect();
    if refused.is_empty() {
        metrics.set_subscribed(true);
        tracing::info!("subscribed to the cars' topics");
    } else {
        metrics.set_subscribed(false);
        metrics.failure("subscription_refused");
        tracing::error!(?refused, "the broker refused a subscription; trying again in 5 s");
        subscribe(client, filters, Duration::from_secs(5));
    }
}

/// Waits out a reconnect pause, beating; true when `shutdown` came first.
async fn stopped_while_pausing(
    pause: Duration,
    heartbeat: Option<&daemon::heartbeat::Heartbeat>,
    shutdown: &CancellationToken,
) -> bool {
    let wait = async {
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(pause) => false,
        }
    };
    match heartbeat {
        Some(heartbeat) => heartbeat.waiting(wait).await,
        None => wait.await,
    }
}

/// Subscribes to the cars' topics after `delay`, from a task: subscribing inside
/// the poll loop can deadlock on a full request channel.
fn subscribe(client: &AsyncClient, filters: &[String], delay: Duration) {
    let (client, filters) = (client.clone(), filters.to_vec());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let subscriptions = filters
            .into_iter()
            .map(|f| rumqttc::v5::mqttbytes::v5::Filter::new(f, QoS::AtLeastOnce));
        if let Err(error) = client.subscribe_many(subscriptions).await {
            tracing::error!(%error, "cannot subscribe");
        }
    });
}

impl Shared {
    /// One message's task: handled, then acknowledged to the broker.
    async fn handle_message(self: Arc<Self>, publish: Publish) {
        self.metrics.in_flight(1);
        self.on_publish(&publish).await;
        self.metrics.in_flight(-1);
        if let Err(error) = self.client.ack(&publish).await {
            tracing::warn!(%error, "cannot acknowledge a message; the broker will resend it");
        }
    }

    async fn on_publish(&self, publish: &Publish) {
        let topic = String::from_utf8_lossy(&publish.topic).to_string();
        let Some((thing, leaf)) = self.topics.parse_car_topic(&topic) else {
            self.metrics.rejected("unknown_topic");
            tracing::warn!(topic, "a message on a topic this service does not read");
            return;
        };
        self.metrics.received(leaf);
        let envelope = match protocol::decode(&publish.payload) {
            Ok(e) => e,
            Err(error) => {
                self.metrics.rejected("malformed");
                tracing::warn!(thing, %error, "a malformed message was dropped");
                return;
            }
        };
        if envelope.thing_name != thing {
            self.metrics.rejected("thing_mismatch");
            tracing::warn!(thing, claimed = %envelope.thing_name, "a message names another car than its topic; dropped");
            return;
        }
        match (&envelope.body, leaf) {
            (Body::Escalation(_), "escalations") => self.claim_and_handle(thing, envelope, &publish.payload).await,
            (Body::AnalyticsBatch(batch), "analytics") => self.record_analytics(&envelope, batch),
            (Body::Status(status), "status") => self.record_status(thing, status, envelope.sent_at),
            _ => {
                self.metrics.rejected("wrong_kind");
                tracing::warn!(thing, leaf, "a message of the wrong kind for its topic was dropped");
            }
        }
    }

    /// An escalation: claimed in the dedupe store first, then acknowledged to the
    /// car and handled; a duplicate is acknowledged and answered again.
    async fn claim_and_handle(&self, thing: &str, envelope: Envelope, payload: &[u8]) {
        let id = envelope.message_id.to_string();
        let claim = NewClaim {
            message_id: id.clone(),
            thing: thing.to_string(),
            payload: payload.to_vec(),
        };
        let claimed = self
            .claims
            .submit(claim)
            .await
            .unwrap_or_else(|| Err("the store writer stopped".into()));
        match claimed {
            Ok(Claim::New) => {
                crate::failpoint::hit("escalation:claimed");
                self.acknowledge(&envelope).await;
                crate::failpoint::hit("escalation:acknowledged");
                self.handle_escalation(envelope).await;
            }
            Ok(Claim::Duplicate) => {
                // The car sent it again: it missed the acknowledgement,
                // or the answer. Both go again; the car drops a repeat.
                self.metrics.duplicate();
                tracing::debug!(message_id = %id, "a duplicate escalation acknowledged again and dropped");
                self.acknowledge(&envelope).await;
                self.deliver_again(&envelope).await;
            }
            Err(error) => {
                // Handled without a claim rather than dropped: a duplicate
                // answer is better than none while the store is down.
                self.metrics.failure("store");
                tracing::error!(%error, "cannot claim an escalation; handling it unclaimed");
                self.handle_escalation(envelope).await;
            }
        }
    }

    fn record_analytics(&self, envelope: &Envelope, batch: &protocol::AnalyticsBatch) {
        let day = batch
            .period_end
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date()
            .to_string();
        if let Err(error) = self
            .stores
            .analytics
            .record_batch(&envelope.message_id.to_string(), &day, &batch.counters)
        {
            self.metrics.failure("store");
            tracing::error!(%error, "cannot record an analytics batch");
        }
    }

    fn record_status(&self, thing: &str, status: &protocol::Status, sent_at: jiff::Timestamp) {
        tracing::info!(
            thing,
            agent_version = %status.agent_version,
            queued = status.queued_escalations,
            knowledge = ?status.knowledge_version,
            failure = ?status.knowledge_failure,
            "car status"
        );
        let car = crate::fleet::car_from_status(thing, status, sent_at);
        if let Err(error) = self.stores.fleet.record_car(&car) {
            self.metrics.failure("store");
            tracing::error!(%error, "cannot record a car's status");
        }
    }

    /// Handles a claimed escalation: the supervisor, then delivery (or the
    /// outbound queue when delivery fails), then the outcome.
    async fn handle_escalation(&self, envelope: Envelope) {
        let Body::Escalation(escalation) = &envelope.body else {
            return;
        };
        // One handling per escalation in this process: a pause past the lease
        // (a stopped process, a slow disk) must not let the takeover loop start
        // a second one beside it.
        let Some(_handling) = InProgress::enter(&self.in_progress, envelope.message_id) else {
            tracing::debug!(message_id = %envelope.message_id, "already being handled here");
            return;
        };
        let handled = self.supervisor.handle(&envelope, escalation).await;
        let mut reply = Envelope::new(
            &handled.thing,
            Some(&handled.conversation_id),
            Body::Response(handled.response.clone()),
        );
        reply.traceparent = envelope.traceparent.clone();
        // The outcome and the reply are durable before the reply goes: a crash
        // after publishing must not let a takeover answer (or book) a second
        // time. A crash between the two loses only the publish, and the car,
        // still without its answer, asks again and gets the stored reply.
        let completed = Completed {
            outcome: handled.outcome,
            turns: handled.turns,
            reply: protocol::encode(&reply).ok(),
        };
        match self.completions.submit(completed).await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot record the outcome");
            }
            None => {
                self.metrics.failure("store");
                tracing::error!("the store writer stopped before the outcome was recorded");
            }
        }
        if let Err(error) = self.deliver(&reply).await {
            self.metrics.failure("delivery");
            tracing::warn!(%error, "cannot deliver a response now; it is queued");
            if let Err(error) =
                self.stores
                    .handoffs
                    .enqueue(&handled.thing, &handled.conversation_id, &handled.response)
            {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot queue the response either");
            }
        }
    }

    /// Tells the car its escalation is claimed here, so it may leave the car's
    /// outbox. A lost acknowledgement costs a re-sent copy, acknowledged again.
    async fn acknowledge(&self, escalation: &Envelope) {
        let ack = Envelope::new(
            &escalation.thing_name,
            escalation.conversation_id.as_deref(),
            Body::Ack(protocol::Ack {
                acknowledges: escalation.message_id,
            }),
        );
        let sent = async {
            let topic = self.topics.responses(&ack.thing_name)?;
            self.delivery.publish(&topic, protocol::encode(&ack)?).await
        };
        match sent.await {
            Ok(()) => self.metrics.acknowledged(),
            Err(error) => {
                self.metrics.failure("ack_delivery");
                tracing::warn!(%error, message_id = %escalation.message_id, "cannot acknowledge an escalation; the car will send it again");
            }
        }
    }

    /// Publishes the stored reply of a completed escalation again, byte for byte
    /// (same message id): a car that asks again lost it with a broker that had
    /// no persistence. Nothing when the escalation is not answered yet.
    async fn deliver_again(&self, escalation: &Envelope) {
        let stored = self.stores.dedupe.reply(&escalation.message_id.to_string());
        let bytes = match stored {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(error) => {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot read a stored reply");
                return;
            }
        };
        let sent = async {
            let topic = self.topics.responses(&escalation.thing_name)?;
            self.delivery.publish(&topic, bytes).await
        };
        if let Err(error) = sent.await {
            self.metrics.failure("delivery");
            tracing::warn!(%error, "cannot deliver a stored reply again; the car will ask again");
        }
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), crate::delivery::DeliveryError> {
        let topic = self.topics.responses(&envelope.thing_name)?;
        let bytes = protocol::encode(envelope)?;
        self.delivery.publish(&topic, bytes).await?;
        self.metrics.delivered();
        Ok(())
    }

    /// Queued messages for cars (agent replies, status updates, failed
    /// deliveries), and queue-status updates for drivers still waiting.
    async fn deliver_outbound(&self) {
        let leased = match self.stores.handoffs.lease_outbound(&self.owner, 10_000, 64) {
            Ok(l) => l,
            Err(error) => {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot read the outbound queue");
                return;
            }
        };
        for message in leased {
            let envelope = Envelope::new(
                &message.thing,
                Some(&message.conversation_id),
                Body::Response(message.response),
            );
            match self.deliver(&envelope).await {
                Ok(()) => {
                    if let Err(error) = self.stores.handoffs.delivered(message.seq) {
                        self.metrics.failure("store");
                        tracing::error!(%error, "cannot mark a message delivered; it may be sent twice");
                    }
                }
                Err(error) => {
                    self.metrics.failure("delivery");
                    tracing::warn!(%error, "outbound delivery failed; retrying after the lease");
                }
            }
        }
    }

    fn queue_status_updates(&self) {
        let interval = jiff::SignedDuration::from_secs(self.config.handoff.status_interval_seconds as i64);
        let now = jiff::Timestamp::now();
        let Ok(queue) = self.stores.handoffs.queued() else {
            self.metrics.failure("store");
            return;
        };
        for (position, handoff) in queue.iter().enumerate() {
            let recorded = match self.stores.handoffs.last_status(&handoff.handoff_id) {
                Ok(recorded) => recorded,
                Err(_) => {
                    self.metrics.failure("store");
                    continue;
                }
            };
            let last = recorded.unwrap_or(handoff.created_at);
            if now.duration_since(last) < interval {
                continue;
            }
            let wait = crate::supervisor::estimated_wait_seconds(position, handoff.urgent, &self.config);
            let response = protocol::Response {
                in_reply_to: handoff.message_id.parse().unwrap_or_default(),
                text: format!(
                    "You're still in the queue; someone will be with you {}.",
                    wait_phrase(wait)
                ),
                actions: Vec::new(),
                handoff: Some(protocol::Handoff {
                    status: protocol::HandoffStatus::Queued,
                    agent: None,
                    estimated_wait_seconds: Some(wait),
                }),
                more_to_come: true,
                answered_by: Some("supervisor".into()),
            };
            // Whichever instance moves the handoff's status time sends the update.
            match self.stores.handoffs.touch_status(&handoff.handoff_id, recorded, now) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    self.metrics.failure("store");
                    continue;
                }
            }
            if self
                .stores
                .handoffs
                .enqueue(&handoff.thing, &handoff.conversation_id, &response)
                .is_err()
            {
                self.metrics.failure("store");
            }
        }
    }
}

async fn outbound_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if rounds.is_multiple_of(5) {
            shared.queue_status_updates();
        }
        rounds += 1;
        shared.deliver_outbound().await;
    }
}

/// Escalations claimed by an instance that died before finishing: taken over
/// once their lease runs out.
async fn takeover_loop(shared: Arc<Shared>, tracker: TaskTracker, shutdown: CancellationToken) {
    let every = Duration::from_millis((shared.config.store.lease_ms / 2).max(100) as u64);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let stale = match shared
            .stores
            .dedupe
            .take_over_stale(&shared.owner, shared.config.store.lease_ms, 16)
        {
            Ok(s) => s,
            Err(error) => {
                shared.metrics.failure("store");
                tracing::error!(%error, "cannot look for abandoned escalations");
                continue;
            }
        };
        for payload in stale {
            let Ok(envelope) = protocol::decode(&payload) else {
                continue;
            };
            tracing::warn!(message_id = %envelope.message_id, "taking over an escalation its instance left unfinished");
            let shared = shared.clone();
            tracker.spawn(async move { shared.handle_escalation(envelope).await });
        }
    }
}

/// A handoff's lifecycle as seen by agents: the messages a transition sends the
/// driver. Used by `cloud-bridge agent`.
pub fn handoff_message(state: HandoffState, agent: &str) -> String {
    match state {
        HandoffState::Assigned => format!("{agent} from our team has joined and will help you now."),
        HandoffState::Closed => "Our agent has closed this conversation. Ask me anything else any time.".to_string(),
        HandoffState::Queued => "You're in the queue.".to_string(),
    }
}
