//! The uplink against mosquitto as production runs it: mutual TLS with
//! verification on (a test CA made here), `require_certificate`, and the ACL file
//! rendered by `protocol`. Without mosquitto these tests print `SKIP:` and pass;
//! with `EDGE_REQUIRE_EXTERNALS=1` (CI) they fail instead.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{require_mosquitto, start_mosquitto_on, Mosquitto, Pki};
use testkit::{ask, free_port, Daemon, Network};

fn start_mosquitto(binary: &Path, pki: &Pki) -> Mosquitto {
    start_mosquitto_on(binary, pki, free_port())
}

/// A TLS client with `cn`'s certificate (or none); its received publishes.
fn client(
    pki: &Pki,
    port: u16,
    cn: &str,
    with_certificate: bool,
    subscribe: Option<&str>,
) -> (
    rumqttc::Client,
    std::sync::mpsc::Receiver<Result<rumqttc::Publish, String>>,
) {
    let mut options = rumqttc::MqttOptions::new(cn, "localhost", port);
    let client_auth = with_certificate.then(|| {
        let (cert, key) = pki.issue(cn, &[]);
        (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    });
    options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: std::fs::read(pki.ca_file()).unwrap(),
        alpn: None,
        client_auth,
    }));
    let (client, mut connection) = rumqttc::Client::new(options, 16);
    if let Some(filter) = subscribe {
        client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => break,
                Err(e) => panic!("{cn} could not subscribe: {e}"),
                _ => {}
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            let item = match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => Ok(p),
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            let failed = item.is_err();
            if tx.send(item).is_err() || failed {
                return;
            }
        }
    });
    (client, rx)
}

