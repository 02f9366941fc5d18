//! The uplink's bookkeeping against a fake link the test drives: PUBACKs paired
//! with their rows whatever their order (they mark a row `sent`, nothing more),
//! the cloud's acknowledgements removing their own rows, and what the cloud did
//! not acknowledge sent again on the next connection, under the same message id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::locate;
use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::dialogue::Assistant;
use edge_agent::engine::Engine;
use edge_agent::knowledge_base;
use edge_agent::store::{NewEscalation, Priority, QueuePolicy, Retention, Store};
use edge_agent::uplink::fake::{FakeBroker, FakeConnector};
use edge_agent::vehicle::{Vehicle, VehicleState};

/// The car's store in `dir`, as the engine (or another process) opens it.
fn open_store(dir: &std::path::Path) -> Store {
    Store::open(
        &dir.join("edge-agent.sqlite"),
        Retention {
            days: 30,
            max_turns_per_conversation: 100,
        },
    )
    .unwrap()
}

fn engine(dir: &std::path::Path, queued: usize) -> Arc<Engine> {
    let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
    let db = dir.join("kb.sqlite");
    knowledge_base::build(&locate::find_pack_dir("").unwrap(), &db, embedder.as_ref()).unwrap();
    let kb = Arc::new(knowledge::KnowledgeBase::open(&db, embedder).unwrap());
    let store = open_store(dir);
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

const RESPONSES: &str = "kestrel/v1/cars/kestrel-demo-car/responses";

fn message_id(payload: &[u8]) -> uuid::Uuid {
    protocol::decode(payload).unwrap().message_id
}

/// The embedded uplink config for the fake link: no publish throttle, and
/// reconnects after 10 to 20 ms.
fn fast_uplink_config() -> edge_agent::config::UplinkConfig {
    let mut config = Config::embedded().uplink;
    config.host = "fake".into();
    config.publish_per_second = 0;
    config.backoff_initial_ms = 10;
    config.backoff_max_ms = 20;
    config
}

type Events = tokio::sync::broadcast::Receiver<edge_agent::event_log::Numbered<edge_agent::engine::Event>>;

/// The ids of the next `count` escalations the engine reports as sent.
async fn marked_sent(events: &mut Events, count: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < count {
        assert!(started.elapsed() < Duration::from_secs(10), "sent: {seen:?}");
        while let Ok(numbered) = events.try_recv() {
            if let edge_agent::engine::Event::Escalation {
                escalation_id, status, ..
            } = numbered.event
            {
                if status == "sent" {
                    seen.push(escalation_id);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// The cloud's end-to-end acknowledgement of message `id`, on the responses topic.
fn cloud_acknowledges(broker: &FakeBroker, id: uuid::Uuid) {
    let ack = protocol::Envelope::new(
        "kestrel-demo-car",
        None,
        protocol::Body::Ack(protocol::Ack { acknowledges: id }),
    );
    broker.deliver(RESPONSES, protocol::encode(&ack).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_any_order_remove_their_own_rows_and_the_rest_go_again_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 3);
    let (connector, broker) = FakeConnector::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut events = engine.subscribe();
    let started = Instant::now();
    let task = tokio::spawn(edge_agent::uplink::run(
        connector,
        engine.clone(),
        fast_uplink_config(),
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

    // PUBACKs out of order, the third, then the first: each marks its own row
    // sent, and no row leaves the outbox for it.
    broker.ack(3);
    broker.ack(1);
    let mut seen = marked_sent(&mut events, 2).await;
    seen.sort_unstable();
    assert_eq!(seen, [1, 3], "each PUBACK marks its own row");
    assert_eq!(
        engine.health().unwrap().pending_escalations,
        3,
        "a PUBACK removes nothing"
    );

    // The cloud acknowledges the first and the third.
    for (_, _, id) in [first[2], first[0]] {
        cloud_acknowledges(&broker, id);
    }
    let e = engine.clone();
    until("two rows gone", move || e.health().unwrap().pending_escalations == 1).await;
    let left = engine.outbox().next(10, &Default::default()).unwrap();
    assert_eq!(left[0].message_id, Some(first[1].2), "the unacknowledged one stays");

    // The connection drops: the next one sends it again, with its own id, and
    // only it.
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
    cloud_acknowledges(&broker, first[1].2);
    let e = engine.clone();
    until("an empty outbox", move || e.health().unwrap().pending_escalations == 0).await;
    assert_eq!(published.lock().unwrap().len(), 4, "nothing acknowledged went again");

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A car stopped after it had seen the cloud's answer but before it recorded it:
/// the cloud's copy sent again (the same envelope, after the car asks again) is
/// taken, not dropped as a repeat; once recorded, a further copy is dropped.
#[test]
fn an_answer_seen_but_never_recorded_is_taken_from_the_clouds_copy() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1);
    let other_process = open_store(dir.path());
    let escalation = other_process.pending_escalations().unwrap()[0]
        .message_id
        .expect("queued with its message id");
    engine.outbox().acknowledged(&escalation).unwrap();
    let envelope = uuid::Uuid::now_v7();
    // What the stopped car got done: the envelope marked seen, nothing else.
    assert!(other_process.first_sight(&envelope, jiff::Timestamp::now()).unwrap());
    assert_eq!(other_process.answer_recorded(&escalation).unwrap(), Some(false));
    let response = || protocol::Response {
        in_reply_to: escalation,
        text: "Your service is booked for Friday at 9.".into(),
        actions: Vec::new(),
        handoff: None,
        more_to_come: false,
        answered_by: Some("local".into()),
    };
    engine.deliver_response(envelope, Some("c".into()), response());
    assert_eq!(other_process.answer_recorded(&escalation).unwrap(), Some(true));
    let answers = |store: &Store| store.turns("c").unwrap().iter().filter(|t| t.from_cloud).count();
    assert_eq!(answers(&other_process), 1);
    engine.deliver_response(envelope, Some("c".into()), response());
    assert_eq!(answers(&other_process), 1, "a copy of a recorded answer is dropped");
}

/// The cloud's answer that asks the driver something ("shall I book it?") is
/// the question the next yes or no answers: the reply goes back to the cloud
/// under what it asked about. An answer that asks nothing leaves a yes with
/// nothing to confirm.
#[test]
fn a_yes_after_the_clouds_question_goes_back_to_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 0);
    let store = open_store(dir.path());
    let ask = |text: &str| engine.ask(uuid::Uuid::now_v7(), "c", text).unwrap().turn;
    let booking = ask("book a service for friday morning");
    assert!(booking.escalation.is_some(), "{}", booking.answer);
    let escalation = store.pending_escalations().unwrap()[0].message_id.unwrap();
    let answer = |text: &str| protocol::Response {
        in_reply_to: escalation,
        text: text.into(),
        actions: Vec::new(),
        handoff: None,
        more_to_come: false,
        answered_by: Some("local".into()),
    };
    engine.deliver_response(
        uuid::Uuid::now_v7(),
        Some("c".into()),
        answer("Bayview Motors has Friday at 9. Shall I book it?"),
    );
    let yes = ask("yes please");
    assert_eq!(yes.pending_question, None);
    assert!(yes.answer.contains("told Kestrel Assist yes"), "{}", yes.answer);
    let sent = store.pending_escalations().unwrap();
    let reply = sent.last().unwrap();
    assert_eq!(
        (reply.intent.as_str(), reply.payload["utterance"].as_str()),
        ("book_service", Some("yes please"))
    );

    engine.deliver_response(
        uuid::Uuid::now_v7(),
        Some("c".into()),
        answer("You're booked for Friday at 9."),
    );
    let polite = ask("yes");
    assert!(polite.escalation.is_none(), "{}", polite.answer);
    assert_eq!(store.pending_escalations().unwrap().len(), sent.len());
}
