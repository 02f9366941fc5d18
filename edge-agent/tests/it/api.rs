//! The local API through the real binary on a real Unix socket: every endpoint's
//! contract checked against `openapi.json`, a late answer on SSE, the per-client
//! rate limit, body limits, malformed JSON, and SIGTERM during a request.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Daemon;

use edge_agent::client::request;
use hyper::Method;
use serde_json::{json, Value};

fn openapi() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).unwrap()
}

/// Where a JSON value breaks the schema of `path`/`method`/`status` in openapi.json.
fn violations(doc: &Value, path: &str, method: &str, status: u16, value: &Value) -> Vec<String> {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let mut root = response["content"]["application/json"]["schema"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} {status} has no JSON body in openapi.json"))
        .clone();
    root.insert("components".into(), doc["components"].clone());
    let validator = jsonschema::validator_for(&Value::Object(root)).unwrap();
    validator.iter_errors(value).map(|e| e.to_string()).collect()
}

/// Checks a response against the OpenAPI description of `path`/`method`/`status`.
fn conforms(doc: &Value, path: &str, method: &str, status: u16, body: &[u8]) -> Value {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} is not documented to answer {status}"
    );
    if response["content"]["application/json"].is_null() {
        assert!(body.is_empty(), "{method} {path} {status} should have no body");
        return Value::Null;
    }
    let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} {status}: not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    let errors = violations(doc, path, method, status, &value);
    assert!(
        errors.is_empty(),
        "{method} {path} {status} breaks openapi.json: {errors:?}\n{value}"
    );
    value
}