#[test]
fn over_mutual_tls_a_car_reaches_the_cloud_and_never_another_cars_topics() {
    let Some(binary) = require_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = start_mosquitto(&binary, &pki);

    let (_cloud, received) = client(
        &pki,
        broker.port,
        "cloud-bridge",
        true,
        Some("kestrel/v1/cars/+/escalations"),
    );

    // car-8 forges a message on car-7's topic, then publishes on its own.
    let (intruder, _) = client(&pki, broker.port, "car-8", true, None);
    intruder
        .publish(
            "kestrel/v1/cars/car-7/escalations",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"forged".to_vec(),
        )
        .unwrap();
    intruder
        .publish(
            "kestrel/v1/cars/car-8/escalations",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"own".to_vec(),
        )
        .unwrap();
    let first = received
        .recv_timeout(Duration::from_secs(10))
        .expect("car-8's own message")
        .unwrap();
    assert_eq!(first.topic, "kestrel/v1/cars/car-8/escalations");
    assert_eq!(
        &first.payload[..],
        b"own",
        "the forged message on car-7's topic never arrived"
    );

    // A client without a certificate is not let in.
    let (_anonymous, refused) = client(&pki, broker.port, "anonymous", false, None);
    assert!(refused
        .recv_timeout(Duration::from_secs(10))
        .expect("an outcome")
        .is_err());

    // The real car-7, through edge-agent.
    let (cert, key) = pki.issue("car-7", &[]);
    let port = broker.port.to_string();
    let ca_file = pki.ca_file();
    let env = [
        ("EDGE_AGENT__UPLINK__HOST", "localhost"),
        ("EDGE_AGENT__UPLINK__PORT", port.as_str()),
        ("EDGE_AGENT__UPLINK__THING_NAME", "car-7"),
        ("EDGE_AGENT__UPLINK__CA_FILE", ca_file.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
    ];
    let daemon = Daemon::start(&env);
    let runtime = testkit::runtime();
    runtime.block_on(async {
        let (status, _) = ask(&daemon.socket, "i want to complain about the dealer", "tls-1").await;
        assert_eq!(status, 200);
    });
    let delivered = received
        .recv_timeout(Duration::from_secs(15))
        .expect("delivered over TLS")
        .unwrap();
    assert_eq!(delivered.topic, "kestrel/v1/cars/car-7/escalations");
    let envelope = protocol::decode(&delivered.payload).unwrap();
    assert_eq!(envelope.thing_name, "car-7");
    assert_eq!(envelope.conversation_id.as_deref(), Some("tls-1"));
}

/// car-5 through the test's network on `car_port`, one publish in flight at four
/// a second: a trickle, so that a restart falls in the middle of the traffic.
fn start_trickling_car(pki: &Pki, car_port: u16) -> Daemon {
    let (cert, key) = pki.issue("car-5", &[]);
    let (port, ca_file) = (car_port.to_string(), pki.ca_file());
    let env = [
        ("EDGE_AGENT__UPLINK__HOST", "localhost"),
        ("EDGE_AGENT__UPLINK__PORT", port.as_str()),
        ("EDGE_AGENT__UPLINK__THING_NAME", "car-5"),
        ("EDGE_AGENT__UPLINK__CA_FILE", ca_file.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
        ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "200"),
        ("EDGE_AGENT__UPLINK__INFLIGHT", "1"),
        ("EDGE_AGENT__UPLINK__PUBLISH_PER_SECOND", "4"),
    ];
    Daemon::start(&env)
}

/// The car's unacknowledged escalations, from its health.
fn pending_escalations(runtime: &tokio::runtime::Runtime, daemon: &Daemon) -> u64 {
    runtime.block_on(async {
        let (_, body) = edge_agent::client::request(&daemon.socket, hyper::Method::GET, "/v1/health", None)
            .await
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["pending_escalations"]
            .as_u64()
            .unwrap()
    })
}

/// The cloud's end-to-end acknowledgement of each of `ids`.
fn acknowledge(cloud: &rumqttc::Client, ids: &std::collections::HashSet<uuid::Uuid>) {
    for id in ids {
        let ack = protocol::Envelope::new("car-5", None, protocol::Body::Ack(protocol::Ack { acknowledges: *id }));
        cloud
            .publish(
                "kestrel/v1/cars/car-5/responses",
                rumqttc::QoS::AtLeastOnce,
                false,
                protocol::encode(&ack).unwrap(),
            )
            .unwrap();
    }
}

#[test]
fn a_broker_restart_during_traffic_loses_nothing_and_the_emergency_goes_first() {
    let Some(binary) = require_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = start_mosquitto(&binary, &pki);
    let (_cloud, before) = client(
        &pki,
        broker.port,
        "cloud-bridge",
        true,
        Some("kestrel/v1/cars/+/escalations"),
    );
    let runtime = testkit::threaded_runtime();
    let car_port = free_port();
    let network = runtime.block_on(Network::start(car_port, broker.port, false));

    let daemon = start_trickling_car(&pki, car_port);
    runtime.block_on(async {
        for i in 0..8 {
            let (_, turn) = ask(&daemon.socket, "book a service for friday", &format!("r-{i}")).await;
            assert_eq!(turn["escalation"]["status"], "pending");
        }
    });
    let mut ids = std::collections::HashSet::new();
    for _ in 0..2 {
        let message = before
            .recv_timeout(Duration::from_secs(10))
            .expect("traffic flows")
            .unwrap();
        ids.insert(protocol::decode(&message.payload).unwrap().message_id);
    }

    // The broker dies mid-traffic and comes back empty (no persistence: the
    // session is gone, session_present = 0).
    network.close();
    let broker_port = broker.port;
    drop(broker);
    let emergency = runtime.block_on(ask(&daemon.socket, "we crashed and my son is bleeding", "r-sos"));
    assert_eq!(emergency.1["intent"], "emergency");
    let broker = start_mosquitto_on(&binary, &pki, broker_port);
    let (cloud, after) = client(
        &pki,
        broker.port,
        "cloud-bridge",
        true,
        Some("kestrel/v1/cars/+/escalations"),
    );
    network.reopen();

    let first = after
        .recv_timeout(Duration::from_secs(15))
        .expect("delivery resumes")
        .unwrap();
    let first = protocol::decode(&first.payload).unwrap();
    let protocol::Body::Escalation(first_body) = &first.body else {
        panic!()
    };
    assert_eq!(
        first_body.intent,
        protocol::Intent::Emergency,
        "the emergency goes first after the restart"
    );
    ids.insert(first.message_id);
    while ids.len() < 9 {
        let message = after
            .recv_timeout(Duration::from_secs(15))
            .expect("nothing is lost")
            .unwrap();
        ids.insert(protocol::decode(&message.payload).unwrap().message_id);
    }
    // The broker's PUBACKs empty nothing: the outbox waits for the cloud.
    assert_eq!(
        pending_escalations(&runtime, &daemon),
        9,
        "every escalation waits for the cloud's acknowledgement"
    );
    acknowledge(&cloud, &ids);
    let started = Instant::now();
    while pending_escalations(&runtime, &daemon) != 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "the outbox never emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
}
