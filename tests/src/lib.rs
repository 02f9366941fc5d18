//! What the end-to-end tests and the benchmark share: mosquitto as production
//! runs it (mutual TLS with a test CA, `require_certificate`, the ACL rendered by
//! `protocol`), the rule for external tools (without mosquitto or bubblewrap a
//! test prints `SKIP:` and passes; with `EDGE_REQUIRE_EXTERNALS=1`, as in CI, it
//! fails), and a typical escalation.
//!
//! The tests themselves are in `tests/`; they also include edge-agent's test
//! support (the daemon, the in-process broker, the test network) by path.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

pub fn mosquitto_binary() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The mosquitto binary, or `None` after a visible skip (a failure in CI).
pub fn require_mosquitto() -> Option<PathBuf> {
    require_external(
        mosquitto_binary(),
        "mosquitto is not installed (apt-get install mosquitto)",
    )
}

/// bubblewrap, or `None` after a visible skip (a failure in CI).
pub fn require_bwrap() -> Option<PathBuf> {
    let found = ["/usr/bin/bwrap", "/usr/local/bin/bwrap"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    require_external(found, "bubblewrap is not installed (apt-get install bubblewrap)")
}

/// `found`, or `None` after printing `SKIP: {missing}`; with
/// `EDGE_REQUIRE_EXTERNALS=1` a missing tool fails the test instead.
fn require_external(found: Option<PathBuf>, missing: &str) -> Option<PathBuf> {
    if found.is_none() {
        if std::env::var("EDGE_REQUIRE_EXTERNALS").is_ok_and(|v| v == "1") {
            panic!("EDGE_REQUIRE_EXTERNALS=1 but {missing}");
        }
        // Written to the process's stderr, not through the test harness's
        // capture, so a skip shows in every run.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP: {missing}");
    }
    found
}

/// Runs `command` to completion; its stdout, or a panic with its stderr.
pub fn stdout_of(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A test CA and the certificates it signs, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "edge-agent test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `cn` (and `sans`), signed by the CA: (cert, key) paths.
    pub fn issue(&self, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_path, key_path) = (self.dir.join(format!("{cn}.pem")), self.dir.join(format!("{cn}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    binary: PathBuf,
    conf: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a broker is stopped before it is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: mosquitto writes its persistence file and exits.
    Term,
    /// SIGKILL: nothing is written.
    Kill,
}

impl Mosquitto {
    /// Stops the broker and starts it again on the same port and configuration.
    #[allow(unsafe_code)] // kill(2)
    pub fn restart(&mut self, how: Stop) {
        let signal = match how {
            Stop::Term => libc::SIGTERM,
            Stop::Kill => libc::SIGKILL,
        };
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "cannot signal mosquitto");
        self.child.wait().unwrap();
        self.child = spawn_mosquitto(&self.binary, &self.conf, self.port);
    }
}

/// mosquitto on `port`, with nothing persisted: a restart loses every session.
pub fn start_mosquitto_on(binary: &Path, pki: &Pki, port: u16) -> Mosquitto {
    start_mosquitto_with(binary, pki, port, None)
}

/// mosquitto on `port`; with `persistence`, sessions, their queued messages and
/// retained messages are kept in that folder across a restart (SIGTERM writes
/// them; a kill -9 loses what came since the last autosave).
pub fn start_mosquitto_with(binary: &Path, pki: &Pki, port: u16, persistence: Option<&Path>) -> Mosquitto {
    let (cert, key) = pki.issue("localhost", &["localhost", "127.0.0.1"]);
    let acl = protocol::Acl {
        topics: protocol::Topics::default(),
        channels: vec!["stable".into()],
        cloud_user: "cloud-bridge".into(),
    };
    std::fs::write(pki.dir.join("acl"), acl.mosquitto()).unwrap();
    let persisted = match persistence {
        // As root mosquitto would drop to its own user, which cannot write a
        // test's private folder; `user` is ignored when not started as root.
        Some(dir) => format!(
            "persistence true\npersistence_location {}/\nautosave_interval 1\nuser root\n",
            dir.display()
        ),
        None => "persistence false\n".to_string(),
    };
    let conf = pki.dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             use_identity_as_username true\nacl_file {}\nallow_anonymous false\n{persisted}log_dest stderr\n\
             max_queued_messages 100000\n",
            pki.ca_file().display(),
            cert.display(),
            key.display(),
            pki.dir.join("acl").display()
        ),
    )
    .unwrap();
    let child = spawn_mosquitto(binary, &conf, port);
    Mosquitto {
        child,
        port,
        binary: binary.to_path_buf(),
        conf,
    }
}

fn spawn_mosquitto(binary: &Path, conf: &Path, port: u16) -> Child {
    let started = Instant::now();
    loop {
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        // The port may still be held for a moment by the broker just stopped.
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "mosquitto exited with {status} (port {port} taken?)"
                );
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A car's escalation asking about traffic (answered at once, without tools, by
/// the local provider), numbered `i` in its own conversation.
pub fn traffic_escalation(thing: &str, i: usize) -> protocol::Envelope {
    let escalation = protocol::Escalation {
        utterance: format!("what's traffic like on route {i}"),
        intent: protocol::Intent::Traffic,
        intent_confidence: 0.97,
        top_intent: Some(protocol::Intent::Traffic),
        top_confidence: Some(0.97),
        sentiment: protocol::Sentiment::Neutral,
        sentiment_score: 0.0,
        vehicle: Default::default(),
        recent_turns: vec![],
        locale: "en-US".into(),
        market: "US".into(),
        priority: protocol::Priority::Normal,
    };
    protocol::Envelope::new(thing, Some(&format!("s-{i}")), protocol::Body::Escalation(escalation))
}