#[test]
fn the_contract_check_catches_a_body_that_breaks_the_description() {
    let doc = openapi();
    assert!(!violations(&doc, "/v1/ask", "post", 400, &json!({"error": 5})).is_empty());
    assert!(!violations(&doc, "/v1/ask", "post", 200, &json!({"answer": "hi"})).is_empty());
    let mut turn = json!({
        "turn_id": "01a20fa9-0574-70fe-a085-a440bedd7d05", "conversation_id": "c", "text": "t", "answer": "a",
        "intent": "fuel_level", "intent_confidence": 0.9, "top_intent": "fuel_level", "top_confidence": 0.9,
        "sentiment": "neutral", "sentiment_score": 0.0, "route": "local", "handling": "answered", "sources": []
    });
    assert!(violations(&doc, "/v1/ask", "post", 200, &turn).is_empty());
    turn["intent"] = json!("fly_to_mars");
    assert!(
        !violations(&doc, "/v1/ask", "post", 200, &turn).is_empty(),
        "labels outside the contract"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn call(socket: &Path, method: Method, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
    let (status, bytes) = request(socket, method, path, body).await.unwrap();
    (status, bytes.to_vec())
}

/// `POST /v1/ask` in a named conversation; the answer is checked against the
/// document.
async fn ask_in(socket: &Path, doc: &Value, text: &str, conversation: &str) -> (u16, Value) {
    let body = json!({"text": text, "conversation_id": conversation});
    let (status, bytes) = call(socket, Method::POST, "/v1/ask", Some(body)).await;
    (status, conforms(doc, "/v1/ask", "post", status, &bytes))
}

/// Turns in two conversations: an answer, a follow-up read against the last turn,
/// an offer to ask the cloud, a queued booking.
async fn turns_answer_follow_ups_offer_and_queue(s: &Path, doc: &Value) {
    let (status, turn) = ask_in(s, doc, "what are my tyre pressures", "hmi-1").await;
    assert_eq!(status, 200);
    assert_eq!(turn["intent"], "tire_pressure");
    assert_eq!(turn["conversation_id"], "hmi-1");

    // A follow-up is read against the same conversation's last turn.
    let (_, turn) = ask_in(s, doc, "and the back ones?", "hmi-1").await;
    assert_eq!(turn["intent"], "tire_pressure");
    let answer = turn["answer"].as_str().unwrap();
    assert!(answer.starts_with("Rear left and rear right"), "{answer}");
    // What the car cannot answer is offered to the cloud, not queued.
    let (_, turn) = ask_in(s, doc, "what is twelve times seven", "hmi-2").await;
    assert_eq!(turn["pending_question"], "ask_cloud");
    assert!(turn.get("escalation").is_none(), "{turn}");

    let (_, turn) = ask_in(s, doc, "book me a service on friday", "hmi-1").await;
    assert_eq!(turn["escalation"]["status"], "pending");
}

/// A fresh conversation gets its own id; blank text and a bad id are refused.
async fn bad_asks_are_refused_as_documented(s: &Path, doc: &Value) {
    let (status, body) = call(s, Method::POST, "/v1/ask", Some(json!({"text": "where are we"}))).await;
    let fresh = conforms(doc, "/v1/ask", "post", status, &body);
    assert_ne!(fresh["conversation_id"], "hmi-1", "a new conversation gets its own id");

    let (status, body) = call(s, Method::POST, "/v1/ask", Some(json!({"text": "   "}))).await;
    assert_eq!(status, 422);
    conforms(doc, "/v1/ask", "post", status, &body);
    let (status, body) = call(
        s,
        Method::POST,
        "/v1/ask",
        Some(json!({"text": "hi", "conversation_id": "../etc"})),
    )
    .await;
    assert_eq!(status, 400);
    conforms(doc, "/v1/ask", "post", status, &body);
}

/// The conversation, the health and the metrics after those turns.
async fn conversation_health_and_metrics_report_the_turns(s: &Path, doc: &Value) {
    let (status, body) = call(s, Method::GET, "/v1/conversations/hmi-1", None).await;
    assert_eq!(status, 200);
    let conversation = conforms(doc, "/v1/conversations/{id}", "get", status, &body);
    assert_eq!(
        conversation["turns"].as_array().unwrap().len(),
        3,
        "the tyres, the follow-up, the booking"
    );

    let (status, body) = call(s, Method::GET, "/v1/health", None).await;
    assert_eq!(status, 200);
    let health = conforms(doc, "/v1/health", "get", status, &body);
    assert_eq!(health["pending_escalations"], 1);
    assert!(health["knowledge"]["articles"].as_u64().unwrap() >= 120);

    let (status, body) = call(s, Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("edge_agent_turns_total{intent=\"tire_pressure\",route=\"local\"} 2"),
        "{text}"
    );
    assert!(text.contains("edge_agent_pending_escalations 1"), "{text}");
    let build = format!("edge_agent_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&build), "{text}");
    assert!(
        text.contains("edge_agent_outbox_dropped_total{reason=\"evicted\"} 0"),
        "nothing dropped yet, and each reason there from the start: {text}"
    );
}

/// Forgetting one conversation, then everything.
async fn forgetting_drops_conversations_and_unsent_escalations(s: &Path, doc: &Value) {
    let (status, body) = call(s, Method::DELETE, "/v1/conversations/hmi-1", None).await;
    assert_eq!(status, 204);
    conforms(doc, "/v1/conversations/{id}", "delete", status, &body);
    let (status, body) = call(s, Method::GET, "/v1/conversations/hmi-1", None).await;
    assert_eq!(status, 404);
    conforms(doc, "/v1/conversations/{id}", "get", status, &body);
    let (status, body) = call(s, Method::DELETE, "/v1/conversations/hmi-1", None).await;
    assert_eq!(status, 404);
    conforms(doc, "/v1/conversations/{id}", "delete", status, &body);

    let (status, body) = call(s, Method::DELETE, "/v1/conversations", None).await;
    assert_eq!(status, 204);
    conforms(doc, "/v1/conversations", "delete", status, &body);
    let (_, body) = call(s, Method::GET, "/v1/health", None).await;
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        health["pending_escalations"], 0,
        "forget everything drops unsent escalations"
    );
    assert_eq!(health["open_conversations"], 0);
}

/// An unknown path is 404, a wrong method 405, both with a JSON error body.
async fn unknown_paths_and_wrong_methods_get_a_json_error(s: &Path, doc: &Value) {
    let (status, body) = call(s, Method::GET, "/v1/nowhere", None).await;
    assert_eq!(status, 404);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    // A wrong method is 405 with the same JSON error body, never an empty one.
    for (method, path, documented) in [
        (Method::POST, "/v1/health", "get"),
        (Method::GET, "/v1/ask", "post"),
        (Method::PUT, "/v1/conversations/hmi-1", "get"),
    ] {
        let (status, body) = call(s, method.clone(), path, None).await;
        assert_eq!(status, 405, "{method} {path}");
        let template = if path.starts_with("/v1/conversations/") {
            "/v1/conversations/{id}"
        } else {
            path
        };
        let error = conforms(doc, template, documented, status, &body);
        assert!(error["error"].as_str().unwrap().contains(method.as_str()), "{error}");
    }
}

#[test]
fn every_endpoint_answers_as_openapi_json_describes() {
    let daemon = Daemon::start(&[]);
    let doc = openapi();
    let s = &daemon.socket;
    runtime().block_on(async {
        turns_answer_follow_ups_offer_and_queue(s, &doc).await;
        bad_asks_are_refused_as_documented(s, &doc).await;
        conversation_health_and_metrics_report_the_turns(s, &doc).await;
        forgetting_drops_conversations_and_unsent_escalations(s, &doc).await;
        unknown_paths_and_wrong_methods_get_a_json_error(s, &doc).await;
    });
}

#[test]
fn a_late_answer_arrives_on_the_event_stream_after_the_request_returned() {
    use http_body_util::BodyExt;
    let daemon = Daemon::start(&[]);
    let doc = openapi();
    runtime().block_on(async {
        let response = testkit::open_events(&daemon.socket, "late-1").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut events = response.into_body();

        let (status, body) = call(
            &daemon.socket,
            Method::POST,
            "/v1/ask",
            Some(json!({"text": "how much fuel do i have", "conversation_id": "late-1", "wait_ms": 0})),
        )
        .await;
        assert_eq!(status, 202);
        let pending = conforms(&doc, "/v1/ask", "post", status, &body);
        let turn_id = pending["turn_id"].as_str().unwrap().to_string();

        let mut text = String::new();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let frame = events.frame().await.expect("stream open").unwrap();
                if let Some(data) = frame.data_ref() {
                    text.push_str(&String::from_utf8_lossy(data));
                }
                if let Some(start) = text.find("event: answer\ndata: ") {
                    if let Some(len) = text[start..].find("\n\n") {
                        let line = &text[start + "event: answer\ndata: ".len()..start + len];
                        return serde_json::from_str::<Value>(line).unwrap();
                    }
                }
            }
        })
        .await
        .expect("the answer event arrives");
        assert_eq!(answer["kind"], "answer");
        assert_eq!(answer["turn_id"], turn_id.as_str());
        let mut as_response = answer.clone();
        as_response.as_object_mut().unwrap().remove("kind");
        conforms(&doc, "/v1/ask", "post", 200, as_response.to_string().as_bytes());
        assert!(answer["answer"].as_str().unwrap().contains("fuel"));
    });
}

