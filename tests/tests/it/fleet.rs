//! Fleet knowledge updates end to end: mosquitto (mutual TLS, the ACL), the
//! cloud-bridge binary recording the cars' status messages, three edge-agent
//! daemons following the `stable` channel, and a loopback HTTPS server playing
//! S3. Fleet ops stage a rollout to one car, pause it, then widen it, and
//! `knowledge status` must tell each step as it is. Skipped visibly without
//! mosquitto (a failure in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{require_mosquitto, start_mosquitto_on, stdout_of, Pki};
use serde_json::Value;
use testkit::blob_server::BlobServer;
use testkit::{free_port, workspace_binary, Daemon};

/// `cloud-bridge` as fleet ops run it: their identity on the broker, the store.
struct Ops<'a> {
    pki: &'a Pki,
    broker: u16,
    store: &'a Path,
}

impl Ops<'_> {
    /// Runs `cloud-bridge ARGS`; its standard output.
    fn run(&self, args: &[&str]) -> String {
        let (cert, key) = self.pki.issue("cloud-bridge", &[]);
        let mut command = Command::new(workspace_binary("cloud-bridge"));
        command
            .args(args)
            .env_remove("CLOUD_BRIDGE_CONFIG")
            .env("CLOUD_BRIDGE__MQTT__HOST", "localhost")
            .env("CLOUD_BRIDGE__MQTT__TLS", "true")
            .env("CLOUD_BRIDGE__MQTT__PORT", self.broker.to_string())
            .env("CLOUD_BRIDGE__MQTT__CA_FILE", self.pki.ca_file())
            .env("CLOUD_BRIDGE__MQTT__CERT_FILE", cert)
            .env("CLOUD_BRIDGE__MQTT__KEY_FILE", key)
            .env("CLOUD_BRIDGE__MQTT__CLIENT_ID", "fleet-ops")
            .env("CLOUD_BRIDGE__STORE__PATH", self.store)
            .env("CLOUD_BRIDGE_PUBLISHER", "ops@example");
        stdout_of(command)
    }

    /// Each car's knowledge version, as `knowledge status` reports it.
    fn versions(&self) -> Vec<(String, Option<u64>)> {
        let status: Value =
            serde_json::from_str(&self.run(&["knowledge", "status", "--channel", "stable", "--json"])).unwrap();
        status["cars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["thing"].as_str().unwrap().to_string(), c["version"].as_u64()))
            .collect()
    }

    /// Waits up to a minute for the status to show `want`.
    fn wait_for(&self, want: &[(&str, Option<u64>)]) {
        let want: Vec<(String, Option<u64>)> = want.iter().map(|(t, v)| (t.to_string(), *v)).collect();
        let started = Instant::now();
        loop {
            let have = self.versions();
            if have == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "status never showed {want:?}; it shows {have:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A new signing key: its id and public half.
    fn keygen(&self, keys: &Path) -> (String, String) {
        let out = self.run(&["knowledge", "keygen", "--out", keys.to_str().unwrap()]);
        let id = out.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string();
        let public = std::fs::read_to_string(keys.join(format!("{id}.pub"))).unwrap();
        (id, public.trim().to_string())
    }

    /// The shipped pack built, put on "S3" at /stable/2, and a notice for it signed
    /// with `secret` into `notice`.
    fn release_the_shipped_pack(&self, dir: &Path, server: &BlobServer, secret: &Path, notice: &Path) {
        let payload = dir.join("payload.json");
        self.run(&["knowledge", "build", "--out", payload.to_str().unwrap()]);
        server.put("/stable/2", std::fs::read(&payload).unwrap());
        let url = server.url("/stable/2");
        self.run(&[
            "knowledge",
            "sign",
            "--bundle",
            payload.to_str().unwrap(),
            "--key",
            secret.to_str().unwrap(),
            "--channel",
            "stable",
            "--version",
            "2",
            "--url",
            &url,
            "--models",
            "Voyager",
            "--publisher",
            "ops@example",
            "--out",
            notice.to_str().unwrap(),
        ]);
    }
}

/// `GET /health` is 200: connected and subscribed.
fn health_ok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let mut text = String::new();
    write!(stream, "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").is_ok()
        && stream.read_to_string(&mut text).is_ok()
        && text.starts_with("HTTP/1.1 200")
}

/// `cloud-bridge serve`, recording the cars' status, healthy on its HTTP port.
fn start_bridge(pki: &Pki, broker: u16, store: &Path, log: &Path) -> std::process::Child {
    let (cert, key) = pki.issue("cloud-bridge", &[]);
    let http = format!("127.0.0.1:{}", free_port());
    let mut bridge = Command::new(workspace_binary("cloud-bridge"))
        .arg("serve")
        .env_remove("CLOUD_BRIDGE_CONFIG")
        .env("CLOUD_BRIDGE__MQTT__HOST", "localhost")
        .env("CLOUD_BRIDGE__MQTT__TLS", "true")
        .env("CLOUD_BRIDGE__MQTT__PORT", broker.to_string())
        .env("CLOUD_BRIDGE__MQTT__CA_FILE", pki.ca_file())
        .env("CLOUD_BRIDGE__MQTT__CERT_FILE", &cert)
        .env("CLOUD_BRIDGE__MQTT__KEY_FILE", &key)
        .env("CLOUD_BRIDGE__MQTT__CLIENT_ID", "bridge-a")
        .env("CLOUD_BRIDGE__HTTP__LISTEN", &http)
        .env("CLOUD_BRIDGE__STORE__PATH", store)
        .env("CLOUD_BRIDGE__LLM__PROVIDER", "local")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !health_ok(&http) {
        assert!(bridge.try_wait().unwrap().is_none(), "cloud-bridge exited");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cloud-bridge never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bridge
}

/// A car following `stable`, trusting `key` (id, public half) and the blob
/// server's CA, reporting every 2 s.
fn car_on_stable(pki: &Pki, broker: u16, dir: &Path, ca: &Path, key: &(String, String), thing: &str) -> Daemon {
    let (cert, tls_key) = pki.issue(thing, &[]);
    let config: PathBuf = dir.join(format!("{thing}.toml"));
    std::fs::write(
        &config,
        format!(
            "[fleet]\nchannel = \"stable\"\nca_file = \"{}\"\nretry_initial_ms = 100\nretry_max_ms = 500\n\
             [fleet.keys.{}]\npublic_key = \"{}\"\n",
            ca.display(),
            key.0,
            key.1
        ),
    )
    .unwrap();
    let port = broker.to_string();
    Daemon::start(&[
        ("EDGE_AGENT_CONFIG", config.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__HOST", "localhost"),
        ("EDGE_AGENT__UPLINK__PORT", &port),
        ("EDGE_AGENT__UPLINK__THING_NAME", thing),
        ("EDGE_AGENT__UPLINK__CA_FILE", pki.ca_file().to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__KEY_FILE", tls_key.to_str().unwrap()),
        ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
        ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "200"),
        ("EDGE_AGENT__FLEET__REPORT_INTERVAL_SECONDS", "2"),
    ])
}

/// Each car's own health says version 2.
fn assert_each_car_answers_from_version_2(runtime: &tokio::runtime::Runtime, cars: &[Daemon]) {
    for daemon in cars {
        let (status, body) = runtime
            .block_on(edge_agent::client::request(
                &daemon.socket,
                hyper::Method::GET,
                "/v1/health",
                None,
            ))
            .unwrap();
        assert_eq!(status, 200);
        let health: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(health["knowledge"]["bundle_version"], 2, "{health}");
    }
}

#[test]
fn a_rollout_staged_to_one_car_of_three_then_paused_then_widened_is_reported_truthfully() {
    let Some(mosquitto) = require_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = start_mosquitto_on(&mosquitto, &pki, free_port());
    let store = dir.path().join("bridge.sqlite");
    let runtime = testkit::threaded_runtime();
    let server = runtime.block_on(BlobServer::start());
    let ops = Ops {
        pki: &pki,
        broker: broker.port,
        store: &store,
    };

    // Fleet ops: a key, a payload (the shipped pack) on "S3", a signed notice.
    let keys = dir.path().join("keys");
    let key = ops.keygen(&keys);
    let notice = dir.path().join("notice.json");
    ops.release_the_shipped_pack(dir.path(), &server, &keys.join(format!("{}.key", key.0)), &notice);

    // cloud-bridge records status; three cars follow `stable`.
    let mut bridge = start_bridge(&pki, broker.port, &store, &dir.path().join("bridge.log"));
    let ca = server.write_ca(dir.path());
    let cars = ["car-a", "car-b", "car-c"].map(|thing| car_on_stable(&pki, broker.port, dir.path(), &ca, &key, thing));
    ops.wait_for(&[("car-a", None), ("car-b", None), ("car-c", None)]);

    // Stage 1: car-a alone.
    let notice = notice.to_str().unwrap();
    let staged = ops.run(&[
        "knowledge",
        "publish",
        "--notice",
        notice,
        "--percent",
        "0",
        "--cars",
        "car-a",
    ]);
    assert!(staged.contains("version 2, 0% of the fleet plus car-a"), "{staged}");
    ops.wait_for(&[("car-a", Some(2)), ("car-b", None), ("car-c", None)]);

    // Pause: nobody else starts, and status says so.
    let paused = ops.run(&["knowledge", "pause", "--channel", "stable"]);
    assert!(paused.contains("PAUSED"), "{paused}");
    std::thread::sleep(Duration::from_secs(1));
    let unchanged = [("car-a", Some(2)), ("car-b", None), ("car-c", None)].map(|(t, v)| (t.to_string(), v));
    assert_eq!(ops.versions(), unchanged);

    // Widen to the whole fleet.
    let widened = ops.run(&["knowledge", "publish", "--channel", "stable", "--percent", "100"]);
    assert!(widened.contains("version 2, 100% of the fleet"), "{widened}");
    assert!(!widened.contains("PAUSED"), "{widened}");
    ops.wait_for(&[("car-a", Some(2)), ("car-b", Some(2)), ("car-c", Some(2))]);

    // Each car downloaded the payload once, and the audit log has every step.
    let downloads = server.served().iter().filter(|s| s.path == "/stable/2").count();
    assert_eq!(downloads, 3, "{:?}", server.served());
    let status = ops.run(&["knowledge", "status", "--channel", "stable"]);
    for step in [
        "ops@example publish stable v2",
        "ops@example pause stable v2",
        "ops@example restage stable v2",
    ] {
        assert!(status.contains(step), "{step:?} not in the audit log:\n{status}");
    }
    assert_each_car_answers_from_version_2(&runtime, &cars);
    let _ = bridge.kill();
    let _ = bridge.wait();
}
