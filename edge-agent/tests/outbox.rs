//! The uplink's bookkeeping against a fake link the test drives: PUBACKs paired
//! with their rows whatever their order, and what was not acknowledged sent again
//! on the next connection, under the same message id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::dialogue::Assistant;
use edge_agent::engine::Engine;
use edge_agent::store::{NewEscalation, Priority, QueuePolicy, Retention, Store};
use edge_agent::uplink::fake::FakeConnector;
use edge_agent::vehicle::{Vehicle, VehicleState};
use edge_agent::{knowledge_base, locate};

fn engine(dir: &std::path::Path, queued: usize) -> Arc<Engine> {
    let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
    let embedder = Arc::new(knowledge_base::ModelEmbedder::new(classifier.clone()));
    let db = dir.join("kb.sqlite");
    knowledge_base::build(&locate::find_pack_dir("").unwrap(), &db, embedder.as_ref()).unwrap();
    let kb = Arc::new(knowledge::KnowledgeBase::open(&db, embedder).unwrap());
    let store = Store::open(
        &dir.join("edge-agent.sqlite"),
        Retention {
            days: 30,
            max_turns_per_conversation: 100,
        },
    )
    .unwrap();
    for i in 0..queued {
        let payload = serde_json::json!({
            "utterance": format!("request {i}"), "intent": "book_service", "intent_confidence": 0.9,
            "sentiment": "neutral", "sentiment_score": 0.0, "locale": "en", "market": "US", "priority": "normal"
        });
        let new = NewEscalation {
            conversation_id: "c",
            priority: Priority::Normal,
            intent: "book_service",
            payload: &payload,
        };
        store
            .queue_escalation(&new, jiff::Timestamp::now(), &QueuePolicy::default())
            .unwrap();
    }
    let assistant = Assistant::new(Config::embedded(), classifier, kb);
    Arc::new(Engine::new(assistant, Vehicle::new(VehicleState::demo()), store))
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn message_id(payload: &[u8]) -> uuid::Uuid {
    protocol::decode(payload).unwrap().message_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_any_order_remove_their_own_rows_and_the_rest_go_again_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 3);
    let (connector, broker) = FakeConnector::new();
    let mut config = Config::embedded().uplink;
    config.host = "fake".into();
    config.publish_per_second = 0;
    config.backoff_initial_ms = 10;
    config.backoff_max_ms = 20;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(edge_agent::uplink::run(
        connector,
        engine.clone(),
        config,
        None,
        shutdown.clone(),
    ));

    let published = broker.published.clone();
    until("three publishes", || published.lock().unwrap().len() == 3).await;
    let first: Vec<(usize, u16, uuid::Uuid)> = published
        .lock()
        .unwrap()
        .iter()
        .map(|(c, p, _, payload)| (*c, *p, message_id(payload)))
        .collect();
    assert_eq!(
        first.iter().map(|(c, p, _)| (*c, *p)).collect::<Vec<_>>(),
        [(1, 1), (1, 2), (1, 3)]
    );

    // Out of order: the third, then the first.
    broker.ack(3);
    broker.ack(1);
    let e = engine.clone();
    until("two rows gone", move || e.health().unwrap().pending_escalations == 1).await;
    let left = engine.outbox_next(10, &Default::default()).unwrap();
    assert_eq!(left[0].message_id, Some(first[1].2), "the unacknowledged one stays");

    // The connection drops: the next one sends it again, with its own id.
    broker.fail();
    until("the resend", || published.lock().unwrap().len() == 4).await;
    // The connection flapped well within a second of its CONNECT, and the backoff
    // is 10 ms: the reconnect still waited for IoT Core's one CONNECT per second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "reconnected after {:?}",
        started.elapsed()
    );
    let (connection, pkid, _, payload) = published.lock().unwrap()[3].clone();
    assert_eq!((connection, pkid), (2, 1));
    assert_eq!(message_id(&payload), first[1].2);
    broker.ack(1);
    let e = engine.clone();
    until("an empty outbox", move || e.health().unwrap().pending_escalations == 0).await;

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
