//! The supervisor pipeline with the local provider (no model): routing, the
//! emergency protocol, handoffs, the keyword re-check, and deterministic booking.

use std::sync::Arc;

use cloud_bridge::llm::local::LocalProvider;
use cloud_bridge::metrics::Metrics;
use cloud_bridge::store::{AppointmentStatus, Stores};
use cloud_bridge::supervisor::{Handled, Supervisor};
use protocol::{Body, Envelope, Escalation, HandoffStatus, Priority};

fn supervisor() -> (Supervisor, Stores, tempfile::TempDir) {
    let (config, stores, dir) = crate::common::temp_stores();
    let supervisor = Supervisor::new(
        stores.clone(),
        Arc::new(LocalProvider),
        None,
        Arc::new(config),
        Metrics::new(),
    );
    (supervisor, stores, dir)
}

async fn handle(
    s: &Supervisor,
    text: &str,
    intent: &str,
    confidence: f32,
    priority: Priority,
    market: &str,
) -> Handled {
    let escalation = Escalation {
        utterance: text.into(),
        intent: intent.parse().expect("a contract label"),
        intent_confidence: confidence,
        top_intent: None,
        top_confidence: None,
        sentiment: protocol::Sentiment::Negative,
        sentiment_score: -0.5,
        vehicle: serde_json::Value::Null,
        recent_turns: vec![],
        locale: "en-GB".into(),
        market: market.into(),
        priority,
    };
    let envelope = Envelope::new("car-1", Some("c-1"), Body::Escalation(escalation.clone()));
    s.handle(&envelope, &escalation).await
}

#[tokio::test]
async fn an_emergency_gets_the_markets_number_and_an_urgent_handoff_ahead_of_the_queue() {
    let (s, stores, _dir) = supervisor();
    handle(
        &s,
        "i want to talk to someone",
        "talk_to_agent",
        0.9,
        Priority::Normal,
        "UK",
    )
    .await;
    let handled = handle(
        &s,
        "we crashed and there is smoke",
        "emergency",
        0.99,
        Priority::Urgent,
        "UK",
    )
    .await;
    assert!(
        handled.response.text.starts_with("Call 999 now"),
        "{}",
        handled.response.text
    );
    assert_eq!(handled.outcome.route, "urgent");
    let handoff = handled.response.handoff.unwrap();
    assert_eq!(
        (handoff.status, handoff.estimated_wait_seconds),
        (HandoffStatus::Queued, Some(0))
    );
    let queue = stores.handoffs.queued().unwrap();
    assert_eq!(queue.len(), 2);
    assert!(
        queue[0].urgent && queue[0].reason == "emergency",
        "the emergency is first in the queue"
    );
}

#[tokio::test]
async fn complaints_and_requests_for_a_person_go_to_the_queue_with_a_growing_wait() {
    let (s, stores, _dir) = supervisor();
    let first = handle(
        &s,
        "this repair was terrible",
        "complaint",
        0.95,
        Priority::Normal,
        "US",
    )
    .await;
    let second = handle(
        &s,
        "customer service please",
        "talk_to_agent",
        0.95,
        Priority::Normal,
        "US",
    )
    .await;
    assert!(first.response.text.starts_with("I'm sorry about that"));
    assert!(first.response.more_to_come);
    let wait = |h: &Handled| h.response.handoff.as_ref().unwrap().estimated_wait_seconds.unwrap();
    assert!(wait(&second) > wait(&first), "{} then {}", wait(&first), wait(&second));
    assert_eq!(stores.handoffs.queued().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unsure_label_is_corrected_by_the_keyword_rules_and_rerouted() {
    let (s, stores, _dir) = supervisor();
    let handled = handle(
        &s,
        "can i please speak to a human",
        "out_of_scope",
        0.3,
        Priority::Normal,
        "US",
    )
    .await;
    assert_eq!(handled.outcome.intent, "talk_to_agent");
    assert!(handled.outcome.correction.is_some());
    assert_eq!(handled.outcome.route, "human");
    assert_eq!(stores.handoffs.queued().unwrap().len(), 1);
    // A confident label is not second-guessed.
    let kept = handle(
        &s,
        "book me a person to fix the ac",
        "book_service",
        0.97,
        Priority::Normal,
        "US",
    )
    .await;
    assert_eq!(kept.outcome.intent, "book_service");
}

#[tokio::test]
async fn the_local_provider_books_the_hour_asked_for() {
    let (s, stores, _dir) = supervisor();
    let handled = handle(
        &s,
        "can you book an oil change next wednesday at 3pm",
        "book_service",
        0.97,
        Priority::Normal,
        "US",
    )
    .await;
    let booked = stores.appointments.by_thing("car-1").unwrap();
    assert_eq!(booked.len(), 1, "{}", handled.response.text);
    let local = booked[0]
        .starts_at
        .to_zoned_datetime(jiff::tz::TimeZone::get("America/New_York").unwrap());
    assert_eq!(local.date().weekday(), jiff::civil::Weekday::Wednesday);
    assert_eq!(local.hour(), 15);
    assert_eq!(booked[0].service, "oil change");
    assert_eq!(booked[0].status, AppointmentStatus::Confirmed);
    assert_eq!(handled.response.answered_by.as_deref(), Some("local"));
    assert!(handled.response.text.contains("oil change") && handled.response.text.contains("15:00"));

    // The same hour again: taken, so the driver is offered another day.
    let again = handle(
        &s,
        "book an oil change next wednesday at 3pm",
        "book_service",
        0.97,
        Priority::Normal,
        "US",
    )
    .await;
    assert_eq!(stores.appointments.by_thing("car-1").unwrap().len(), 1);
    assert!(again.response.text.contains("no free"), "{}", again.response.text);
}
