//! One local client must not lock the others out. The daemon runs under the
//! unit's file limit (`prlimit --nofile=4096`); a hostile client running as
//! `nobody` holds 5,000 connections (idle, half a header, half a body), and a
//! child it starts (a new process of the same user) asks as fast as it can.
//! Meanwhile root's asks are answered within 100 ms, the hostile user keeps no
//! more than its per-client cap of connections, and its child stays limited.
//!
//! The hostile side is this test binary run again as `nobody`
//! (`hostile_client`, ignored in a normal run). Dropping to `nobody` needs
//! root: without it the test prints `SKIP:` (and fails with
//! `EDGE_REQUIRE_EXTERNALS=1`).

#![allow(unsafe_code)] // getrlimit/setrlimit and geteuid in the test

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::Daemon;

const NOBODY: u32 = 65534;
const HOSTILE_CONNECTIONS: usize = 5000;
const PER_CLIENT_CAP: usize = 64;
const HELPER: &str = "hostile::hostile_client";

/// What a hostile connection sends before it stalls.
const STALLS: [&[u8]; 3] = [
    b"",
    b"POST /v1/ask HTTP/1.1\r\nHost: edge-agent\r\nContent-",
    b"POST /v1/ask HTTP/1.1\r\nHost: edge-agent\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"text\": \"what",
];

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn raise_file_limit(to: u64) {
    let limit = libc::rlimit {
        rlim_cur: to,
        rlim_max: to,
    };
    // SAFETY: setrlimit(2) with a valid struct; as root the hard limit may rise.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "cannot raise the file limit");
}

/// One HTTP/1.1 exchange on a fresh connection; the status, or `None` when the
/// daemon closed the connection without an answer.
fn exchange(socket: &std::path::Path, request: &str) -> Option<u16> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    std::str::from_utf8(response.get(9..12)?).ok()?.parse().ok()
}