const TEN_SECONDS: Duration = Duration::from_secs(10);

#[test]
fn a_client_that_reconnects_with_last_event_id_hears_what_it_missed_once() {
    let daemon = Daemon::start(&[]);
    runtime().block_on(async {
        let late = |text: &'static str| {
            let socket = daemon.socket.clone();
            async move {
                let body = json!({"text": text, "conversation_id": "resume-1", "wait_ms": 0});
                let (status, body) = call(&socket, Method::POST, "/v1/ask", Some(body)).await;
                assert_eq!(status, 202);
                serde_json::from_slice::<Value>(&body).unwrap()["turn_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        let mut buffer = String::new();
        let mut first = testkit::open_events(&daemon.socket, "resume-1").await.into_body();
        let first_turn = late("how much fuel do i have").await;
        let heard = tokio::time::timeout(TEN_SECONDS, testkit::next_sse(&mut first, &mut buffer))
            .await
            .expect("the answer");
        assert_eq!(heard.event, "answer");
        assert!(heard.data.contains(&first_turn), "{heard:?}");
        let last_seen = heard.id.expect("every event has an id");
        drop(first);

        // Offline for a moment: the next answer is published to nobody.
        let missed_turn = late("what are my tyre pressures").await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut buffer = String::new();
        let mut again = testkit::open_events_after(&daemon.socket, "resume-1", Some(&last_seen))
            .await
            .into_body();
        let replayed = tokio::time::timeout(TEN_SECONDS, testkit::next_sse(&mut again, &mut buffer))
            .await
            .expect("the replay");
        assert_eq!(
            replayed.event, "answer",
            "nothing was lost, so no `lagged`: {replayed:?}"
        );
        assert!(replayed.data.contains(&missed_turn), "{replayed:?}");
        assert!(!replayed.data.contains(&first_turn), "what it saw is not repeated");
        let third_turn = late("how far can i go").await;
        let live = tokio::time::timeout(TEN_SECONDS, testkit::next_sse(&mut again, &mut buffer))
            .await
            .expect("live again");
        assert!(live.data.contains(&third_turn), "{live:?}");

        // An id from before a restart: the client is told it may have missed some.
        let mut buffer = String::new();
        let mut stale = testkit::open_events_after(&daemon.socket, "resume-1", Some("00000000-5"))
            .await
            .into_body();
        let notice = tokio::time::timeout(TEN_SECONDS, testkit::next_sse(&mut stale, &mut buffer))
            .await
            .expect("a notice");
        assert_eq!(
            (notice.event.as_str(), notice.data.as_str()),
            ("lagged", "{\"missed\": null}")
        );
    });
}

#[test]
fn a_client_over_its_rate_is_refused_and_a_new_process_of_its_user_does_not_reset_it() {
    let daemon = Daemon::start(&[
        ("EDGE_AGENT__API__RATE_PER_SECOND", "1"),
        ("EDGE_AGENT__API__RATE_BURST", "3"),
    ]);
    let doc = openapi();
    runtime().block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let (status, body) = call(&daemon.socket, Method::GET, "/v1/health", None).await;
            conforms(&doc, "/v1/health", "get", status, &body);
            statuses.push(status);
        }
        assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
        assert!(statuses[3..].contains(&429), "{statuses:?}");
    });
    // Another process of the same user (what a fork is) is the same client.
    // Another user is still served: `tests/tests/it/hostile.rs`.
    let other = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["ask", "--json", "--socket"])
        .arg(&daemon.socket)
        .arg("what's the tyre pressure")
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("429"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}

