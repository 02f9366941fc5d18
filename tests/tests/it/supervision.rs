//! cloud-bridge under systemd's service protocol, with a notify socket the test
//! owns: `READY=1` once it serves, and `WATCHDOG=1` pings that go on while the
//! broker is unreachable (the MQTT loop beats through its reconnect backoff: a
//! broker outage is not a reason to restart the service).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::notify::NotifyListener;
use testkit::{free_port, workspace_binary, KillOnDrop};

#[test]
fn cloud_bridge_is_ready_and_fed_while_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let mut listener = NotifyListener::bind(&notify);
    let period = Duration::from_secs(2);
    let log_path = dir.path().join("serve.log");
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve"#)
        .arg(workspace_binary("cloud-bridge"))
        .env_remove("CLOUD_BRIDGE_CONFIG")
        .env("CLOUD_BRIDGE__MQTT__HOST", "127.0.0.1")
        // Nothing listens there: every connect is refused.
        .env("CLOUD_BRIDGE__MQTT__PORT", free_port().to_string())
        .env("CLOUD_BRIDGE__MQTT__TLS", "false")
        .env("CLOUD_BRIDGE__MQTT__BACKOFF_INITIAL_MS", "1500")
        .env("CLOUD_BRIDGE__MQTT__BACKOFF_MAX_MS", "3000")
        .env("CLOUD_BRIDGE__HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("CLOUD_BRIDGE__STORE__PATH", dir.path().join("store.sqlite"))
        .env("CLOUD_BRIDGE__LLM__PROVIDER", "local")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", period.as_micros().to_string())
        .env("CLOUD_BRIDGE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let _reap = KillOnDrop(&mut child);

    let ready = listener.wait_ready(&log_path);
    println!("cloud-bridge: READY=1 after {} ms", (ready - started).as_millis());

    // Reconnect waits of up to 3 s, longer than the 2 s watchdog: the pings
    // must not stop during them.
    let watched = Duration::from_secs(7);
    listener.read_until(watched, |_| false);
    let pings = listener.pings_between(ready, ready + watched + Duration::from_millis(500));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.matches("broker connection failed").count() >= 2,
        "the broker was expected to be unreachable:\n{log}"
    );
    assert!(pings.len() >= 10, "{} pings in {watched:?}:\n{log}", pings.len());
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < period,
        "the longest gap between pings was {longest:?}:\n{log}"
    );
}
