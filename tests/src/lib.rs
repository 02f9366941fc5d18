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
        eprintln!("SKIP: {missing}");
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
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto on `port`, with nothing persisted: a restart loses every session.
pub fn start_mosquitto_on(binary: &Path, pki: &Pki, port: u16) -> Mosquitto {
    let (cert, key) = pki.issue("localhost", &["localhost", "127.0.0.1"]);
    let acl = protocol::Acl {
        topics: protocol::Topics::default(),
        channels: vec!["stable".into()],
        cloud_user: "cloud-bridge".into(),
    };
    std::fs::write(pki.dir.join("acl"), acl.mosquitto()).unwrap();
    let conf = pki.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             use_identity_as_username true\nacl_file {}\nallow_anonymous false\npersistence false\nlog_dest stderr\n",
            pki.ca_file().display(),
            cert.display(),
            key.display(),
            pki.dir.join("acl").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mosquitto exited with {status} (port {port} taken?)");
        }
        assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto { child, port }
}

/// A car's escalation asking about traffic (answered at once, without tools, by
/// the local provider), numbered `i` in its own conversation.
pub fn traffic_escalation(thing: &str, i: usize) -> protocol::Envelope {
    let escalation = protocol::Escalation {
        utterance: format!("what's traffic like on route {i}"),
        intent: "traffic".into(),
        intent_confidence: 0.97,
        sentiment: "neutral".into(),
        sentiment_score: 0.0,
        vehicle: Default::default(),
        recent_turns: vec![],
        locale: "en-US".into(),
        market: "US".into(),
        priority: protocol::Priority::Normal,
    };
    protocol::Envelope::new(thing, Some(&format!("s-{i}")), protocol::Body::Escalation(escalation))
}
