//! The uplink through the real binary against a real broker (rumqttd, in
//! process, on loopback): offline first, then delivery with the envelope of
//! `protocol`, the outbox emptied only on the cloud's acknowledgement (never on a
//! PUBACK alone), and responses back on /v1/events with duplicates dropped.

use std::time::{Duration, Instant};

use edge_agent::client::request;
use hyper::Method;
use serde_json::Value;
use testkit::{ask, free_port, start_broker, Daemon, Network};

/// A plain MQTT client playing cloud-bridge, which acknowledges every escalation it
/// reads as cloud-bridge does after its claim; returns once its subscription holds.
fn cloud(port: u16, subscribe: &str) -> (rumqttc::Client, std::sync::mpsc::Receiver<rumqttc::Publish>) {
    cloud_that(port, subscribe, true)
}

/// A cloud that acknowledges what it reads, or (`acknowledging` false) a broker
/// subscriber that never does.
fn cloud_that(
    port: u16,
    subscribe: &str,
    acknowledging: bool,
) -> (rumqttc::Client, std::sync::mpsc::Receiver<rumqttc::Publish>) {
    let mut options = rumqttc::MqttOptions::new(format!("cloud-{port}"), "127.0.0.1", port);
    options.set_max_packet_size(200 * 1024, 200 * 1024);
    // Room for every acknowledgement a test sends at once (they are `try_publish`ed).
    let (client, mut connection) = rumqttc::Client::new(options, 1024);
    client.subscribe(subscribe, rumqttc::QoS::AtLeastOnce).unwrap();
    for event in connection.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) = event {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let acker = client.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                    if acknowledging && p.topic.ends_with("/escalations") {
                        if let Ok(envelope) = protocol::decode(&p.payload) {
                            testkit::acknowledge(&acker, &envelope);
                        }
                    }
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    (client, rx)
}

async fn health(daemon: &Daemon) -> Value {
    let (_, body) = request(&daemon.socket, Method::GET, "/v1/health", None).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn wait_for(daemon: &Daemon, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let h = health(daemon).await;
        if check(&h) {
            return h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The settings that point the daemon's uplink at `port` on loopback, plain MQTT,
/// with quick reconnects; `extra` adds to them.
fn uplink_env<'a>(port: &'a str, thing: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("EDGE_AGENT__UPLINK__HOST", "127.0.0.1"),
        ("EDGE_AGENT__UPLINK__PORT", port),
        ("EDGE_AGENT__UPLINK__TLS", "false"),
        ("EDGE_AGENT__UPLINK__THING_NAME", thing),
        ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
        ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "200"),
    ];
    env.extend_from_slice(extra);
    env
}

/// The first escalation as the cloud got it: the protocol's envelope, from car-7,
/// a booking with a coarse location.
fn assert_a_booking_from_car_7(message: &rumqttc::Publish) -> protocol::Envelope {
    assert_eq!(message.topic, "kestrel/v1/cars/car-7/escalations");
    let envelope = protocol::decode(&message.payload).unwrap();
    assert_eq!(envelope.thing_name, "car-7");
    assert_eq!(envelope.conversation_id.as_deref(), Some("drive-1"));
    let protocol::Body::Escalation(escalation) = &envelope.body else {
        panic!("{envelope:?}")
    };
    assert_eq!(escalation.intent, models::Intent::BookService);
    assert_eq!(escalation.utterance, "book a service for friday");
    assert_eq!(escalation.priority, protocol::Priority::Normal);
    assert_eq!(
        escalation.vehicle["location"]["latitude"], 37.78,
        "coarse location for a booking"
    );
    envelope
}

/// What leaves the car has been through the privacy rules: read it off the broker.
async fn assert_redacted_on_the_wire(daemon: &Daemon, published: std::sync::mpsc::Receiver<rumqttc::Publish>) {
    let (_, turn) = ask(
        &daemon.socket,
        "please schedule a service appointment and text me on 07700 900123",
        "drive-2",
    )
    .await;
    assert_eq!(turn["intent"], "book_service");
    let published = tokio::task::spawn_blocking(move || {
        let message = published
            .recv_timeout(Duration::from_secs(10))
            .expect("the second escalation");
        (message, published)
    });
    let (message, _published) = published.await.unwrap();
    let redacted = protocol::decode(&message.payload).unwrap();
    let protocol::Body::Escalation(redacted) = redacted.body else {
        panic!()
    };
    assert!(
        redacted.utterance.contains("[phone]") && !redacted.utterance.contains("900123"),
        "{}",
        redacted.utterance
    );
    assert!(
        !String::from_utf8_lossy(&message.payload).contains("07700"),
        "nowhere in the payload, recent turns included"
    );
}