fn ask_request(text: &str) -> String {
    let body = serde_json::json!({ "text": text }).to_string();
    format!(
        "POST /v1/ask HTTP/1.1\r\nHost: edge-agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The hostile side, run as `nobody` by the test below: `holder` opens the
/// connections, starts an `asker` (the same user, another process), reports,
/// and holds until its stdin closes.
#[test]
#[ignore = "the hostile client of five_thousand_hostile_connections...; run by that test as nobody"]
fn hostile_client() {
    let socket = std::path::PathBuf::from(std::env::var("HOSTILE_SOCKET").expect("run by the hostile test"));
    if std::env::var("HOSTILE_MODE").as_deref() == Ok("asker") {
        let statuses: Vec<Option<u16>> = (0..60)
            .map(|_| {
                exchange(
                    &socket,
                    "GET /v1/health HTTP/1.1\r\nHost: edge-agent\r\nConnection: close\r\n\r\n",
                )
            })
            .collect();
        println!("ASKER {}", serde_json::to_string(&statuses).unwrap());
        return;
    }
    let mut held = Vec::with_capacity(HOSTILE_CONNECTIONS);
    for i in 0..HOSTILE_CONNECTIONS {
        if let Ok(mut stream) = UnixStream::connect(&socket) {
            let _ = stream.write_all(STALLS[i % STALLS.len()]);
            held.push(stream);
        }
    }
    for stream in &held {
        stream.set_nonblocking(true).unwrap();
    }
    // A stream the daemon closed reads end-of-file at once; an open one would
    // block. Those still in the listen queue count as open until the daemon
    // reaches them, so the count is taken once it stops falling (within 2 s,
    // less than the header timeout that closes the rest).
    let open_now = |held: &[UnixStream]| {
        held.iter()
            .filter(|s| {
                let mut stream: &UnixStream = s;
                matches!(stream.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let settle = Instant::now();
    let mut still_open = open_now(&held);
    while settle.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let now = open_now(&held);
        if now == still_open {
            break;
        }
        still_open = now;
    }
    let asker = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", HELPER, "--nocapture"])
        .env("HOSTILE_MODE", "asker")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&asker.stdout));
    println!("HELD {} {still_open}", held.len());
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

#[test]
fn five_thousand_hostile_connections_of_another_user_do_not_slow_the_driver() {
    if !is_root() {
        if std::env::var("EDGE_REQUIRE_EXTERNALS").is_ok_and(|v| v == "1") {
            panic!("EDGE_REQUIRE_EXTERNALS=1 but this test needs root to drop to nobody");
        }
        // Past the harness's capture, so the skip always shows.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP: dropping to nobody needs root");
        return;
    }
    raise_file_limit(HOSTILE_CONNECTIONS as u64 + 2000);
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    std::fs::create_dir(&run).unwrap();
    for dir in [root.path(), run.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state = root.path().join("state");
    let nobody_group = NOBODY.to_string();
    let daemon = Daemon::start_through(
        &["prlimit", "--nofile=4096:4096", "--"],
        &run,
        &[
            ("EDGE_AGENT__STATE__DIR", state.to_str().unwrap()),
            ("EDGE_AGENT__API__SOCKET_GROUP", &nobody_group),
        ],
    );

    let mut hostile = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", HELPER, "--nocapture"])
        .env("HOSTILE_SOCKET", &daemon.socket)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reap = testkit::KillOnDrop(&mut hostile);
    let mut lines = std::io::BufReader::new(reap.0.stdout.take().unwrap()).lines();
    let mut asker = None;
    let (opened, still_open) = loop {
        let line = lines
            .next()
            .expect("the hostile client ended early (can nobody run the test binary and reach the socket?)")
            .unwrap();
        if let Some(statuses) = line.strip_prefix("ASKER ") {
            asker = Some(serde_json::from_str::<Vec<Option<u16>>>(statuses).unwrap());
        }
        if let Some(counts) = line.strip_prefix("HELD ") {
            let (a, b) = counts.split_once(' ').unwrap();
            break (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap());
        }
    };

    // While the hostile user holds its connections, root is answered at once.
    for n in 0..5 {
        let started = Instant::now();
        let status = exchange(&daemon.socket, &ask_request("how much fuel do I have left"));
        let took = started.elapsed();
        eprintln!("root's ask {n}: {status:?} in {took:?}");
        assert_eq!(status, Some(200), "root's ask {n}");
        assert!(took < Duration::from_millis(100), "root's ask {n} took {took:?}");
    }
    assert!(opened >= 4000, "the hostile client connected {opened} times");
    assert!(
        still_open <= PER_CLIENT_CAP,
        "the hostile user kept {still_open} connections open (cap {PER_CLIENT_CAP})"
    );
    let asker = asker.expect("the hostile child reported");
    eprintln!("hostile: {opened} connected, {still_open} still open; its child got {asker:?}");
    let answered = asker.iter().filter(|s| **s == Some(200)).count();
    assert!(
        answered <= 40 && answered < asker.len(),
        "the hostile child (same user, new process) stayed limited: {asker:?}"
    );
    let metrics = testkit::exchange_body(&daemon.socket, "/metrics");
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_agent_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 4000.0, "connections closed at accept: {refused}");
    drop(reap.0.stdin.take());
}

/// How long until the daemon closes `stream` (reads to end-of-file); what it
/// sent before closing.
fn closed_within(mut stream: UnixStream, limit: Duration) -> (Duration, String) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen);
    (started.elapsed(), String::from_utf8_lossy(&seen).to_string())
}

#[test]
fn silent_half_sent_and_idle_connections_are_closed_on_time() {
    let daemon = Daemon::start(&[
        ("EDGE_AGENT__API__HEADER_TIMEOUT_MS", "300"),
        ("EDGE_AGENT__API__BODY_TIMEOUT_MS", "300"),
    ]);
    let limit = Duration::from_secs(3);
    let connect = || UnixStream::connect(&daemon.socket).unwrap();

    let (took, _) = closed_within(connect(), limit);
    assert!(took < Duration::from_millis(1500), "a silent connection lived {took:?}");

    let mut half_header = connect();
    half_header.write_all(STALLS[1]).unwrap();
    let (took, _) = closed_within(half_header, limit);
    assert!(took < Duration::from_millis(1500), "half a header lived {took:?}");

    let mut half_body = connect();
    half_body.write_all(STALLS[2]).unwrap();
    let (took, said) = closed_within(half_body, limit);
    assert!(took < Duration::from_millis(1500), "half a body lived {took:?}");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("did not arrive within 300 ms"), "{said}");

    // Kept alive after an answer, then silent: closed like a new one.
    let mut idle = connect();
    idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: edge-agent\r\n\r\n")
        .unwrap();
    let (took, said) = closed_within(idle, limit);
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(
        took < Duration::from_millis(1500),
        "an idle keep-alive connection lived {took:?}"
    );
}
