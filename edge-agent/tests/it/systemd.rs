//! The daemon under systemd's service protocol, with a notify socket the test
//! owns: `READY=1` only once it answers, `WATCHDOG=1` while every loop shows life,
//! and no more pings once a driver's turn wedges inference (the test-only
//! failpoint `inference:wedge` blocks the turn where the model runs).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::edge_binary;
use testkit::notify::NotifyListener;

/// `edge-agent serve` as systemd starts it: a notify socket, a watchdog of
/// `period`, and inference set to wedge on the first turn.
fn serve_under_watchdog(dir: &Path, notify: &Path, socket: &Path, log: &Path, period: Duration) -> Child {
    // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's.
    Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve"#)
        .arg(edge_binary())
        .env_remove("EDGE_AGENT_MODEL_DIR")
        .env_remove("EDGE_AGENT_CONFIG")
        .env("EDGE_AGENT__STATE__DIR", dir)
        .env("EDGE_AGENT__API__SOCKET", socket)
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", period.as_micros().to_string())
        .env("EDGE_AGENT_FAILPOINT", "inference:wedge")
        .env("EDGE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Ready means answering: the socket is bound and the knowledge is loaded.
fn assert_answering(socket: &Path) {
    let runtime = testkit::runtime();
    let (status, health) = runtime
        .block_on(edge_agent::client::request(
            socket,
            hyper::Method::GET,
            "/v1/health",
            None,
        ))
        .unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_slice(&health).unwrap();
    assert!(health["knowledge"]["articles"].as_u64().unwrap() > 0, "{health}");
}

/// Idle: pings keep coming, about four per period.
fn assert_pings_while_idle(listener: &mut NotifyListener, ready: Instant, period: Duration) {
    let idle = Duration::from_secs(4);
    listener.read_until(idle, |_| false);
    let pings = listener.pings_between(ready, ready + idle + Duration::from_millis(500));
    assert!(
        pings.len() >= 8,
        "{} pings in {idle:?} of idling with a {period:?} watchdog: {:?}",
        pings.len(),
        listener.received
    );
    let gaps = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gaps < period / 2, "the longest gap between pings was {gaps:?}");
}

/// A driver's turn wedges inference; the pings stop before systemd's deadline.
fn assert_pings_stop_once_a_turn_wedges(
    listener: &mut NotifyListener,
    socket: &Path,
    ready: Instant,
    period: Duration,
) {
    let wedged_socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let runtime = testkit::runtime();
        let _ = runtime.block_on(edge_agent::client::request(
            &wedged_socket,
            hyper::Method::POST,
            "/v1/ask",
            Some(serde_json::json!({ "text": "what's my tyre pressure" })),
        ));
    });
    let wedged = Instant::now();
    listener.read_until(period * 3, |_| false);
    let after = listener.pings_between(wedged + period, Instant::now());
    assert!(
        after.is_empty(),
        "{} pings came more than {period:?} after inference wedged",
        after.len()
    );
    let last = listener.pings_between(ready, Instant::now()).last().copied().unwrap();
    println!(
        "last ping {} ms after the wedge (systemd's deadline: {} ms)",
        last.saturating_duration_since(wedged).as_millis(),
        period.as_millis()
    );
}

#[test]
fn ready_after_load_pings_while_alive_and_stops_when_inference_wedges() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = dir.path().join("api.sock");
    let mut listener = NotifyListener::bind(&notify);
    let log_path = dir.path().join("serve.log");
    let period = Duration::from_secs(2);

    let started = Instant::now();
    let mut child = serve_under_watchdog(dir.path(), &notify, &socket, &log_path, period);
    let _reap = testkit::KillOnDrop(&mut child);
    let ready = listener.wait_ready(&log_path);
    // Straight to stderr, past the harness's capture, so CI's log shows the figure.
    let _ = writeln!(
        std::io::stderr(),
        "time to READY=1: {} ms (model, knowledge base, socket)",
        (ready - started).as_millis()
    );
    assert_answering(&socket);
    assert!(
        listener.pings_between(started, ready).is_empty(),
        "a watchdog ping came before READY=1"
    );
    assert_pings_while_idle(&mut listener, ready, period);
    assert_pings_stop_once_a_turn_wedges(&mut listener, &socket, ready, period);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("failpoint inference:wedge reached"), "{log}");
    // The turn holds the engine, so the API's own probe stalls too; inference is
    // named once its turn has run past the limit.
    assert!(
        log.lines()
            .any(|l| l.contains("watchdog pings stop") && l.contains("inference")),
        "no log line names inference as stale:\n{log}"
    );
}