/// The cloud's answer to `message_id`, published twice (delivery is at least once).
fn answer_twice(cloud: &rumqttc::Client, message_id: uuid::Uuid) {
    let reply = protocol::Envelope::new(
        "car-7",
        Some("drive-1"),
        protocol::Body::Response(protocol::Response {
            in_reply_to: message_id,
            text: "You're booked in for Friday at 9.".into(),
            actions: vec![],
            handoff: None,
            more_to_come: false,
            answered_by: None,
        }),
    );
    let bytes = protocol::encode(&reply).unwrap();
    for _ in 0..2 {
        cloud
            .publish(
                "kestrel/v1/cars/car-7/responses",
                rumqttc::QoS::AtLeastOnce,
                false,
                bytes.clone(),
            )
            .unwrap();
    }
}

/// The HMI hears the answer once, and the conversation keeps it once, after the
/// question it answers.
async fn assert_heard_once(daemon: &Daemon, stream: &mut hyper::body::Incoming) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(stream)).await {
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
    }
    assert_eq!(text.matches("event: response").count(), 1, "{text}");
    assert!(text.contains("booked in for Friday"), "{text}");
    // And into the conversation's history, after the question it answers.
    let (status, body) = request(&daemon.socket, Method::GET, "/v1/conversations/drive-1", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let conversation: Value = serde_json::from_slice(&body).unwrap();
    let turns = conversation["turns"].as_array().unwrap();
    let last = turns.last().unwrap();
    assert_eq!(last["from_cloud"], true, "{conversation}");
    assert_eq!(last["answer"], "You're booked in for Friday at 9.");
    assert_eq!(last["intent"], "book_service");
    assert_eq!(
        turns.iter().filter(|t| t["from_cloud"] == true).count(),
        1,
        "once, duplicates dropped"
    );
}

#[test]
fn escalations_wait_offline_then_reach_the_cloud_and_responses_come_back_once() {
    // The car reaches the broker through the test's network, which starts closed.
    let (port, broker_port) = (free_port(), free_port());
    let port_text = port.to_string();
    let daemon = Daemon::start(&uplink_env(&port_text, "car-7", &[]));
    let runtime = testkit::runtime();
    runtime.block_on(async {
        // Offline: the broker is not there yet. The request is queued, not lost.
        let (status, turn) = ask(&daemon.socket, "book a service for friday", "drive-1").await;
        assert_eq!(status, 200);
        assert_eq!(turn["escalation"]["status"], "pending");
        let h = health(&daemon).await;
        assert_eq!(h["pending_escalations"], 1);
        assert_ne!(h["uplink"]["state"], "connected", "{h}");

        // The cloud comes up, then the network: the agent connects on its own and delivers.
        start_broker(broker_port);
        let (cloud, published) =
            tokio::task::spawn_blocking(move || cloud(broker_port, "kestrel/v1/cars/+/escalations"))
                .await
                .unwrap();
        let _network = Network::start(port, broker_port, false).await;
        let h = wait_for(&daemon, "delivery", |h| {
            h["pending_escalations"] == 0 && h["uplink"]["state"] == "connected"
        })
        .await;
        assert_eq!(h["uplink"]["state"], "connected");

        // What the cloud got: the protocol's envelope, from this car.
        let (message, published) =
            tokio::task::spawn_blocking(move || (published.recv_timeout(Duration::from_secs(10)), published))
                .await
                .unwrap();
        let envelope = assert_a_booking_from_car_7(&message.expect("the escalation reached the cloud"));

        assert_redacted_on_the_wire(&daemon, published).await;

        // The answer comes back, twice (at least once): the HMI sees it once.
        let response = testkit::open_events(&daemon.socket, "drive-1").await;
        let mut stream = response.into_body();
        answer_twice(&cloud, envelope.message_id);
        assert_heard_once(&daemon, &mut stream).await;
    });
}

