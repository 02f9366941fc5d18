//! The product end to end: mosquitto as production runs it (mutual TLS, the ACL),
//! the cloud-bridge binary with the local provider, and the edge-agent binary as
//! the car. The driver's side is the daemon's API: `POST /v1/ask` and the
//! `/v1/events` stream. Skipped visibly without mosquitto (a failure in CI).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::Bridge;
use e2e::{require_mosquitto, start_mosquitto_on, traffic_escalation, Mosquitto, Pki};
use http_body_util::BodyExt;
use serde_json::Value;
use testkit::{ask, free_port, open_events, Daemon};

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    pki: Pki,
    broker: Mosquitto,
}

fn world() -> Option<World> {
    let binary = require_mosquitto()?;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = start_mosquitto_on(&binary, &pki, free_port());
    Some(World {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        pki,
        broker,
    })
}

impl World {
    fn car(&self, thing: &str) -> Daemon {
        let (cert, key) = self.pki.issue(thing, &[]);
        let port = self.broker.port.to_string();
        let ca = self.pki.ca_file();
        Daemon::start(&[
            ("EDGE_AGENT__UPLINK__HOST", "localhost"),
            ("EDGE_AGENT__UPLINK__PORT", &port),
            ("EDGE_AGENT__UPLINK__THING_NAME", thing),
            ("EDGE_AGENT__UPLINK__CA_FILE", ca.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
            ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "200"),
            // Counters go up every second, so that the report sees them.
            ("EDGE_AGENT__UPLINK__ANALYTICS_INTERVAL_SECONDS", "1"),
        ])
    }

    fn bridge(&self, name: &str) -> Bridge {
        self.bridge_with(name, &[])
    }

    fn bridge_with(&self, name: &str, env: &[(&str, &str)]) -> Bridge {
        let store = self.dir.join(format!("{name}.sqlite"));
        Bridge::start_with(&self.pki, self.broker.port, "cloud-bridge", name, &store, env)
    }
}

/// The driver's event stream for one conversation.
struct Events {
    body: hyper::body::Incoming,
    buffer: String,
}

