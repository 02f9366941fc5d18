//! The daemon under its unit's view of the file system, enforced by bubblewrap:
//! the root read-only, and only the unit's state, runtime and configuration
//! directories writable (systemd's `ProtectSystem=strict` with `StateDirectory=`,
//! `RuntimeDirectory=` and `ConfigurationDirectory=`, located by the same
//! environment variables systemd sets). It validates, serves and answers
//! `/v1/ask` there, stops cleanly, and leaves the configuration untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file under `dir` with its contents, for before/after comparisons.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

/// `edge-agent ARGS` inside the sandbox.
fn sandboxed(bwrap: &Path, dirs: &[&Path; 3], args: &[&str]) -> Command {
    let [state, runtime, config] = dirs;
    let mut cmd = Command::new(bwrap);
    cmd.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
    for dir in dirs {
        cmd.arg("--bind").arg(dir).arg(dir);
    }
    // SAFETY of the gid: the socket's group must exist; the test's own group does.
    let gid = std::fs::metadata(state)
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap();
    cmd.args(["--unshare-ipc", "--unshare-uts", "--die-with-parent", "--"])
        .arg(testkit::edge_binary())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("STATE_DIRECTORY", state)
        .env("RUNTIME_DIRECTORY", runtime)
        .env("CONFIGURATION_DIRECTORY", config)
        .env("EDGE_AGENT__API__SOCKET_GROUP", gid.to_string())
        .env("EDGE_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Waits up to 30 s for the daemon's socket; the log on failure.
fn wait_for_socket(socket: &Path, log_path: &Path) {
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no socket in the runtime directory; log:\n{}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A warning-light question is answered on the car; an emergency is queued in the
/// state directory's outbox (no uplink here).
fn answers_a_light_and_queues_an_emergency(socket: &Path) {
    let runtime_rt = testkit::runtime();
    let ask = |text: &str| {
        let (status, body) = runtime_rt
            .block_on(edge_agent::client::request(
                socket,
                hyper::Method::POST,
                "/v1/ask",
                Some(serde_json::json!({ "text": text })),
            ))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };
    let oil = ask("what does the red oil can light mean");
    assert_eq!(oil["intent"], "warning_light", "{oil}");
    assert!(oil["answer"].as_str().unwrap().to_lowercase().contains("oil"), "{oil}");
    // An escalation goes to the outbox.
    let emergency = ask("there has been a crash and my passenger is hurt");
    assert_eq!(emergency["intent"], "emergency", "{emergency}");
}

/// SIGTERM to the daemon (bubblewrap's child), and its exit status within 15 s.
fn stop_the_daemon_inside(sandbox: &mut std::process::Child, sandbox_pid: u32) -> std::process::ExitStatus {
    let children = std::fs::read_to_string(format!("/proc/{sandbox_pid}/task/{sandbox_pid}/children")).unwrap();
    let daemon = children.split_whitespace().next().expect("the daemon's pid");
    assert!(Command::new("kill").args(["-TERM", daemon]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = sandbox.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the sandboxed daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_daemon_answers_under_a_read_only_root_and_writes_only_its_own_directories() {
    let Some(bwrap) = e2e::require_bwrap() else { return };
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("var-lib-edge-agent");
    let runtime = root.path().join("run-edge-agent");
    let config = root.path().join("etc-edge-agent");
    for dir in [&state, &runtime, &config] {
        std::fs::create_dir(dir).unwrap();
    }
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-agent/dist/config.toml");
    std::fs::copy(&packaged, config.join("config.toml")).unwrap();
    let config_before = snapshot(&config);
    let dirs = [state.as_path(), runtime.as_path(), config.as_path()];

    // ExecStartPre.
    let validate = sandboxed(&bwrap, &dirs, &["validate"]).output().unwrap();
    assert!(
        validate.status.success(),
        "validate failed in the sandbox: {}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let log_path = root.path().join("serve.log");
    let mut child = sandboxed(&bwrap, &dirs, &["serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let sandbox_pid = child.id();
    let reap = testkit::KillOnDrop(&mut child);
    let socket = runtime.join("api.sock");
    wait_for_socket(&socket, &log_path);

    answers_a_light_and_queues_an_emergency(&socket);

    let status = stop_the_daemon_inside(reap.0, sandbox_pid);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status}; log:\n{log}");

    // Nothing failed for want of a writable place, the configuration is as
    // installed, and what was written is the daemon's own state.
    for refused in ["Read-only file system", "os error 30", "Permission denied"] {
        assert!(!log.contains(refused), "`{refused}` in the log:\n{log}");
    }
    assert_eq!(snapshot(&config), config_before, "the configuration directory changed");
    let written: Vec<_> = snapshot(&state).into_keys().collect();
    println!("written in the state directory: {written:?}");
    assert!(
        written.iter().any(|p| p.starts_with("edge-agent.sqlite")),
        "{written:?}"
    );
    assert!(written.iter().any(|p| p.starts_with("knowledge.sqlite")), "{written:?}");
    assert!(!socket.exists(), "the socket outlived the daemon");
}