#[test]
fn killed_with_a_hundred_publishes_unacknowledged_the_agent_delivers_them_all_after_restart() {
    let (port, broker_port) = (free_port(), free_port());
    start_broker(broker_port);
    // A cloud that says nothing yet: the broker has every message, the car is
    // told nothing.
    let (cloud, published) = cloud_that(broker_port, "kestrel/v1/cars/+/escalations", false);
    let port_text = port.to_string();
    let env = uplink_env(
        &port_text,
        "car-9",
        &[
            ("EDGE_AGENT__API__RATE_PER_SECOND", "1000"),
            ("EDGE_AGENT__API__RATE_BURST", "1000"),
            ("EDGE_AGENT__UPLINK__INFLIGHT", "100"),
            ("EDGE_AGENT__UPLINK__PUBLISH_PER_SECOND", "0"),
        ],
    );
    let runtime = testkit::threaded_runtime();
    let network = runtime.block_on(Network::start(port, broker_port, true));
    let mut daemon = Daemon::start(&env);
    runtime.block_on(async {
        for i in 0..100 {
            let (status, turn) = ask(&daemon.socket, "book a service for friday", &format!("k-{i}")).await;
            assert_eq!(status, 200);
            assert_eq!(turn["escalation"]["status"], "pending", "{turn}");
        }
    });
    // Every message reached the cloud, but no PUBACK reached the car.
    let mut ids = std::collections::HashSet::new();
    let mut received = 0;
    while ids.len() < 100 {
        let message = published
            .recv_timeout(Duration::from_secs(15))
            .expect("all 100 reach the broker");
        ids.insert(protocol::decode(&message.payload).unwrap().message_id);
        received += 1;
    }
    runtime.block_on(async {
        assert_eq!(
            health(&daemon).await["pending_escalations"],
            100,
            "no row leaves without the cloud's acknowledgement"
        );
    });
    daemon.kill_hard();

    network.deliver_pubacks();
    let daemon = Daemon::start_in(&daemon.state.clone(), &env);
    // The restart sends them again; now the cloud acknowledges what it reads
    // (a copy it has seen too, as cloud-bridge does).
    let mut acknowledged = std::collections::HashSet::new();
    while acknowledged.len() < 100 {
        let message = published
            .recv_timeout(Duration::from_secs(15))
            .expect("every message is sent again after the restart");
        let envelope = protocol::decode(&message.payload).unwrap();
        testkit::acknowledge(&cloud, &envelope);
        ids.insert(envelope.message_id);
        acknowledged.insert(envelope.message_id);
        received += 1;
    }
    runtime.block_on(wait_for(&daemon, "the outbox to empty", |h| {
        h["pending_escalations"] == 0
    }));
    assert_eq!(ids.len(), 100, "exactly the hundred messages, each with its own id");
    assert!(received >= 200, "each was sent again after the restart: {received}");
}

#[test]
fn a_question_that_outlives_its_time_to_live_is_dropped_and_the_driver_told() {
    let (port, broker_port) = (free_port(), free_port());
    let port_text = port.to_string();
    let daemon = Daemon::start(&uplink_env(
        &port_text,
        "car-10",
        &[("EDGE_AGENT__OUTBOX__TTL_SECONDS__TRAFFIC", "1")],
    ));
    let runtime = testkit::runtime();
    runtime.block_on(async {
        let response = testkit::open_events(&daemon.socket, "jam-1").await;
        let mut stream = response.into_body();
        let (_, turn) = ask(&daemon.socket, "is there traffic on the way to work", "jam-1").await;
        assert_eq!(turn["intent"], "traffic");
        assert_eq!(turn["escalation"]["status"], "pending");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        start_broker(broker_port);
        let (_cloud, published) =
            tokio::task::spawn_blocking(move || cloud(broker_port, "kestrel/v1/cars/+/escalations"))
                .await
                .unwrap();
        let _network = Network::start(port, broker_port, false).await;
        wait_for(&daemon, "the expired question to leave", |h| {
            h["pending_escalations"] == 0 && h["uplink"]["state"] == "connected"
        })
        .await;
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !text.contains("event: dropped") {
            match tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut stream)).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => panic!("no dropped event: {text}"),
            }
        }
        assert!(
            text.contains("\"reason\":\"expired\"") && text.contains("\"intent\":\"traffic\""),
            "{text}"
        );
        assert!(
            published.recv_timeout(Duration::from_millis(500)).is_err(),
            "an expired question is not sent"
        );
        let metrics = testkit::exchange_body(&daemon.socket, "/metrics");
        assert!(
            metrics.contains("edge_agent_outbox_dropped_total{reason=\"expired\"} 1"),
            "{metrics}"
        );
    });
}

