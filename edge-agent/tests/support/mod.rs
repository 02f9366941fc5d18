//! Shared by the integration tests and benchmarks that run the daemon: spawn
//! `edge-agent serve` on a socket in a temporary folder, wait for it, signal it,
//! ask it; and an in-process broker (rumqttd) for the uplink.

#![allow(dead_code, unsafe_code)] // not every test binary uses every helper; libc::kill

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    /// The state folder (history, outbox, logs), kept across restarts.
    pub state: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A daemon in a fresh state folder.
    pub fn start(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start_in(dir.path(), env);
        daemon._owned = Some(dir);
        daemon
    }

    /// A daemon on an existing state folder (a restart).
    pub fn start_in(state: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        let socket = state.join("api.sock");
        // Logs go to a file: an unread pipe would fill and stall the daemon.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("serve.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
        cmd.arg("serve")
            .env_remove("EDGE_AGENT_MODEL_DIR")
            .env_remove("EDGE_AGENT_CONFIG")
            .env("EDGE_AGENT__STATE__DIR", state)
            .env("EDGE_AGENT__API__SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("edge-agent serve runs");
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(state.join("serve.log")).unwrap_or_default();
                panic!("serve exited with {status}: {err}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the socket never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            socket,
            state: state.to_path_buf(),
            _owned: None,
        }
    }

    /// kill -9: no shutdown, no flush.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `/v1/events` for one conversation; the response's body is the stream.
pub async fn open_events(socket: &std::path::Path, conversation: &str) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
        .send_request(
            hyper::Request::get(format!("/v1/events?conversation_id={conversation}"))
                .header("host", "edge-agent")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// A free loopback port (brokers that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `POST /v1/ask` in a conversation: the status and the JSON body.
pub async fn ask(socket: &std::path::Path, text: &str, conversation: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"text": text, "conversation_id": conversation});
    let (status, bytes) = edge_agent::client::request(socket, hyper::Method::POST, "/v1/ask", Some(body))
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// rumqttd on `port`, MQTT 3.1.1. It has no shutdown: it lives as long as the
/// test process.
pub fn start_broker(port: u16) {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 2000,
        max_payload_size: 256 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: ([127, 0, 0, 1], port).into(),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        v4: Some(std::collections::HashMap::from([("1".to_string(), server)])),
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("rumqttd stopped: {e}");
        }
    });
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "rumqttd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
