//! The uplink through the real binary against a real broker (rumqttd, in
//! process, on loopback): offline first, then delivery with the envelope of
//! `protocol`, the outbox emptied on PUBACK, and responses back on /v1/events
//! with duplicates dropped.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use edge_agent::client::request;
use hyper::Method;
use serde_json::Value;
use support::{ask, free_port, Daemon};

/// rumqttd on `port`, MQTT 3.1.1. It has no shutdown: it lives as long as the
/// test process.
fn start_broker(port: u16) {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 2000,
        max_payload_size: 256 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: ([127, 0, 0, 1], port).into(),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("rumqttd stopped: {e}");
        }
    });
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "rumqttd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain MQTT client playing cloud-bridge; returns once its subscription holds.
fn cloud(port: u16, subscribe: &str) -> (rumqttc::Client, std::sync::mpsc::Receiver<rumqttc::Publish>) {
    let mut options = rumqttc::MqttOptions::new(format!("cloud-{port}"), "127.0.0.1", port);
    options.set_max_packet_size(200 * 1024, 200 * 1024);
    let (client, mut connection) = rumqttc::Client::new(options, 16);
    client.subscribe(subscribe, rumqttc::QoS::AtLeastOnce).unwrap();
    for event in connection.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) = event {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
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

/// The network between the car and the cloud, owned by the test: nothing listens
/// on `from` until the proxy starts, then every connection is forwarded to `to`.
async fn open_network(from: u16, to: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", from)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut car, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut car, &mut broker).await;
                }
            });
        }
    });
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

#[test]
fn escalations_wait_offline_then_reach_the_cloud_and_responses_come_back_once() {
    // The car reaches the broker through the test's network, which starts closed.
    let (port, broker_port) = (free_port(), free_port());
    let port_text = port.to_string();
    let daemon = Daemon::start(&[
        ("EDGE_AGENT__UPLINK__HOST", "127.0.0.1"),
        ("EDGE_AGENT__UPLINK__PORT", &port_text),
        ("EDGE_AGENT__UPLINK__TLS", "false"),
        ("EDGE_AGENT__UPLINK__THING_NAME", "car-7"),
        ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
        ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "200"),
    ]);
    let runtime = support::runtime();
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
        open_network(port, broker_port).await;
        let h = wait_for(&daemon, "delivery", |h| {
            h["pending_escalations"] == 0 && h["uplink"]["state"] == "connected"
        })
        .await;
        assert_eq!(h["uplink"]["state"], "connected");

        // What the cloud got: the protocol's envelope, from this car.
        let message = tokio::task::spawn_blocking(move || published.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the escalation reached the cloud");
        assert_eq!(message.topic, "kestrel/v1/cars/car-7/escalations");
        let envelope = protocol::decode(&message.payload).unwrap();
        assert_eq!(envelope.thing_name, "car-7");
        assert_eq!(envelope.conversation_id.as_deref(), Some("drive-1"));
        let protocol::Body::Escalation(escalation) = &envelope.body else {
            panic!("{envelope:?}")
        };
        assert_eq!(escalation.intent, "book_service");
        assert_eq!(escalation.utterance, "book a service for friday");
        assert_eq!(escalation.priority, protocol::Priority::Normal);

        // The answer comes back, twice (at least once): the HMI sees it once.
        let response = support::open_events(&daemon.socket, "drive-1").await;
        let mut stream = response.into_body();
        let reply = protocol::Envelope::new(
            "car-7",
            Some("drive-1"),
            protocol::Body::Response(protocol::Response {
                in_reply_to: envelope.message_id,
                text: "You're booked in for Friday at 9.".into(),
                actions: vec![],
                handoff: None,
                more_to_come: false,
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
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut stream)).await
        {
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
        assert_eq!(text.matches("event: response").count(), 1, "{text}");
        assert!(text.contains("booked in for Friday"), "{text}");
    });
}