#[test]
fn anonymous_counters_go_up_in_batches() {
    let (port, broker_port) = (free_port(), free_port());
    start_broker(broker_port);
    let (_cloud, published) = cloud(broker_port, "kestrel/v1/cars/+/analytics");
    let port_text = port.to_string();
    // Multi-threaded: the network's tasks must run while the test waits outside it.
    let runtime = testkit::threaded_runtime();
    let _network = runtime.block_on(Network::start(port, broker_port, false));
    let daemon = Daemon::start(&uplink_env(
        &port_text,
        "car-11",
        &[("EDGE_AGENT__UPLINK__ANALYTICS_INTERVAL_SECONDS", "1")],
    ));
    runtime.block_on(async {
        for (i, text) in [
            "how much fuel do i have",
            "how much fuel is left",
            "book a service for friday",
        ]
        .into_iter()
        .enumerate()
        {
            ask(&daemon.socket, text, &format!("a-{i}")).await;
        }
    });
    let message = published
        .recv_timeout(Duration::from_secs(10))
        .expect("a batch within the interval");
    assert_eq!(message.topic, "kestrel/v1/cars/car-11/analytics");
    let envelope = protocol::decode(&message.payload).unwrap();
    let protocol::Body::AnalyticsBatch(batch) = envelope.body else {
        panic!("{envelope:?}")
    };
    assert_eq!(batch.counters["intent.fuel_level"], 2);
    assert_eq!(batch.counters["intent.book_service"], 1);
    assert_eq!(batch.counters["handling.local"], 2);
    assert_eq!(batch.counters["handling.escalated"], 1);
    assert_eq!(batch.histograms["answer_ms"].counts.iter().sum::<u64>(), 3);
    let text = String::from_utf8_lossy(&message.payload);
    assert!(!text.contains("fuel do i have"), "no utterance in the counters");
}

#[test]
fn the_chat_shows_the_connection_and_delivers_through_the_uplink() {
    let broker_port = free_port();
    start_broker(broker_port);
    let (_cloud, published) = cloud(broker_port, "kestrel/v1/cars/+/escalations");
    let state = tempfile::tempdir().unwrap();
    let port = broker_port.to_string();
    let mut chat = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("chat")
        .envs(uplink_env(&port, "car-12", &[]))
        .env("EDGE_AGENT__STATE__DIR", state.path())
        .env_remove("EDGE_AGENT_MODEL_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Give the uplink a moment to connect, then ask.
    std::thread::sleep(Duration::from_millis(1500));
    let mut stdin = chat.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"book a service for friday\n").unwrap();
    let message = published
        .recv_timeout(Duration::from_secs(10))
        .expect("delivered from the chat");
    assert_eq!(message.topic, "kestrel/v1/cars/car-12/escalations");
    drop(stdin);
    let output = chat.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("cloud: connected"), "{text}");
    assert!(text.contains("escalated (pending), cloud connected"), "{text}");
}

