//! The car on a full disk, for real: its state folder on a 4 MiB tmpfs, made
//! by bubblewrap in a mount namespace of its own (the daemon runs in it through
//! `nsenter`; the test reaches it through `/proc/<pid>/root`), filled to the
//! last byte. Every emergency is still
//! answered with the market's number and HTTP 200, health says `degraded`, and
//! the alerts wait in the spool, through a restart on the still-full disk. Once
//! the disk has room again and the cloud is reachable (mosquitto and
//! cloud-bridge), every queued emergency reaches the cloud, once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Bridge;
use e2e::{require_bwrap, require_mosquitto, start_mosquitto_with, Pki};
use serde_json::Value;
use testkit::{ask, free_port, Daemon};

const DISK_BYTES: u64 = 4 * 1024 * 1024;
const EMERGENCY: &str = "there has been a crash and my passenger is hurt";

/// A tmpfs of a fixed size, alive as long as its holder process.
struct SmallDisk {
    holder: Child,
    /// The process holding the namespace open.
    sleeper: String,
    /// The tmpfs inside its namespace.
    inner: PathBuf,
    /// The tmpfs as this process sees it.
    path: PathBuf,
}

impl SmallDisk {
    fn new(bwrap: &Path, at: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let mut holder = Command::new(bwrap)
            .args(["--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--size"])
            .arg(bytes.to_string())
            .arg("--tmpfs")
            .arg(at)
            .args(["--die-with-parent", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let sleeper = loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", holder.id())).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.to_string();
            }
            assert!(
                holder.try_wait().unwrap().is_none(),
                "bubblewrap could not make the tmpfs"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no process inside bubblewrap"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let path = PathBuf::from(format!("/proc/{sleeper}/root{}", at.display()));
        let started = Instant::now();
        while !is_tmpfs_of(&path, bytes) {
            assert!(started.elapsed() < Duration::from_secs(10), "the tmpfs never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        SmallDisk {
            holder,
            sleeper,
            inner: at.to_path_buf(),
            path,
        }
    }

    /// Writes a file until the file system refuses (ENOSPC); the bytes written.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let chunk = vec![0xa5u8; 4096];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last partial block, byte by byte.
        while file.write(&[0xa5]).is_ok_and(|n| n == 1) {
            written += 1;
        }
        written
    }

    /// `nsenter` into the tmpfs's mount namespace, for the daemon.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-m".into(),
            "-t".into(),
            self.sleeper.clone(),
            "--".into(),
        ]
    }

    fn clear(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A file system of `bytes` at `path` (the tmpfs, not the folder under it).
fn is_tmpfs_of(path: &Path, bytes: u64) -> bool {
    let probe = path.join(".probe");
    let made = std::fs::write(&probe, vec![0u8; (bytes + 4096) as usize]).is_err();
    let _ = std::fs::remove_file(&probe);
    made
}

fn get(socket: &Path, path: &str) -> (u16, String) {
    let (status, body) = testkit::runtime()
        .block_on(edge_agent::client::request(socket, hyper::Method::GET, path, None))
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn health(daemon: &Daemon) -> Value {
    serde_json::from_str(&get(&daemon.socket, "/v1/health").1).unwrap()
}

fn ask_blocking(daemon: &Daemon, text: &str, conversation: &str) -> (u16, Value) {
    testkit::runtime().block_on(ask(&daemon.socket, text, conversation))
}

fn assert_emergency_answered(daemon: &Daemon, conversation: &str) {
    let (status, body) = ask_blocking(daemon, EMERGENCY, conversation);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["intent"], "emergency", "{body}");
    assert!(
        body["answer"].as_str().unwrap().starts_with("Call 911 now"),
        "the market's number (the demo car is in the US): {body}"
    );
}

fn car(outside: &Path, disk: &SmallDisk, pki: &Pki, broker: u16) -> Daemon {
    let (cert, key) = pki.issue("disk-car", &[]);
    let (port, ca, state) = (broker.to_string(), pki.ca_file(), disk.inner.join("state"));
    let enter = disk.enter();
    Daemon::start_through(
        &enter.iter().map(String::as_str).collect::<Vec<_>>(),
        outside,
        &[
            ("EDGE_AGENT__STATE__DIR", state.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__HOST", "localhost"),
            ("EDGE_AGENT__UPLINK__PORT", &port),
            ("EDGE_AGENT__UPLINK__THING_NAME", "disk-car"),
            ("EDGE_AGENT__UPLINK__CA_FILE", ca.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
            ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "100"),
            ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "500"),
            ("EDGE_AGENT__API__RATE_PER_SECOND", "1000"),
            ("EDGE_AGENT__API__RATE_BURST", "1000"),
        ],
    )
}

#[test]
fn on_a_full_disk_emergencies_are_answered_and_spooled_and_reach_the_cloud_once_it_clears() {
    let Some(bwrap) = require_bwrap() else { return };
    let Some(mosquitto) = require_mosquitto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(&bwrap, &dir.path().join("small"), DISK_BYTES);
    let outside = dir.path().join("car");
    std::fs::create_dir(&outside).unwrap();
    let pki = Pki::new(dir.path());
    let broker = free_port();

    // The cloud is out of reach for now; the car starts with room on its disk.
    let mut daemon = car(&outside, &disk, &pki, broker);
    let (status, _) = ask_blocking(&daemon, "how much fuel do I have left", "warm-up");
    assert_eq!(status, 200);
    let filled = disk.fill();
    assert!(filled > 0 && filled < DISK_BYTES, "{filled}");

    // What slack the database had (its WAL) runs out within a few turns; every
    // local answer is given all the while.
    let started = Instant::now();
    let mut turns = 0;
    while health(&daemon)["status"] != "degraded" {
        let (status, body) = ask_blocking(&daemon, "how much fuel do I have left", "filling");
        assert_eq!(status, 200, "a local answer on a full disk: {body}");
        turns += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never degraded after {turns} turns"
        );
    }
    for n in 0..3 {
        assert_emergency_answered(&daemon, &format!("crash-{n}"));
    }
    let h = health(&daemon);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reason"].as_str().unwrap().contains("full"), "{h}");
    assert_eq!(h["state"]["spooled"], 3, "the alerts wait in the spool: {h}");
    let metrics = get(&daemon.socket, "/metrics").1;
    assert!(metrics.contains("edge_agent_state_degraded 1"), "{metrics}");
    assert!(
        !metrics.contains("edge_agent_state_write_failures_total 0\n"),
        "{metrics}"
    );

    // A restart on the still-full disk: it starts, and the spool is as it was.
    daemon.kill_hard();
    let daemon = car(&outside, &disk, &pki, broker);
    assert_eq!(health(&daemon)["state"]["spooled"], 3);
    assert_emergency_answered(&daemon, "crash-3");
    assert_eq!(health(&daemon)["status"], "degraded");

    // The fault clears and the cloud comes up: every alert reaches it, once.
    disk.clear();
    let _broker = start_mosquitto_with(&mosquitto, &pki, broker, None);
    let bridge = Bridge::start(
        &pki,
        broker,
        "cloud-bridge",
        "bridge-disk",
        &dir.path().join("bridge.sqlite"),
    );
    let started = Instant::now();
    loop {
        let h = health(&daemon);
        if h["state"]["spooled"] == 0 && h["pending_escalations"] == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still waiting: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(bridge.handled(), 4, "each emergency handled once");
    let (status, _) = ask_blocking(&daemon, "how much fuel do I have left", "after");
    assert_eq!(status, 200);
    assert_eq!(health(&daemon)["status"], "ok", "writes work again");
}
