//! The issue's reproduction, kept as a test: mosquitto (persistence on, then
//! off), `cloud-bridge serve` and a car connected; the broker restarted once
//! (SIGTERM); then 50 escalations at once. All 50 are answered in the car's
//! conversations, once each, and the cloud handled each once. (Before the
//! end-to-end acknowledgement, 46 and 24 of 50 were lost.)

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Bridge;
use e2e::{require_mosquitto, start_mosquitto_with, Pki, Stop};
use serde_json::Value;
use testkit::{ask, free_port, Daemon};

const ESCALATIONS: usize = 50;

fn car(dir: &Path, pki: &Pki, port: u16) -> Daemon {
    let (cert, key) = pki.issue("restart-car", &[]);
    let (port, ca, state) = (port.to_string(), pki.ca_file(), dir.join("car"));
    std::fs::create_dir_all(&state).unwrap();
    Daemon::start_in(
        &state,
        &[
            ("EDGE_AGENT__UPLINK__HOST", "localhost"),
            ("EDGE_AGENT__UPLINK__PORT", &port),
            ("EDGE_AGENT__UPLINK__THING_NAME", "restart-car"),
            ("EDGE_AGENT__UPLINK__CA_FILE", ca.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "100"),
            ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "500"),
            ("EDGE_AGENT__UPLINK__PUBLISH_PER_SECOND", "0"),
            ("EDGE_AGENT__API__RATE_PER_SECOND", "1000"),
            ("EDGE_AGENT__API__RATE_BURST", "1000"),
        ],
    )
}

fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    let (status, body) = testkit::runtime()
        .block_on(edge_agent::client::request(
            &daemon.socket,
            hyper::Method::GET,
            path,
            None,
        ))
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn answers_from_the_cloud(daemon: &Daemon, conversation: &str) -> usize {
    let (_, body) = get(daemon, &format!("/v1/conversations/{conversation}"));
    body["turns"]
        .as_array()
        .map_or(0, |turns| turns.iter().filter(|t| t["from_cloud"] == true).count())
}

fn reproduction(persistence: bool) {
    let Some(binary) = require_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let port = free_port();
    let kept = dir.path().join("mosquitto");
    std::fs::create_dir(&kept).unwrap();
    let mut broker = start_mosquitto_with(&binary, &pki, port, persistence.then_some(kept.as_path()));
    let bridge = Bridge::start(
        &pki,
        port,
        "cloud-bridge",
        "bridge-restart",
        &dir.path().join("bridge.sqlite"),
    );
    let daemon = car(dir.path(), &pki, port);
    let started = Instant::now();
    while get(&daemon, "/v1/health").1["uplink"]["subscribed"] != true {
        assert!(started.elapsed() < Duration::from_secs(30), "the car never subscribed");
        std::thread::sleep(Duration::from_millis(50));
    }

    broker.restart(Stop::Term);
    let rt = testkit::runtime();
    for n in 0..ESCALATIONS {
        let (status, turn) = rt.block_on(ask(
            &daemon.socket,
            "what's the traffic like on my route",
            &format!("r-{n}"),
        ));
        assert_eq!(status, 200, "{turn}");
        assert_eq!(turn["escalation"]["status"], "pending", "{turn}");
    }

    let started = Instant::now();
    let answered = loop {
        let answered: Vec<usize> = (0..ESCALATIONS)
            .map(|n| answers_from_the_cloud(&daemon, &format!("r-{n}")))
            .collect();
        if answered.iter().all(|&a| a >= 1) || started.elapsed() > Duration::from_secs(90) {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let once = answered.iter().filter(|&&a| a == 1).count();
    say!("persistence {persistence}: {once} of {ESCALATIONS} answered once ({answered:?})");
    assert_eq!(once, ESCALATIONS, "answered per conversation: {answered:?}");
    assert_eq!(bridge.handled(), ESCALATIONS as u64, "the cloud handled each once");
    assert_eq!(get(&daemon, "/v1/health").1["pending_escalations"], 0);
}

#[test]
fn after_a_broker_restart_with_persistence_all_50_escalations_are_answered_once() {
    reproduction(true);
}

#[test]
fn after_a_broker_restart_without_persistence_all_50_escalations_are_answered_once() {
    reproduction(false);
}
