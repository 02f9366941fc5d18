//! The outbox and the uplink, on this machine's disk (not tmpfs).
//!
//! cargo bench -p edge-agent --bench uplink
//!
//! 1. Enqueue latency with `synchronous=FULL` (each escalation synced before the
//!    driver is told), p50/p99 over 2,000 escalations.
//! 2. Drain: 5,000 escalations queued while offline, then delivered to a loopback
//!    broker (rumqttd) with the publish throttle off, and acknowledged by a client
//!    playing cloud-bridge (the outbox empties only on the cloud's `ack`):
//!    escalations per second from the connection to an empty outbox.
//! 3. The daemon's peak RSS with 100,000 escalations queued (maximum raised).

use std::path::Path;
use std::time::{Duration, Instant};

use edge_agent::store::{NewEscalation, Priority, QueuePolicy, Retention, Store};

/// A realistic escalation: an utterance, five recent turns, a vehicle snapshot.
fn payload(i: usize) -> serde_json::Value {
    let mut vehicle = serde_json::to_value(edge_agent::vehicle::VehicleState::demo()).unwrap();
    vehicle["odometer_km"] = serde_json::json!(20_000 + i);
    serde_json::json!({
        "utterance": format!("book a service for friday morning please, request {i}"),
        "intent": "book_service", "intent_confidence": 0.97, "top_intent": "book_service",
        "sentiment": "neutral", "sentiment_score": 0.02, "vehicle": vehicle,
        "recent_turns": (0..5).map(|t| serde_json::json!({
            "text": format!("how much fuel do i have left {t}"),
            "answer": "You have 62% fuel, about 250 miles, and the battery is at 58%, good for 24 miles electric.",
            "intent": "fuel_level"})).collect::<Vec<_>>(),
        "locale": "en", "market": "US", "priority": "normal"
    })
}

