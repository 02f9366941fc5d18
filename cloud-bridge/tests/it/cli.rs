//! The binary's user errors: one line naming the problem, exit status 1, never
//! a Rust debug dump or a backtrace (even with RUST_BACKTRACE set); and its
//! shell completions, which need no config.

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
            "environment variable CLOUD_BRIDGE__LLM__PROVIDER: llm.provider: unknown variant: found `oracle`, expected `local` or `bedrock`",
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

#[test]
fn shell_completions_need_no_config_and_are_valid_bash() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-bridge"))
        .args(["completions", "bash"])
        .env("CLOUD_BRIDGE_CONFIG", "/nonexistent/cloud-bridge.toml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud-bridge.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "agent", "knowledge", "validate"] {
        assert!(text.contains(command), "{command} missing from the script");
    }
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}
