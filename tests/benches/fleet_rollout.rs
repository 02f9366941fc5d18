//! A fleet update reaching many cars: a ~1 MB signed bundle, announced once
//! (retained) on a loopback broker (rumqttd), downloaded by every car from a
//! loopback HTTPS server (the test CA), verified and applied by each car's own
//! updater (its own state folder and knowledge base, the compact encoder).
//!
//! cargo bench -p e2e --bench fleet_rollout [-- CARS]
//!
//! Counts verified applies, not notices received. The cars share this machine's
//! two cores, so at most four apply at once (a real car has its own CPU).

use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::locate;
use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::fleet::Outcome;
use edge_agent::knowledge_base;
use knowledge::bundle::{Payload, SigningKey, Targets, TrustedKeys};
use testkit::blob_server::BlobServer;

fn main() {
    let cars: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let runtime = testkit::threaded_runtime();
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    testkit::start_broker(port);
    let server = runtime.block_on(BlobServer::start());
    let ca = server.write_ca(dir.path());
    let key = SigningKey::generate().unwrap();

    // One model for every car, and the shipped base compiled once and copied.
    let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier));
    let template_config = car_config(&dir.path().join("template"), "template", &key, &ca);
    let template = knowledge_base::open(&template_config, embedder.clone()).unwrap();
    let payload = one_megabyte_payload(&template);
    let bytes = payload.to_bytes();
    server.put("/stable/2", bytes.clone());
    let manifest = testkit::bundle::manifest(2, &payload, &bytes, &server.url("/stable/2"), Targets::default());
    let notice = testkit::bundle::notice(&key, &manifest);
    let envelope = protocol::encode(&protocol::Envelope::new(
        "fleet-ops",
        None,
        protocol::Body::KnowledgeManifest(notice),
    ))
    .unwrap();
    let base = template_config.state_dir().join("knowledge.sqlite");
    drop(template);

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant, u64)>();
    let (subscribed_tx, mut subscribed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let fleet = Fleet {
        port,
        topic: protocol::Topics::default().fleet_knowledge("stable").unwrap(),
        done: done_tx,
        subscribed: subscribed_tx,
        applying: Arc::new(tokio::sync::Semaphore::new(4)),
    };
    for n in 0..cars {
        let thing = format!("car-{n:03}");
        let state = dir.path().join(&thing);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::copy(&base, state.join("knowledge.sqlite")).unwrap();
        let config = car_config(&state, &thing, &key, &ca);
        let kb = knowledge_base::open(&config, embedder.clone()).unwrap();
        let updater =
            Arc::new(edge_agent::fleet::updater_for(&config, Arc::new(arc_swap::ArcSwap::from_pointee(kb))).unwrap());
        runtime.spawn(fleet.clone().follow(thing, updater));
    }
    runtime.block_on(async {
        for _ in 0..cars {
            subscribed_rx.recv().await.unwrap();
        }
    });
    println!(
        "{cars} cars subscribed; payload {:.2} MB, {} articles",
        bytes.len() as f64 / 1e6,
        payload.article_count
    );

    let started = Instant::now();
    runtime.block_on(announce(port, &fleet.topic, envelope));
    let (finished, downloaded) = runtime.block_on(applied_by_all(&mut done_rx, cars, started));
    println!(
        "{cars} cars verified and applied version 2 in {:.1} s (first {:.2} s, median {:.1} s); {:.0} MB downloaded",
        started.elapsed().as_secs_f64(),
        finished[0].as_secs_f64(),
        finished[cars / 2].as_secs_f64(),
        downloaded as f64 / 1e6
    );
}

/// A payload of about 1 MB: the shipped articles, then distinct variants.
fn one_megabyte_payload(template: &knowledge::KnowledgeBase) -> Payload {
    let shipped = template.articles().unwrap();
    let mut articles = shipped.clone();
    let mut i = 0;
    while Payload::full(template.meta(), articles.clone()).to_bytes().len() < 1_000_000 {
        for _ in 0..50 {
            let mut a = shipped[i % shipped.len()].clone();
            a.id = format!("variant-{i:05}");
            a.summary = format!("{} Variant {i}.", a.summary);
            articles.push(a);
            i += 1;
        }
    }
    Payload::full(template.meta(), articles)
}

/// What every car shares: the broker, the channel's topic, where to say it
/// subscribed and applied, and the four apply slots of this machine.
#[derive(Clone)]
struct Fleet {
    port: u16,
    topic: String,
    done: tokio::sync::mpsc::UnboundedSender<(String, Instant, u64)>,
    subscribed: tokio::sync::mpsc::UnboundedSender<()>,
    applying: Arc<tokio::sync::Semaphore>,
}

impl Fleet {
    /// One car: subscribes to the channel, and applies each notice it hears.
    async fn follow(self, thing: String, updater: Arc<edge_agent::fleet::Updater>) {
        let mut options = rumqttc::MqttOptions::new(&thing, "127.0.0.1", self.port);
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
        client.subscribe(&self.topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = self.subscribed.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) if p.topic == self.topic => {
                    let protocol::Body::KnowledgeManifest(notice) = protocol::decode(&p.payload).unwrap().body else {
                        continue;
                    };
                    tokio::spawn(self.clone().apply(thing.clone(), updater.clone(), notice));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Applies `notice` in one of the apply slots, retrying transient failures.
    async fn apply(
        self,
        thing: String,
        updater: Arc<edge_agent::fleet::Updater>,
        notice: protocol::KnowledgeManifestNotice,
    ) {
        let _slot = self.applying.acquire().await.unwrap();
        loop {
            match updater.handle(&notice).await {
                Ok(Outcome::Applied(a)) => {
                    let _ = self
                        .done
                        .send((thing, Instant::now(), a.fetched.map_or(0, |f| f.received)));
                    return;
                }
                Ok(other) => panic!("{thing}: {other:?}"),
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("{thing}: {e}"),
            }
        }
    }
}

/// Fleet ops announce the notice once, retained.
async fn announce(port: u16, topic: &str, envelope: Vec<u8>) {
    let mut options = rumqttc::MqttOptions::new("fleet-ops", "127.0.0.1", port);
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    let (ops, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    ops.publish(topic, rumqttc::QoS::AtLeastOnce, true, envelope)
        .await
        .unwrap();
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
}

/// Each car's time to its verified apply, in order, and the bytes downloaded.
async fn applied_by_all(
    done: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant, u64)>,
    cars: usize,
    started: Instant,
) -> (Vec<Duration>, u64) {
    let mut finished = Vec::new();
    let mut downloaded = 0u64;
    while finished.len() < cars {
        let (_, at, bytes) = tokio::time::timeout(Duration::from_secs(300), done.recv())
            .await
            .expect("every car applies within 5 minutes")
            .unwrap();
        downloaded += bytes;
        finished.push(at.duration_since(started));
    }
    (finished, downloaded)
}

fn car_config(state: &std::path::Path, thing: &str, key: &SigningKey, ca: &std::path::Path) -> Config {
    let mut config = Config::embedded();
    config.state.dir = state.display().to_string();
    config.uplink.thing_name = thing.into();
    config.fleet.channel = "stable".into();
    config.fleet.ca_file = ca.display().to_string();
    config.fleet.keys = TrustedKeys::default().with_key(key, false);
    config
}
