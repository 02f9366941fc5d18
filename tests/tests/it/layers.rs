//! The workspace's layers, read from `cargo tree`: which crate may link which.
//! These are the Architecture Invariants on dependencies (see ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
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

/// The crates that ship in a binary.
const SHIPPED_CRATES: [&str; 6] = [
    "edge-agent",
    "cloud-bridge",
    "daemon",
    "models",
    "knowledge",
    "protocol",
];

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
    for package in SHIPPED_CRATES {
        assert_links_none(package, &[], &["testkit"]);
    }
    let kit = linked("testkit", &[]);
    assert!(kit.contains("edge-agent"), "the kit drives the car's daemon: {kit:?}");
}

/// The crate's top-level modules (`src/x.rs` or `src/x/`) and which others each
/// imports through a `crate::` path, its submodules' imports included. A file's
/// `#[cfg(test)]` module and its comments do not count; `super::` paths are not
/// followed (none reaches a sibling top-level module here).
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect_rust_files(src, &mut files);
    let top = |path: &Path| -> Option<String> {
        let first = path.strip_prefix(src).ok()?.components().next()?;
        let name = first.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
        (!matches!(name.as_str(), "lib" | "main" | "bin")).then_some(name)
    };
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        if let Some(module) = top(path) {
            imports.entry(module).or_default();
        }
    }
    for path in &files {
        let Some(module) = top(path) else { continue };
        let text = std::fs::read_to_string(path).unwrap();
        let found: BTreeSet<String> = crate_paths(&code_outside_tests(&text))
            .into_iter()
            .filter(|name| *name != module && imports.contains_key(name))
            .collect();
        imports.get_mut(&module).unwrap().extend(found);
    }
    imports
}

fn collect_rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The text before the file's test module, without `//` comments.
fn code_outside_tests(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let next_opens_a_module = lines.peek().is_some_and(|l| l.trim_start().starts_with("mod "));
        if line.trim() == "#[cfg(test)]" && next_opens_a_module {
            break;
        }
        code.push_str(line.split("//").next().unwrap_or_default());
        code.push('\n');
    }
    code
}

/// The first segment of every `crate::` path, grouped imports
/// (`crate::{a::X, b}`) included.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let identifier = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.insert(identifier(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(identifier(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(identifier(rest));
        }
    }
    names.remove("");
    names
}

/// The import cycles: each set of two or more modules that reach one another.
fn module_cycles(imports: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<BTreeSet<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(module) = todo.pop() {
            for next in &imports[&module] {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = imports.keys().map(|m| (m, reach(m))).collect();
    reached
        .iter()
        .map(|(module, from_it)| {
            let mut cycle: BTreeSet<String> = from_it
                .iter()
                .filter(|other| reached[other].contains(*module))
                .cloned()
                .collect();
            cycle.insert((*module).clone());
            cycle
        })
        .filter(|cycle| cycle.len() > 1)
        .collect()
}

#[test]
fn the_cycle_check_finds_a_seeded_cycle_and_nothing_else() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/module-cycle/src");
    let imports = module_imports(&fixture);
    assert_eq!(
        imports.keys().collect::<Vec<_>>(),
        ["billing", "orders", "report"],
        "top-level modules, submodules folded in"
    );
    assert_eq!(
        imports["billing"],
        BTreeSet::from(["orders".to_string()]),
        "billing/tax.rs's import counts, its comment does not"
    );
    assert_eq!(
        imports["orders"],
        BTreeSet::from(["billing".to_string()]),
        "the test module's import does not count"
    );
    let cycles = module_cycles(&imports);
    let expected = BTreeSet::from([BTreeSet::from(["billing".to_string(), "orders".to_string()])]);
    assert_eq!(cycles, expected);
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in SHIPPED_CRATES.into_iter().chain(["testkit"]) {
        let imports = module_imports(&workspace.join(krate).join("src"));
        assert!(imports.len() >= 3, "{krate}: the check found its modules: {imports:?}");
        let cycles = module_cycles(&imports);
        assert!(
            cycles.is_empty(),
            "{krate} has import cycles between modules: {cycles:?}"
        );
    }
}

/// Whether `path` (under a crate's `src/`) is binary code: `main.rs`, `src/cmd/`
/// (the binary's commands) or `src/bin/`.
fn is_binary_code(src: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first == "main.rs" || first == "cmd" || first == "bin"
}

#[test]
fn anyhow_stays_in_binaries() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    for krate in SHIPPED_CRATES {
        let src = workspace.join(krate).join("src");
        let mut files = Vec::new();
        collect_rust_files(&src, &mut files);
        for path in files.iter().filter(|path| !is_binary_code(&src, path)) {
            let code = code_outside_tests(&std::fs::read_to_string(path).unwrap());
            if code.contains("anyhow") {
                offenders.push(path.strip_prefix(&workspace).unwrap().display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code uses anyhow (return a typed error): {offenders:?}"
    );
}

#[test]
fn at_most_five_functions_are_excused_from_the_length_limit() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut excused = Vec::new();
    for krate in SHIPPED_CRATES.into_iter().chain(["testkit", "tests"]) {
        let mut files = Vec::new();
        collect_rust_files(&workspace.join(krate), &mut files);
        for path in files {
            // Attributes as rustfmt lays them out, spaces and line breaks aside.
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            // Spelt in two halves, so this file does not count itself.
            let count = text.matches(concat!("expect(clippy::", "too_many_lines")).count();
            excused.extend(std::iter::repeat_n(path.display().to_string(), count));
            assert!(
                !text.contains(concat!("allow(clippy::", "too_many_lines")),
                "{}: an exception is an #[expect] with its reason, not an allow",
                path.display()
            );
        }
    }
    assert!(!excused.is_empty(), "the check finds the exceptions there are");
    assert!(excused.len() <= 5, "{} exceptions: {excused:?}", excused.len());
}

#[test]
fn each_crate_links_one_integration_test_binary() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut binaries = 0;
    for krate in SHIPPED_CRATES.into_iter().chain(["testkit", "tests"]) {
        let tests = workspace.join(krate).join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            // Cargo makes a test binary of each `tests/*.rs` and `tests/*/main.rs`.
            let is_binary = path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").is_file();
            if is_binary {
                assert_eq!(
                    path.file_name().unwrap(),
                    "it",
                    "{}: integration tests are modules of tests/it/main.rs",
                    path.display()
                );
                binaries += 1;
            }
        }
    }
    assert!(binaries >= 5, "the check finds the binaries there are ({binaries})");
}