#[test]
fn an_oversize_body_is_413_and_malformed_json_is_400_with_a_clear_message() {
    let daemon = Daemon::start(&[]);
    let doc = openapi();
    runtime().block_on(async {
        let big = json!({"text": "a".repeat(20_000)});
        let (status, body) = call(&daemon.socket, Method::POST, "/v1/ask", Some(big)).await;
        assert_eq!(status, 413);
        let error = conforms(&doc, "/v1/ask", "post", status, &body);
        assert!(error["error"].as_str().unwrap().contains("too large"), "{error}");

        for bad in [json!("{\"text\": "), json!([1, 2]), json!({"words": "no text"})] {
            // The client sends the JSON value's text; a string value sends `"..."`.
            let (status, body) = call(&daemon.socket, Method::POST, "/v1/ask", Some(bad)).await;
            assert_eq!(status, 400);
            let error = conforms(&doc, "/v1/ask", "post", status, &body);
            assert!(error["error"].as_str().unwrap().contains("JSON object"), "{error}");
        }
    });
    // Bytes that are not JSON at all, straight on the socket.
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let body = b"{\"text\": \"unterminated";
    write!(
        stream,
        "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("EOF while parsing"), "{response}");
}

#[test]
fn the_metrics_are_openmetrics_text_and_say_so() {
    // A scraper that reads the 0.0.4 text format misreads OpenMetrics counters.
    let daemon = Daemon::start(&[]);
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let mut daemon = Daemon::start(&[]);
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let body = br#"{"text": "how much fuel do i have left"}"#;
    write!(
        stream,
        "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // Half the body: the request is now in flight.
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    daemon.terminate();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"intent\":\"fuel_level\""), "{response}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists(), "the socket file is removed on exit");
}
