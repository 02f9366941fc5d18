//! cloud-bridge's throughput and latency through a loopback mosquitto, with the
//! dedupe claim and every store write included and a provider that answers at
//! once (the local one, on an intent it answers without tools). Cars publish open
//! loop at a fixed rate; latency is from the car's publish to the car receiving
//! the response. Prints its figures; needs mosquitto (apt-get install mosquitto).
//!
//! `cargo bench -p e2e --bench escalations [-- RATE SECONDS]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_bridge::config::Config;
use cloud_bridge::metrics::Metrics;
use cloud_bridge::supervisor::Supervisor;

const CARS: usize = 4;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let Some(binary) = e2e::mosquitto_binary() else {
        eprintln!("SKIP: mosquitto is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, port) = start_fast_broker(&binary, dir.path());
    let config = bridge_config(port, dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(load_the_bridge(config, port, rate, seconds));
    broker.kill().ok();
    broker.wait().ok();
    report(rate, seconds, result);
}

/// mosquitto on a free loopback port, tuned for throughput (no persistence,
/// deep queues, no Nagle); the process and its port.
fn start_fast_broker(binary: &std::path::Path, dir: &std::path::Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"),
    )
    .unwrap();
    let broker = std::process::Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (broker, port)
}

/// cloud-bridge's config on the broker at `port`, its store in `dir`.
fn bridge_config(port: u16, dir: &std::path::Path) -> Config {
    Config::layered(
        None,
        [
            ("CLOUD_BRIDGE__MQTT__PORT", port.to_string()),
            ("CLOUD_BRIDGE__STORE__PATH", dir.join("cb.sqlite").display().to_string()),
            ("CLOUD_BRIDGE__HTTP__LISTEN", "127.0.0.1:0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap()
}

/// cloud-bridge's service with the local provider, loaded by the cars; their
/// figures, after printing the bridge's own handling time.
async fn load_the_bridge(config: Config, port: u16, rate: u64, seconds: u64) -> (usize, Vec<Duration>, Duration) {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let stores = cloud_bridge::assemble::open_stores(&config).unwrap();
    let knowledge = tokio::task::block_in_place(|| cloud_bridge::assemble::open_knowledge(&config)).unwrap();
    let supervisor = Arc::new(Supervisor::new(
        stores,
        Arc::new(cloud_bridge::llm::local::LocalProvider),
        Some(knowledge),
        config.clone(),
        metrics.clone(),
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(cloud_bridge::service::run(
        config,
        supervisor,
        metrics.clone(),
        None,
        shutdown.clone(),
    ));
    while !metrics.connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The cars run on their own runtime and threads, as they would elsewhere.
    let cars = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(load(port, rate, seconds))
    });
    let result = tokio::task::spawn_blocking(move || cars.join().unwrap()).await.unwrap();
    let text = metrics.encode();
    let read = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        read("cloud_bridge_handling_seconds_sum"),
        read("cloud_bridge_handling_seconds_count"),
    );
    println!(
        "inside cloud-bridge: {count:.0} handled, mean {:.3} ms from claim to response ready",
        sum / count.max(1.0) * 1e3
    );
    shutdown.cancel();
    let _ = service.await;
    result
}

/// The throughput and latency figures of a run.
fn report(rate: u64, seconds: u64, result: (usize, Vec<Duration>, Duration)) {
    let (sent, mut latencies, wall) = result;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "escalations: offered {rate}/s for {seconds} s through mosquitto: {} sent, {} answered ({} lost) in {:.2} s = {:.0}/s",
        sent,
        latencies.len(),
        sent - latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "latency publish -> response: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}

/// `CARS` cars publishing open loop at `rate` in total for `seconds`: the count
/// sent, every latency, and the time until the last response.
async fn load(port: u16, rate: u64, seconds: u64) -> (usize, Vec<Duration>, Duration) {
    let sent_at: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let total = (rate * seconds) as usize;
    let mut clients = Vec::new();
    for car in 0..CARS {
        let thing = format!("bench-car-{car}");
        let mut options = rumqttc::MqttOptions::new(&thing, "127.0.0.1", port);
        options.set_inflight(200).set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 4096);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        client
            .subscribe(format!("kestrel/v1/cars/{thing}/responses"), rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let (sent_at, latencies) = (sent_at.clone(), latencies.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        let now = Instant::now();
                        if let Ok(protocol::Envelope {
                            body: protocol::Body::Response(r),
                            ..
                        }) = protocol::decode(&p.payload)
                        {
                            if let Some(at) = sent_at.lock().unwrap().remove(&r.in_reply_to) {
                                latencies.lock().unwrap().push(now - at);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench car: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        clients.push((thing, client));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        let (thing, client) = &clients[i % CARS];
        let envelope = e2e::traffic_escalation(thing, i);
        let payload = protocol::encode(&envelope).unwrap();
        sent_at.lock().unwrap().insert(envelope.message_id, Instant::now());
        client
            .publish(
                format!("kestrel/v1/cars/{thing}/escalations"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = started.elapsed();
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    (total, latencies, wall)
}