impl Events {
    async fn open(socket: &Path, conversation: &str) -> Events {
        let response = open_events(socket, conversation).await;
        assert_eq!(response.status(), 200);
        Events {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event of `kind`, within `within`.
    async fn next(&mut self, kind: &str, within: Duration) -> Value {
        let marker = format!("event: {kind}\ndata: ");
        tokio::time::timeout(within, async {
            loop {
                if let Some(start) = self.buffer.find(&marker) {
                    if let Some(len) = self.buffer[start..].find("\n\n") {
                        let data = self.buffer[start + marker.len()..start + len].to_string();
                        self.buffer.drain(..start + len + 2);
                        return serde_json::from_str::<Value>(&data).unwrap();
                    }
                }
                let frame = self.body.frame().await.expect("the stream stays open").unwrap();
                if let Some(data) = frame.data_ref() {
                    self.buffer.push_str(&String::from_utf8_lossy(data));
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no `{kind}` event within {within:?}; have {:?}", self.buffer))
    }
}

#[test]
fn an_escalated_question_is_answered_on_the_drivers_event_stream() {
    let Some(w) = world() else { return };
    let bridge = w.bridge("bridge-a");
    // The store knows no recall until fleet ops import one; this car has no
    // owner profile, so its warranty is unknown (never a default).
    let recalls = w.dir.join("recalls.json");
    std::fs::write(
        &recalls,
        serde_json::json!([{
            "campaign": "26V-077", "model": "Voyager", "years": [2024, 2026],
            "summary": "The wiper motor nut may loosen.", "remedy": "A dealer tightens it, free of charge."
        }])
        .to_string(),
    )
    .unwrap();
    assert!(bridge
        .command(&["recalls", recalls.to_str().unwrap()])
        .contains("stored 1 recalls"));
    let car = w.car("car-1");
    testkit::threaded_runtime().block_on(async {
        let mut events = Events::open(&car.socket, "c-1").await;
        let (status, turn) = ask(&car.socket, "are there any recalls on my car", "c-1").await;
        assert_eq!(status, 200);
        assert_eq!(turn["escalation"]["status"], "pending", "{turn}");
        let response = events.next("response", Duration::from_secs(20)).await;
        assert_eq!(response["conversation_id"], "c-1");
        assert_eq!(response["answered_by"], "local");
        let text = response["text"].as_str().unwrap();
        assert!(
            text.contains("one open recall: The wiper motor nut may loosen."),
            "{response}"
        );
        assert!(text.contains("don't have your warranty on file"), "{response}");
    });
    assert_eq!(bridge.handled(), 1);
}

#[test]
fn a_brake_inspection_next_friday_morning_is_booked_on_that_friday_and_confirmed() {
    let Some(w) = world() else { return };
    let bridge = w.bridge("bridge-a");
    let car = w.car("car-2");
    let response = testkit::threaded_runtime().block_on(async {
        let mut events = Events::open(&car.socket, "c-2").await;
        let (_, turn) = ask(&car.socket, "book a brake inspection next friday morning", "c-2").await;
        assert_eq!(turn["intent"], "book_service", "{turn}");
        events.next("response", Duration::from_secs(20)).await
    });
    // The coming Friday in the owner's zone (the default profile's).
    let zone = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let mut friday = jiff::Timestamp::now().to_zoned_datetime(zone.clone()).date();
    loop {
        friday = friday.tomorrow().unwrap();
        if friday.weekday() == jiff::civil::Weekday::Friday {
            break;
        }
    }
    let action = &response["actions"][0];
    assert_eq!(action["type"], "booking_confirmed", "{response}");
    assert_eq!(action["service"], "brake inspection");
    let starts: jiff::Timestamp = action["starts_at"].as_str().unwrap().parse().unwrap();
    let local = starts.to_zoned_datetime(zone);
    assert_eq!(local.date(), friday);
    assert!((8..12).contains(&local.hour()), "a morning slot: {local}");
    assert!(response["text"]
        .as_str()
        .unwrap()
        .starts_with("You're booked for a brake inspection"));

    // What the dealer's store holds is the same appointment.
    let store = cloud_bridge::store::SqliteStore::open(&bridge.store).unwrap();
    let booked = cloud_bridge::store::AppointmentStore::by_thing(&store, "car-2").unwrap();
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0].starts_at, starts);
    assert_eq!(booked[0].service, "brake inspection");
    assert_eq!(booked[0].status, cloud_bridge::store::AppointmentStatus::Confirmed);
    assert_eq!(action["appointment_id"], booked[0].appointment_id.as_str());
}

#[test]
fn a_person_takes_the_handoff_and_answers_through_the_agent_cli() {
    let Some(w) = world() else { return };
    let bridge = w.bridge_with("bridge-a", &[("CLOUD_BRIDGE__HANDOFF__STATUS_INTERVAL_SECONDS", "1")]);
    let car = w.car("car-3");
    testkit::threaded_runtime().block_on(async {
        let mut events = Events::open(&car.socket, "c-3").await;
        let (_, turn) = ask(&car.socket, "i want to talk to a real person", "c-3").await;
        assert_eq!(turn["intent"], "talk_to_agent", "{turn}");
        let queued = events.next("response", Duration::from_secs(20)).await;
        assert_eq!(queued["handoff"]["status"], "queued", "{queued}");
        assert!(queued["handoff"]["estimated_wait_seconds"].as_u64().unwrap() > 0);
        // While nobody has taken it, the driver hears where they stand.
        let waiting = events.next("response", Duration::from_secs(10)).await;
        assert_eq!(waiting["handoff"]["status"], "queued");
        assert!(
            waiting["text"]
                .as_str()
                .unwrap()
                .starts_with("You're still in the queue"),
            "{waiting}"
        );

        let list = bridge.command(&["agent", "list"]);
        let id = list
            .lines()
            .find(|l| l.contains("car-3"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("car-3 is not in the queue:\n{list}"))
            .to_string();
        let (_, metrics) = bridge.get("/metrics").unwrap();
        assert!(metrics.contains("cloud_bridge_handoffs_queued 1"), "{metrics}");
        assert!(metrics.contains("cloud_bridge_build_info{version="), "{metrics}");
        bridge.command(&["agent", "take", &id, "--agent", "Sam"]);
        let joined = events.next("response", Duration::from_secs(10)).await;
        assert_eq!(joined["handoff"]["status"], "assigned");
        assert_eq!(joined["answered_by"], "agent:Sam");

        bridge.command(&[
            "agent",
            "reply",
            &id,
            "Your car is ready for pick-up at five.",
            "--agent",
            "Sam",
        ]);
        let reply = events.next("response", Duration::from_secs(10)).await;
        assert_eq!(reply["text"], "Your car is ready for pick-up at five.");

        bridge.command(&["agent", "close", &id]);
        let closed = events.next("response", Duration::from_secs(10)).await;
        assert_eq!(closed["handoff"]["status"], "closed");
        assert!(!bridge.command(&["agent", "list"]).contains("car-3"));
        let (_, metrics) = bridge.get("/metrics").unwrap();
        assert!(metrics.contains("cloud_bridge_handoffs_queued 0"), "{metrics}");
    });
    // Today's report counts the escalation, the handoff and its wait, and the
    // car's own counters (a local answer, then the escalated turn).
    testkit::threaded_runtime().block_on(async {
        let (_, turn) = ask(&car.socket, "how do i pair my phone", "c-3b").await;
        assert_eq!(turn["handling"], "answered", "{turn}");
    });
    let started = Instant::now();
    let today = loop {
        let report: Value = serde_json::from_str(&bridge.command(&["report", "--days", "1", "--json"])).unwrap();
        let today = report[0].clone();
        if today["edge_local"].as_u64() >= Some(1) && today["edge_escalated"].as_u64() >= Some(1) {
            break today;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the car's counters never arrived: {today}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(today["escalations"], 1, "{today}");
    assert_eq!(today["handoffs"], 1);
    assert!(today["mean_wait_seconds"].as_f64().unwrap() > 0.0);
    let top: Vec<&str> = today["top_intents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i[0].as_str())
        .collect();
    assert!(
        top.contains(&"talk_to_agent") && top.contains(&"feature_howto"),
        "{top:?}"
    );
}

#[test]
fn escalations_made_while_cloud_bridge_is_down_are_answered_once_it_is_back() {
    let Some(w) = world() else { return };
    let store = w.dir.join("bridge-a.sqlite");
    // A first run creates the supervisor's persistent session and subscriptions.
    let mut bridge = Bridge::start(&w.pki, w.broker.port, "cloud-bridge", "bridge-a", &store);
    bridge.kill_hard();
    let car = w.car("car-4");
    let runtime = testkit::threaded_runtime();
    let mut events = runtime.block_on(async {
        let mut events = Vec::new();
        for i in 0..3 {
            let conversation = format!("c-4-{i}");
            events.push(Events::open(&car.socket, &conversation).await);
            let (_, turn) = ask(&car.socket, "any recalls for this car", &conversation).await;
            assert_eq!(turn["escalation"]["status"], "pending");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        events
    });
    let _back = Bridge::start(&w.pki, w.broker.port, "cloud-bridge", "bridge-a", &store);
    runtime.block_on(async {
        for (i, e) in events.iter_mut().enumerate() {
            let response = e.next("response", Duration::from_secs(20)).await;
            assert_eq!(response["conversation_id"], format!("c-4-{i}"));
            assert!(response["text"].as_str().unwrap().contains("recall"));
        }
    });
}

/// A car's MQTT client (its certificate, so the ACL applies) subscribed to its responses.
fn raw_car(w: &World, thing: &str) -> (rumqttc::Client, rumqttc::Connection) {
    let (cert, key) = w.pki.issue(thing, &[]);
    let mut options = rumqttc::MqttOptions::new(thing, "localhost", w.broker.port);
    options
        .set_max_packet_size(256 * 1024, 256 * 1024)
        .set_inflight(100)
        .set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: std::fs::read(w.pki.ca_file()).unwrap(),
            alpn: None,
            client_auth: Some((std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())),
        }));
    let (client, connection) = rumqttc::Client::new(options, 4096);
    client
        .subscribe(format!("kestrel/v1/cars/{thing}/responses"), rumqttc::QoS::AtLeastOnce)
        .unwrap();
    (client, connection)
}

#[test]
fn a_redelivered_escalation_is_answered_once_and_a_malformed_one_is_dropped_with_a_count() {
    let Some(w) = world() else { return };
    let bridge = w.bridge("bridge-a");
    let (client, mut connection) = raw_car(&w, "car-6");
    let envelope = traffic_escalation("car-6", 1);
    let payload = protocol::encode(&envelope).unwrap();
    let topic = "kestrel/v1/cars/car-6/escalations";
    for body in [payload.clone(), b"{not json".to_vec(), payload, vec![0xff, 0xfe, 0x00]] {
        client.publish(topic, rumqttc::QoS::AtLeastOnce, false, body).unwrap();
    }
    // A copy that comes after the answer gets the stored reply again, byte for
    // byte: the same message id, which a car drops.
    let (mut responses, mut acks) = (HashSet::new(), 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)))) =
            connection.recv_timeout(Duration::from_millis(100))
        {
            let reply = protocol::decode(&p.payload).unwrap();
            match reply.body {
                protocol::Body::Response(r) if r.in_reply_to == envelope.message_id => {
                    assert!(acks >= 1, "the acknowledgement comes before the answer");
                    responses.insert(reply.message_id);
                }
                protocol::Body::Ack(a) if a.acknowledges == envelope.message_id => acks += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(responses.len(), 1, "one answer");
    assert_eq!(acks, 2, "each copy is acknowledged");
    let (_, metrics) = bridge.get("/metrics").unwrap();
    assert!(metrics.contains("cloud_bridge_duplicates_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"cloud_bridge_messages_rejected_total{kind="malformed"} 2"#),
        "{metrics}"
    );
    assert_eq!(bridge.handled(), 1);
}

#[test]
fn two_instances_on_one_shared_subscription_split_a_thousand_escalations_and_none_twice() {
    let Some(w) = world() else { return };
    let a = w.bridge("bridge-a");
    let b = w.bridge("bridge-b");
    const N: usize = 1000;
    // One car sends a burst (its certificate and ACL allow its own topics only).
    let (client, mut connection) = raw_car(&w, "car-9");
    let mut sent = HashSet::new();
    for i in 0..N {
        let envelope = traffic_escalation("car-9", i);
        sent.insert(envelope.message_id);
        client
            .publish(
                "kestrel/v1/cars/car-9/escalations",
                rumqttc::QoS::AtLeastOnce,
                false,
                protocol::encode(&envelope).unwrap(),
            )
            .unwrap();
    }
    let mut answered = HashSet::new();
    let mut responses = 0;
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    // Until every escalation is answered, then a quiet second to catch any extra.
    while quiet_since.is_none_or(|q| q.elapsed() < Duration::from_secs(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {N} answered",
            answered.len()
        );
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)))) => {
                if let protocol::Body::Response(r) = protocol::decode(&p.payload).unwrap().body {
                    answered.insert(r.in_reply_to);
                    responses += 1;
                }
            }
            Ok(Err(e)) => panic!("the car's connection failed: {e}"),
            _ => {}
        }
        if answered.len() == N && quiet_since.is_none() {
            quiet_since = Some(Instant::now());
        }
    }
    assert_eq!(answered, sent, "every escalation answered");
    // Separate stores: an escalation handled by both would count twice here.
    let (ha, hb) = (a.handled() as usize, b.handled() as usize);
    assert_eq!(ha + hb, N, "handled {ha} + {hb}");
    assert_eq!(responses, N, "one response per escalation");
    for share in [ha, hb] {
        assert!((N * 3 / 10..=N * 7 / 10).contains(&share), "a split of {ha}/{hb}");
    }
    say!("split: {ha} / {hb} in {:?}", started.elapsed());
}

#[test]
fn in_bedrock_mode_the_binary_reaches_the_endpoint_with_credentials_from_the_default_chain() {
    use cloud_bridge::testing::{text_reply, tool_reply, AwsStandIn, Step, ACCESS_KEY, REGION, SECRET_KEY};
    let Some(w) = world() else { return };
    let runtime = testkit::threaded_runtime();
    let aws = runtime.block_on(AwsStandIn::start());
    for _ in 0..4 {
        aws.then(|request| {
            if request["toolConfig"]["toolChoice"]["tool"]["name"] == "record_understanding" {
                Step::Reply(tool_reply(
                    "u",
                    "record_understanding",
                    serde_json::json!({"intent": "recall_warranty", "sentiment": "neutral", "sentiment_score": 0.0}),
                ))
            } else {
                Step::Reply(text_reply(
                    "There is one open recall on your Voyager; your dealer fixes it for free.",
                ))
            }
        });
    }
    let endpoint = aws.endpoint();
    let _bridge = w.bridge_with(
        "bridge-bedrock",
        &[
            ("CLOUD_BRIDGE__LLM__PROVIDER", "bedrock"),
            ("CLOUD_BRIDGE__LLM__ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let car = w.car("car-5");
    runtime.block_on(async {
        let mut events = Events::open(&car.socket, "c-5").await;
        let (_, turn) = ask(&car.socket, "are there any recalls on my car", "c-5").await;
        assert_eq!(turn["escalation"]["status"], "pending", "{turn}");
        let response = events.next("response", Duration::from_secs(20)).await;
        assert_eq!(
            response["text"],
            "There is one open recall on your Voyager; your dealer fixes it for free."
        );
        assert_eq!(
            response["answered_by"],
            "bedrock:anthropic.claude-3-haiku-20240307-v1:0"
        );
    });
    assert!(!aws.seen().is_empty());
    assert_eq!(
        aws.violations(),
        Vec::<String>::new(),
        "every request well-formed and signed"
    );
}