#[test]
fn with_consent_off_only_counters_and_an_emergency_leave_the_car() {
    let (port, broker_port) = (free_port(), free_port());
    start_broker(broker_port);
    let (_cloud, published) = cloud(broker_port, "kestrel/v1/cars/car-13/#");
    let port_text = port.to_string();
    let runtime = testkit::threaded_runtime();
    let _network = runtime.block_on(Network::start(port, broker_port, false));
    let daemon = Daemon::start(&uplink_env(
        &port_text,
        "car-13",
        &[
            ("EDGE_AGENT__PRIVACY__CLOUD_CONSENT", "false"),
            ("EDGE_AGENT__UPLINK__ANALYTICS_INTERVAL_SECONDS", "1"),
        ],
    ));
    runtime.block_on(async {
        let (_, booking) = ask(&daemon.socket, "book a service for friday", "c-1").await;
        assert!(booking["escalation"].is_null(), "{booking}");
        let (_, emergency) = ask(&daemon.socket, "we crashed and my wife is hurt", "c-2").await;
        assert_eq!(emergency["escalation"]["priority"], "urgent");
    });
    let mut topics = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if let Ok(message) = published.recv_timeout(Duration::from_millis(200)) {
            let envelope = protocol::decode(&message.payload).unwrap();
            if let protocol::Body::Escalation(e) = &envelope.body {
                assert_eq!(e.intent, models::Intent::Emergency);
                assert!(e.recent_turns.is_empty(), "the minimum set: no history");
            }
            // The responses topic carries only this test cloud's own acknowledgements.
            if !message.topic.ends_with("/responses") {
                topics.push(message.topic);
            }
        }
    }
    topics.sort();
    topics.dedup();
    assert_eq!(
        topics,
        ["kestrel/v1/cars/car-13/analytics", "kestrel/v1/cars/car-13/escalations"],
        "counters and the emergency, nothing else"
    );
}

#[test]
fn a_puback_alone_keeps_the_escalation_which_is_sent_again_until_the_cloud_acknowledges_it() {
    let (port, broker_port) = (free_port(), free_port());
    start_broker(broker_port);
    let (cloud, published) = cloud_that(broker_port, "kestrel/v1/cars/+/escalations", false);
    let port_text = port.to_string();
    let env = uplink_env(&port_text, "car-14", &[("EDGE_AGENT__UPLINK__ACK_TIMEOUT_MS", "300")]);
    let runtime = testkit::threaded_runtime();
    let daemon = Daemon::start(&env);
    runtime.block_on(async {
        let _network = Network::start(port, broker_port, false).await;
        let events = testkit::open_events(&daemon.socket, "e-1").await;
        let (_, turn) = ask(&daemon.socket, "book a service for friday", "e-1").await;
        assert_eq!(turn["escalation"]["status"], "pending");
        let published = tokio::task::spawn_blocking(move || {
            let copies: Vec<protocol::Envelope> = (0..3)
                .map(|_| {
                    let message = published
                        .recv_timeout(Duration::from_secs(10))
                        .expect("sent again while unacknowledged");
                    protocol::decode(&message.payload).unwrap()
                })
                .collect();
            (copies, published)
        });
        let (copies, published) = published.await.unwrap();
        assert!(
            copies.iter().all(|c| c.message_id == copies[0].message_id),
            "every copy has the same message id"
        );
        let h = health(&daemon).await;
        assert_eq!(
            h["pending_escalations"], 1,
            "the broker's PUBACKs do not empty the outbox: {h}"
        );
        assert_eq!(h["uplink"]["subscribed"], true, "{h}");

        testkit::acknowledge(&cloud, &copies[0]);
        wait_for(&daemon, "the acknowledgement", |h| h["pending_escalations"] == 0).await;
        // Acknowledged: not sent again.
        let quiet = tokio::task::spawn_blocking(move || {
            let _ = published.recv_timeout(Duration::from_millis(300));
            published.recv_timeout(Duration::from_millis(1500)).is_err()
        });
        assert!(quiet.await.unwrap(), "an acknowledged escalation is not sent again");

        // The driver's status followed it: queued, sent, received by the cloud.
        let mut body = events.into_body();
        let mut text = String::new();
        while !text.contains("\"received\"") {
            let frame = tokio::time::timeout(Duration::from_secs(5), http_body_util::BodyExt::frame(&mut body))
                .await
                .expect("status events")
                .unwrap()
                .unwrap();
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
        let statuses: Vec<&str> = ["\"pending\"", "\"sent\"", "\"received\""]
            .into_iter()
            .filter(|s| text.contains(s))
            .collect();
        assert_eq!(statuses.len(), 3, "{text}");
        assert!(text.find("\"sent\"") < text.find("\"received\""), "{text}");
    });
}
