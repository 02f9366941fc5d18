//! The workspace's layers, read from `cargo tree`: which crate may link which.
//! These are the Architecture Invariants on dependencies (see ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The packages `package` links in a normal build (no dev or build dependencies),
/// with the given extra `cargo tree` arguments (features).
fn linked(package: &str, extra: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .args(extra)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn assert_links_none(package: &str, extra: &[&str], forbidden: &[&str]) {
    let links = linked(package, extra);
    assert!(links.contains(package), "cargo tree lists {package} itself: {links:?}");
    let found: Vec<&&str> = forbidden.iter().filter(|name| links.contains(**name)).collect();
    assert!(found.is_empty(), "{package} {extra:?} links {found:?}");
}

#[test]
fn the_cloud_links_the_car_only_for_its_demo() {
    assert_links_none("cloud-bridge", &["--no-default-features"], &["edge-agent"]);
    let with_demo = linked("cloud-bridge", &[]);
    assert!(
        with_demo.contains("edge-agent"),
        "the demo runs a car beside the supervisor, so the default build links edge-agent"
    );
}

#[test]
fn the_shared_crate_holds_no_product_code_and_no_network() {
    assert_links_none(
        "daemon",
        &[],
        &["edge-agent", "cloud-bridge", "rumqttc", "axum", "hyper", "aws-config"],
    );
}

#[test]
fn the_car_links_no_aws_sdk_no_broker_and_no_cloud() {
    assert_links_none(
        "edge-agent",
        &[],
        &[
            "aws-config",
            "aws-sdk-bedrockruntime",
            "aws-sdk-iotdataplane",
            "rumqttd",
            "cloud-bridge",
        ],
    );
}

#[test]
fn no_shipped_binary_links_the_test_kit() {
    for package in [
        "edge-agent",
        "cloud-bridge",
        "daemon",
        "models",
        "knowledge",
        "protocol",
    ] {
        assert_links_none(package, &[], &["testkit"]);
    }
    let kit = linked("testkit", &[]);
    assert!(kit.contains("edge-agent"), "the kit drives the car's daemon: {kit:?}");
}
