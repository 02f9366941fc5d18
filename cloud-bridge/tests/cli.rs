//! The binary's user errors: one line naming the problem, exit status 1, never
//! a Rust debug dump or a backtrace (even with RUST_BACKTRACE set).

use std::process::Command;

fn cloud_bridge(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-bridge"))
        .args(args)
        .env_remove("CLOUD_BRIDGE_CONFIG")
        .env("CLOUD_BRIDGE__STORE__PATH", dir.path().join("s.sqlite"))
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_user_error_is_one_plain_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("recalls.json");
    std::fs::write(&bad, "[1").unwrap();
    for (args, env, says) in [
        (
            vec!["report"],
            vec![("CLOUD_BRIDGE__LLM__PROVIDER", "oracle")],
            "unknown variant `oracle`",
        ),
        (
            vec!["recalls", bad.to_str().unwrap()],
            vec![],
            "not a JSON array of recalls",
        ),
        (vec!["recalls", "/nonexistent/recalls.json"], vec![], "No such file"),
    ] {
        let (ok, stderr) = cloud_bridge(&args, &env);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.starts_with("cloud-bridge: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace") && !stderr.contains("Error {"), "{stderr}");
    }
}
