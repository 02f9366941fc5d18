//! testkit: what the integration tests and benchmarks of edge-agent and the
//! end-to-end crate (`tests/`) share to run the daemon: spawn `edge-agent serve`
//! on a socket in a temporary folder, wait for it, signal it, ask it; an
//! in-process broker (rumqttd) for the uplink; an HTTPS blob server; signed
//! bundles; a notify socket. A dev-dependency only: no product crate links it.

#![allow(unsafe_code)] // libc::kill, to signal the daemon under test

pub mod blob_server;
pub mod bundle;
pub mod notify;

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

/// The `edge-agent` binary: cargo's own for edge-agent's tests; beside the test
/// binary's folder for the end-to-end crate, which shares this file.
pub fn edge_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_edge-agent") {
        Some(path) => PathBuf::from(path),
        None => workspace_binary("edge-agent"),
    }
}

/// A binary of the workspace, in the target folder this test binary runs from
/// (`target/<profile>/deps/..`). `cargo test --workspace` builds them.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build --release -p {name}, or cargo test --workspace)",
        path.display()
    );
    path
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
        Daemon::start_through(&[], state, env)
    }

    /// A daemon started through `wrapper` (a command that runs the rest of its
    /// arguments, like `nsenter`), its socket and log in `state`.
    pub fn start_through(wrapper: &[&str], state: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        let socket = state.join("api.sock");
        // Logs go to a file: an unread pipe would fill and stall the daemon.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("serve.log"))
            .unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(edge_binary());
                cmd
            }
            None => Command::new(edge_binary()),
        };
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

/// Kills and reaps a child when the test ends, however it ends.
pub struct KillOnDrop<'a>(pub &'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole HTTP/1.1 response (status line, headers and body) to a GET of
/// `path` on the daemon's socket, over a plain blocking connection.
pub fn exchange_body(socket: &std::path::Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: edge-agent\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Opens `/v1/events` for one conversation; the response's body is the stream.
pub async fn open_events(socket: &std::path::Path, conversation: &str) -> hyper::Response<hyper::body::Incoming> {
    open_events_after(socket, conversation, None).await
}

/// Opens `/v1/events` for one conversation, resuming after `last_event_id`.
pub async fn open_events_after(
    socket: &std::path::Path,
    conversation: &str,
    last_event_id: Option<&str>,
) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request =
        hyper::Request::get(format!("/v1/events?conversation_id={conversation}")).header("host", "edge-agent");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    sender
        .send_request(
            request
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// One server-sent event: its `id:`, `event:` and `data:` lines (comments,
/// the keep-alives, are skipped).
#[derive(Debug, Default)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// The next event on an SSE body; `buffer` holds what arrived past it.
pub async fn next_sse(body: &mut hyper::body::Incoming, buffer: &mut String) -> Sse {
    use http_body_util::BodyExt;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut sse = Sse::default();
            for line in block.lines() {
                match line.split_once(": ") {
                    Some(("id", v)) => sse.id = Some(v.to_string()),
                    Some(("event", v)) => sse.event = v.to_string(),
                    Some(("data", v)) => sse.data.push_str(v),
                    _ => {}
                }
            }
            if !sse.event.is_empty() || !sse.data.is_empty() {
                return sse;
            }
            continue;
        }
        let frame = body.frame().await.expect("stream open").unwrap();
        if let Some(data) = frame.data_ref() {
            buffer.push_str(&String::from_utf8_lossy(data));
        }
    }
}

/// A free loopback port, never the same twice in one test process (tests run in
/// parallel, and a port is only reserved once its server binds it).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A runtime whose tasks (a test network, say) keep running while the test
/// waits outside it.
pub fn threaded_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A process's peak resident memory (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
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
            max_connections: 1000,
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

/// The network between the car and the cloud, owned by the test: nothing listens
/// on `from` until it starts; then every connection is forwarded to `to` while the
/// network is open (a closed one drops new connections at once). With
/// `drop_pubacks` it reads the broker's MQTT packets and swallows every PUBACK:
/// the broker has the messages, the car never hears so. (Plain MQTT only; TLS
/// traffic is forwarded as bytes.)
pub struct Network {
    drop_pubacks: tokio::sync::watch::Sender<bool>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Network {
    pub async fn start(from: u16, to: u16, drop_pubacks: bool) -> Network {
        let (pubacks_tx, pubacks_rx) = tokio::sync::watch::channel(drop_pubacks);
        let (open_tx, open_rx) = tokio::sync::watch::channel(true);
        let mqtt_aware = drop_pubacks;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", from)).await.unwrap();
        tokio::spawn(async move {
            while let Ok((mut car, _)) = listener.accept().await {
                if !*open_rx.borrow() {
                    continue;
                }
                let rx = pubacks_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    if !mqtt_aware {
                        let _ = tokio::io::copy_bidirectional(&mut car, &mut broker).await;
                        return;
                    }
                    let (mut car_read, mut car_write) = car.into_split();
                    let (mut broker_read, mut broker_write) = broker.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut car_read, &mut broker_write).await;
                    });
                    let _ = forward_packets(&mut broker_read, &mut car_write, rx).await;
                });
            }
        });
        Network {
            drop_pubacks: pubacks_tx,
            open: open_tx,
        }
    }

    pub fn deliver_pubacks(&self) {
        self.drop_pubacks.send(false).unwrap();
    }

    /// New connections are dropped until [`Network::reopen`].
    pub fn close(&self) {
        self.open.send(false).unwrap();
    }

    pub fn reopen(&self) {
        self.open.send(true).unwrap();
    }
}

/// Copies whole MQTT packets (fixed header, remaining length, body), leaving out
/// PUBACKs (type 4) while `drop_pubacks` holds.
async fn forward_packets(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    drop_pubacks: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut packet = vec![from.read_u8().await?];
        let (mut length, mut shift) = (0usize, 0);
        loop {
            let byte = from.read_u8().await?;
            packet.push(byte);
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let start = packet.len();
        packet.resize(start + length, 0);
        from.read_exact(&mut packet[start..]).await?;
        if packet[0] >> 4 == 4 && *drop_pubacks.borrow() {
            continue;
        }
        to.write_all(&packet).await?;
    }
}

/// The cloud's acknowledgement of `escalation`, on its car's responses topic.
pub fn acknowledge(client: &rumqttc::Client, escalation: &protocol::Envelope) {
    let ack = protocol::Envelope::new(
        &escalation.thing_name,
        escalation.conversation_id.as_deref(),
        protocol::Body::Ack(protocol::Ack {
            acknowledges: escalation.message_id,
        }),
    );
    let topic = format!("kestrel/v1/cars/{}/responses", escalation.thing_name);
    let _ = client.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, protocol::encode(&ack).unwrap());
}