fn fill(state: &Path, n: usize) -> Vec<f64> {
    std::fs::create_dir_all(state).unwrap();
    let store = Store::open(
        &state.join("edge-agent.sqlite"),
        Retention {
            days: 30,
            max_turns_per_conversation: 500,
        },
    )
    .unwrap();
    let policy = QueuePolicy {
        max_queued: n + 1,
        ..QueuePolicy::default()
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let payload = payload(i);
        let new = NewEscalation {
            conversation_id: "bench",
            priority: Priority::Normal,
            intent: "book_service",
            payload: &payload,
        };
        let started = Instant::now();
        store.queue_escalation(&new, jiff::Timestamp::now(), &policy).unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times
}

/// A client playing cloud-bridge: it acknowledges every escalation it reads, as
/// cloud-bridge does after its claim, and subscribes again on every connection
/// (as cloud-bridge does). Returns once its first subscription holds; a lost
/// connection is said on stderr, since the drain figure then includes the car's
/// re-sends.
fn acknowledging_cloud(port: u16) {
    const ESCALATIONS: &str = "kestrel/v1/cars/+/escalations";
    let mut options = rumqttc::MqttOptions::new("bench-cloud", "127.0.0.1", port);
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    // No more than the broker lets a client have in flight (rumqttd's
    // max_inflight_count in the test broker).
    options.set_inflight(100);
    let (client, mut connection) = rumqttc::Client::new(options, 10_000);
    let (subscribed, first_subscription) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                    client.try_subscribe(ESCALATIONS, rumqttc::QoS::AtLeastOnce).unwrap();
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                    let _ = subscribed.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                    if let Ok(escalation) = protocol::decode(&p.payload) {
                        testkit::acknowledge(&client, &escalation);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("bench cloud: connection lost ({error}); reconnecting");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    first_subscription
        .recv_timeout(Duration::from_secs(10))
        .expect("the bench cloud could not subscribe");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // On disk: /var/tmp, not the tmpfs some systems mount on /tmp.
    let root = tempfile::tempdir_in("/var/tmp").unwrap();

    let mut times = fill(&root.path().join("enqueue"), 2_000);
    times.sort_by(f64::total_cmp);
    println!(
        "outbox enqueue, synchronous=FULL, on disk: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} escalations)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap(),
        times.len()
    );

    let runtime = testkit::runtime();
    measure_drain(root.path(), &runtime);
    measure_rss_with_a_big_queue(root.path(), &runtime);
}

/// Drains 5,000 queued escalations to a loopback broker and an acknowledging
/// cloud, throttle off, 50 in flight; prints the rate.
fn measure_drain(root: &std::path::Path, runtime: &tokio::runtime::Runtime) {
    let drain = root.join("drain");
    const DRAIN: usize = 5_000;
    fill(&drain, DRAIN);
    let broker_port = testkit::free_port();
    testkit::start_broker(broker_port);
    acknowledging_cloud(broker_port);
    let port = broker_port.to_string();
    let env = [
        ("EDGE_AGENT__UPLINK__HOST", "127.0.0.1"),
        ("EDGE_AGENT__UPLINK__PORT", port.as_str()),
        ("EDGE_AGENT__UPLINK__TLS", "false"),
        ("EDGE_AGENT__UPLINK__THING_NAME", "bench-car"),
        ("EDGE_AGENT__UPLINK__INFLIGHT", "50"),
        ("EDGE_AGENT__UPLINK__PUBLISH_PER_SECOND", "0"),
        ("EDGE_AGENT__OUTBOX__MAX_QUEUED", "200000"),
    ];
    let daemon = testkit::Daemon::start_in(&drain, &env);
    let (started, finished) = runtime.block_on(async {
        let mut connected_at = None;
        loop {
            let (_, body) = edge_agent::client::request(&daemon.socket, hyper::Method::GET, "/v1/health", None)
                .await
                .unwrap();
            let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if connected_at.is_none() && health["uplink"]["state"] == "connected" {
                connected_at = Some(Instant::now());
            }
            if health["pending_escalations"] == 0 {
                break (connected_at.unwrap_or_else(Instant::now), Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let seconds = finished.duration_since(started).as_secs_f64().max(1e-3);
    println!(
        "drain to a loopback broker and an acknowledging cloud, throttle off, 50 in flight: {DRAIN} escalations in {seconds:.2} s = {:.0}/s",
        DRAIN as f64 / seconds
    );
    drop(daemon);
}

/// The daemon's peak RSS with 100,000 escalations queued and no broker.
fn measure_rss_with_a_big_queue(root: &std::path::Path, runtime: &tokio::runtime::Runtime) {
    let big = root.join("big");
    const QUEUED: usize = 100_000;
    let filled = Instant::now();
    fill(&big, QUEUED);
    println!(
        "(queued {QUEUED} escalations in {:.1} s)",
        filled.elapsed().as_secs_f64()
    );
    // Offline: nothing listens on the uplink's port.
    let closed = testkit::free_port().to_string();
    let env = [
        ("EDGE_AGENT__UPLINK__HOST", "127.0.0.1"),
        ("EDGE_AGENT__UPLINK__PORT", closed.as_str()),
        ("EDGE_AGENT__UPLINK__TLS", "false"),
        ("EDGE_AGENT__OUTBOX__MAX_QUEUED", "200000"),
    ];
    let daemon = testkit::Daemon::start_in(&big, &env);
    runtime.block_on(async {
        for i in 0..20 {
            let (_, turn) = testkit::ask(&daemon.socket, "book a service for friday", &format!("b-{i}")).await;
            assert_eq!(turn["escalation"]["status"], "pending");
        }
        let (_, body) = edge_agent::client::request(&daemon.socket, hyper::Method::GET, "/v1/health", None)
            .await
            .unwrap();
        let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
        println!(
            "daemon peak RSS with {} escalations queued: {:.1} MB",
            health["pending_escalations"],
            testkit::peak_rss_mb(daemon.child.id())
        );
    });
}
