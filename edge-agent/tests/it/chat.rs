//! `edge-agent chat` through the built binary with no model flags: piped turns,
//! the printed intent of each, live signals, bad lines, and the queue it leaves;
//! and the other commands a person types (`kb build`, `validate`, `completions`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

fn chat_command(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    cmd.arg("chat")
        .args(args)
        .env_remove("EDGE_AGENT_MODEL_DIR")
        .env_remove("EDGE_AGENT_CONFIG")
        .env("EDGE_AGENT__STATE__DIR", state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn chat(state: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = chat_command(state, args).spawn().expect("edge-agent runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("stdin written");
    assert!(
        output.status.success(),
        "chat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_turns(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn piped_chat_answers_each_line_prints_its_intent_and_exits_at_end_of_input() {
    let state = tempfile::tempdir().unwrap();
    let output = chat(
        state.path(),
        &[],
        b"how much fuel do i have left\nwhat does the red oil can light mean\nhow do i pair my phone\n",
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "three lines per turn:\n{text}");
    for (turn, want) in lines.chunks(3).zip(["fuel_level", "warning_light", "feature_howto"]) {
        assert!(turn[0].starts_with("you> "), "{text}");
        assert!(turn[1].starts_with("car> "), "{text}");
        assert!(turn[2].contains(&format!("intent {want} ")), "{text}");
        assert!(turn[2].contains("route local"), "{text}");
        assert!(turn[2].contains("sentiment "), "{text}");
    }
    assert!(
        lines[1].contains("62% fuel"),
        "the demo vehicle's live value: {}",
        lines[1]
    );
    assert!(lines[4].contains("oil pressure"), "{}", lines[4]);
    assert!(lines[5].contains("sources light-oil-pressure"), "{}", lines[5]);
    assert!(
        lines[7].contains("Bluetooth") || lines[7].contains("Add device"),
        "{}",
        lines[7]
    );
}

#[test]
fn json_chat_writes_one_object_per_turn_and_nothing_else() {
    let state = tempfile::tempdir().unwrap();
    let output = chat(
        state.path(),
        &["--json"],
        b"hello\nwhat are my tyre pressures\nbook me a service for friday morning\n",
    );
    let turns = json_turns(&output);
    assert_eq!(turns.len(), 3);
    for turn in &turns {
        for field in [
            "text",
            "answer",
            "intent",
            "intent_confidence",
            "sentiment",
            "sentiment_score",
            "route",
            "sources",
        ] {
            assert!(turn.get(field).is_some(), "{field} missing in {turn}");
        }
    }
    assert_eq!(turns[1]["intent"], "tire_pressure");
    assert_eq!(
        turns[1]["answer"].as_str().unwrap().split(". ").next().unwrap(),
        "Front left is at 26 psi, 9 below the recommended 35 psi",
        "the issue's example, from the demo vehicle"
    );
    assert_eq!(turns[2]["intent"], "book_service");
    assert_eq!(turns[2]["route"], "cloud");
    assert_eq!(turns[2]["escalation"]["status"], "pending");
    assert!(turns[2]["answer"]
        .as_str()
        .unwrap()
        .contains("once the car is back online"));
}

/// Spawns a JSON chat and talks to it a turn at a time.
struct LiveChat {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl LiveChat {
    fn start(state: &Path, args: &[&str]) -> LiveChat {
        let mut child = chat_command(state, args).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        LiveChat { child, lines }
    }

    fn ask(&mut self, text: &str) -> Value {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{text}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

#[test]
fn a_change_in_the_vehicle_signals_shows_in_the_very_next_answer() {
    let state = tempfile::tempdir().unwrap();
    let signals = state.path().join("signals.jsonl");
    std::fs::write(&signals, "").unwrap();
    let mut chat = LiveChat::start(state.path(), &["--json", "--signals", signals.to_str().unwrap()]);
    let before = chat.ask("how much fuel is left");
    assert!(before["answer"].as_str().unwrap().contains("62% fuel"), "{before}");
    let mut file = std::fs::OpenOptions::new().append(true).open(&signals).unwrap();
    writeln!(file, r#"{{"fuel_percent": 9, "fuel_range_km": 64, "market": "DE"}}"#).unwrap();
    drop(file);
    let after = chat.ask("how much fuel is left");
    let answer = after["answer"].as_str().unwrap();
    assert!(answer.contains("9% fuel, about 64 km"), "{answer}");
    assert!(answer.contains("Fuel is low"), "{answer}");
    // A bad update is skipped; the state it would have changed stays as it was.
    let mut file = std::fs::OpenOptions::new().append(true).open(&signals).unwrap();
    writeln!(file, "{{\"fuel_percent\": \"empty\"}}\nnot json at all").unwrap();
    writeln!(
        file,
        r#"{{"tire_pressure_kpa": {{"front_left": 240, "front_right": 240, "rear_left": 160, "rear_right": 240}}}}"#
    )
    .unwrap();
    drop(file);
    let tyres = chat.ask("check my tyre pressures");
    let answer = tyres["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("Rear left is at 1.6 bar, 0.8 below the recommended 2.4"),
        "{answer}"
    );
    let fuel = chat.ask("how much fuel is left");
    assert!(fuel["answer"].as_str().unwrap().contains("9% fuel"), "{fuel}");
    chat.finish();
}

#[test]
fn an_emergency_gives_the_emergency_number_of_the_cars_market() {
    for (market, number) in [("US", "911"), ("UK", "999"), ("DE", "112"), ("AU", "000")] {
        let state = tempfile::tempdir().unwrap();
        let signals = state.path().join("signals.jsonl");
        std::fs::write(&signals, format!("{{\"market\": \"{market}\"}}\n")).unwrap();
        let output = chat(
            state.path(),
            &["--json", "--signals", signals.to_str().unwrap()],
            b"we just crashed and my passenger is bleeding\n",
        );
        let turn = &json_turns(&output)[0];
        assert_eq!(turn["intent"], "emergency");
        assert_eq!(turn["route"], "urgent");
        assert_eq!(turn["escalation"]["priority"], "urgent");
        let answer = turn["answer"].as_str().unwrap();
        assert!(answer.starts_with(&format!("Call {number} now")), "{market}: {answer}");
    }
}

#[test]
fn bad_lines_get_an_error_and_the_conversation_goes_on() {
    let state = tempfile::tempdir().unwrap();
    let mut input = b"hello\ncaf\xff\xfe\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', 70_000));
    input.extend_from_slice(b"\n\n   \nwhere are we\n");
    let turns = json_turns(&chat(state.path(), &["--json"], &input));
    assert_eq!(turns.len(), 4, "{turns:?}");
    assert_eq!(turns[0]["intent"], "greeting");
    assert!(turns[1]["error"].as_str().unwrap().contains("UTF-8"), "{}", turns[1]);
    assert!(turns[2]["error"].as_str().unwrap().contains("limit"), "{}", turns[2]);
    assert_eq!(turns[3]["intent"], "current_location");
}

#[test]
fn queued_escalations_survive_the_process() {
    let state = tempfile::tempdir().unwrap();
    chat(
        state.path(),
        &["--json"],
        b"book my car in for a service next tuesday\ni want to make a complaint about the dealer\n",
    );
    let store = edge_agent::store::Store::open(
        &state.path().join("edge-agent.sqlite"),
        edge_agent::store::Retention {
            days: 30,
            max_turns_per_conversation: 100,
        },
    )
    .unwrap();
    let pending = store.pending_escalations().unwrap();
    let intents: Vec<&str> = pending.iter().map(|p| p.intent.as_str()).collect();
    assert_eq!(intents, ["book_service", "complaint"]);
    assert_eq!(
        pending[0].payload["utterance"],
        "book my car in for a service next tuesday"
    );
    assert_eq!(pending[1].payload["recent_turns"].as_array().unwrap().len(), 1);
    assert!(pending[0].payload["vehicle"]["fuel_percent"].is_number());
}

#[test]
fn kb_build_compiles_a_pack_and_names_the_file_and_line_of_a_bad_article() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kb.sqlite");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(args)
            .env_remove("EDGE_AGENT_MODEL_DIR")
            .env("EDGE_AGENT__STATE__DIR", dir.path())
            .output()
            .unwrap()
    };
    let built = run(&["kb", "build", "--out", out.to_str().unwrap()]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(String::from_utf8_lossy(&built.stderr).contains("kestrel-voyager-2025 v6: 133 articles"));
    assert!(out.is_file());

    let pack = dir.path().join("pack");
    std::fs::create_dir_all(pack.join("articles")).unwrap();
    std::fs::write(pack.join("pack.toml"), "name = \"p\"\ntitle = \"P\"\nversion = 1\n").unwrap();
    std::fs::write(
        pack.join("articles/a.toml"),
        "[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"warp_drive\"]\nsummary = \"One.\"\nbody = \"B\"\n",
    )
    .unwrap();
    let bad = run(&[
        "kb",
        "build",
        "--pack",
        pack.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("articles/a.toml:4: article `a`: `warp_drive` is not an intent"),
        "{stderr}"
    );

    let valid = run(&["validate"]);
    assert!(valid.status.success(), "{}", String::from_utf8_lossy(&valid.stderr));
    let invalid = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("validate")
        .env("EDGE_AGENT__VEHICLE__MARKET", "Narnia")
        .output()
        .unwrap();
    assert!(!invalid.status.success());
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("vehicle.market `Narnia`"));
    // What `serve` would refuse, `validate` refuses first, in one plain line.
    for (key, value, says) in [
        (
            "EDGE_AGENT__API__SOCKET_GROUP",
            "no-such-group-here",
            "no group named `no-such-group-here`",
        ),
        (
            "EDGE_AGENT__FLEET__KEYS__K1__PUBLIC_KEY",
            "not-a-key",
            "fleet.keys.k1: public_key is not 32 bytes",
        ),
        ("EDGE_AGENT__UPLINK__HOST", "localhost", "/nonexistent/ca.pem"),
    ] {
        let refused = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("validate")
            .env(key, value)
            .env("EDGE_AGENT__UPLINK__CA_FILE", "/nonexistent/ca.pem")
            .env("EDGE_AGENT__UPLINK__CERT_FILE", "/nonexistent/car.pem")
            .env("EDGE_AGENT__UPLINK__KEY_FILE", "/nonexistent/car.key")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{key}={value} passed validate");
        assert!(stderr.contains(says), "{key}: {stderr}");
        assert!(!stderr.contains("Some(") && !stderr.contains("backtrace"), "{stderr}");
    }
}

#[test]
fn log_lines_stay_out_of_the_chat_unless_asked_for() {
    let emergency = b"we crashed and my friend is hurt\n";
    let state = tempfile::tempdir().unwrap();
    let mut quiet = chat_command(state.path(), &[]);
    quiet.env_remove("EDGE_LOG");
    let output = spawn_and_feed(quiet, emergency);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Call 911 now"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("emergency escalated"), "{stderr}");
    let mut verbose = chat_command(state.path(), &["-v"]);
    verbose.env_remove("EDGE_LOG");
    let output = spawn_and_feed(verbose, emergency);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("emergency escalated"), "-v shows warnings: {stderr}");
}

fn spawn_and_feed(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd.spawn().expect("edge-agent runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn shell_completions_are_valid_bash_and_know_every_command() {
    let script = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success(), "{}", String::from_utf8_lossy(&script.stderr));
    let text = String::from_utf8(script.stdout).unwrap();
    for command in ["classify", "chat", "serve", "ask", "kb", "validate", "completions"] {
        assert!(text.contains(command), "{command} missing from the script");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge-agent.bash");
    std::fs::write(&path, &text).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    let unknown = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("tcsh"));
}
