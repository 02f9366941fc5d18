//! What the end-to-end test binaries share: a `cloud-bridge serve` process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::Pki;

use testkit::{free_port, workspace_binary};

/// A cloud-bridge process (`serve`) with its own store, as `cn` on the broker.
pub struct Bridge {
    pub child: Child,
    pub store: PathBuf,
    pub http: String,
    pub log: PathBuf,
}

impl Bridge {
    pub fn env(pki: &Pki, broker: u16, cn: &str, store: &Path) -> Vec<(String, String)> {
        let (cert, key) = pki.issue(cn, &[]);
        [
            ("CLOUD_BRIDGE__MQTT__HOST", "localhost".to_string()),
            ("CLOUD_BRIDGE__MQTT__PORT", broker.to_string()),
            ("CLOUD_BRIDGE__MQTT__TLS", "true".to_string()),
            ("CLOUD_BRIDGE__MQTT__CA_FILE", pki.ca_file().display().to_string()),
            ("CLOUD_BRIDGE__MQTT__CERT_FILE", cert.display().to_string()),
            ("CLOUD_BRIDGE__MQTT__KEY_FILE", key.display().to_string()),
            ("CLOUD_BRIDGE__MQTT__BACKOFF_INITIAL_MS", "100".to_string()),
            ("CLOUD_BRIDGE__MQTT__BACKOFF_MAX_MS", "500".to_string()),
            ("CLOUD_BRIDGE__STORE__PATH", store.display().to_string()),
            ("CLOUD_BRIDGE__LLM__PROVIDER", "local".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Starts `serve` and waits until `/health` is 200 (connected and subscribed).
    pub fn start(pki: &Pki, broker: u16, cn: &str, client_id: &str, store: &Path) -> Bridge {
        Bridge::start_with(pki, broker, cn, client_id, store, &[])
    }

    pub fn start_with(pki: &Pki, broker: u16, cn: &str, client_id: &str, store: &Path, env: &[(&str, &str)]) -> Bridge {
        let mut bridge = Bridge::spawn(pki, broker, cn, client_id, store, env);
        let started = Instant::now();
        loop {
            if bridge.get("/health").is_some_and(|(status, _)| status == 200) {
                return bridge;
            }
            if let Some(status) = bridge.child.try_wait().unwrap() {
                panic!(
                    "cloud-bridge exited with {status}: {}",
                    std::fs::read_to_string(&bridge.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cloud-bridge never became healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `serve` without waiting for it (it may be meant to die).
    pub fn spawn(pki: &Pki, broker: u16, cn: &str, client_id: &str, store: &Path, env: &[(&str, &str)]) -> Bridge {
        let http = format!("127.0.0.1:{}", free_port());
        let log = store.with_extension("log");
        let mut cmd = Command::new(workspace_binary("cloud-bridge"));
        cmd.arg("serve")
            .envs(Bridge::env(pki, broker, cn, store))
            .env("CLOUD_BRIDGE__MQTT__CLIENT_ID", client_id)
            .env("CLOUD_BRIDGE__HTTP__LISTEN", &http)
            .env_remove("CLOUD_BRIDGE_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        Bridge {
            child: cmd.spawn().expect("cloud-bridge serve runs"),
            store: store.to_path_buf(),
            http,
            log,
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.http).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.get(9..12)?.parse().ok()?;
        Some((
            status,
            text.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default(),
        ))
    }

    /// Escalations handled, from `/metrics`.
    pub fn handled(&self) -> u64 {
        let (_, text) = self.get("/metrics").expect("metrics");
        text.lines()
            .filter(|l| l.starts_with("cloud_bridge_escalations_handled_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Runs a `cloud-bridge` command on this bridge's store.
    pub fn command(&self, args: &[&str]) -> String {
        let mut command = Command::new(workspace_binary("cloud-bridge"));
        command
            .args(args)
            .env("CLOUD_BRIDGE__STORE__PATH", &self.store)
            .env_remove("CLOUD_BRIDGE_CONFIG");
        e2e::stdout_of(command)
    }

    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
