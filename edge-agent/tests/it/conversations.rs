//! The conversation scenarios (`tests/conversations/scenarios.toml`) through the
//! built binary: each scenario runs as one `edge-agent chat --json` process per
//! market and vehicle state, and each of its turns is one check of intent, route,
//! the words the answer must and must not hold, and its length.
//!
//! The file's shape is checked first (enough scenarios, turns and checks, every
//! turn fully specified). The run prints every failed check and the pass rate, and
//! fails below [`REQUIRED_PASS_RATE`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

/// The share of checks that must pass: a ratchet, raised as the dialogue catches
/// up with the scenarios (37.0% when they were written, 98.5% now), above issue
/// 18's bar of 0.97.
const REQUIRED_PASS_RATE: f64 = 0.98;

const DEFAULT_MAX_WORDS: usize = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    markets: BTreeMap<String, toml::Table>,
    states: BTreeMap<String, toml::Table>,
    scenario: Vec<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    #[serde(default)]
    markets: Option<Vec<String>>,
    #[serde(default)]
    states: Option<Vec<String>>,
    #[serde(default)]
    signals: toml::Table,
    turn: Vec<Check>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    say: String,
    intent: OneOrMany,
    route: OneOrMany,
    must: Vec<String>,
    #[serde(default)]
    must_not: Vec<String>,
    #[serde(default)]
    must_us: Vec<String>,
    #[serde(default)]
    must_uk: Vec<String>,
    #[serde(default)]
    must_not_us: Vec<String>,
    #[serde(default)]
    must_not_uk: Vec<String>,
    #[serde(default)]
    max_words: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn allows(&self, value: &str) -> bool {
        match self {
            OneOrMany::One(one) => one == value,
            OneOrMany::Many(many) => many.iter().any(|m| m == value),
        }
    }

    fn all(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// The words a check adds for one market.
fn in_market<'a>(market: &str, us: &'a [String], uk: &'a [String]) -> &'a [String] {
    match market {
        "US" => us,
        "UK" => uk,
        _ => &[],
    }
}

impl Check {
    fn must_for(&self, market: &str) -> impl Iterator<Item = &String> {
        self.must.iter().chain(in_market(market, &self.must_us, &self.must_uk))
    }

    fn must_not_for(&self, market: &str) -> impl Iterator<Item = &String> {
        self.must_not
            .iter()
            .chain(in_market(market, &self.must_not_us, &self.must_not_uk))
    }

    /// What is wrong with `turn` as an answer to this check, if anything.
    fn failures(&self, turn: &Value, market: &str) -> Vec<String> {
        let mut wrong = Vec::new();
        let intent = turn["intent"].as_str().unwrap_or_default();
        if !self.intent.allows(intent) {
            wrong.push(format!("intent {intent}, want {:?}", self.intent.all()));
        }
        let route = turn["route"].as_str().unwrap_or_default();
        if !self.route.allows(route) {
            wrong.push(format!("route {route}, want {:?}", self.route.all()));
        }
        let answer = turn["answer"].as_str().unwrap_or_default();
        let lower = answer.to_lowercase();
        for must in self.must_for(market) {
            if !must.split('|').any(|m| lower.contains(&m.to_lowercase())) {
                wrong.push(format!("lacks {must:?}"));
            }
        }
        for must_not in self.must_not_for(market) {
            if lower.contains(&must_not.to_lowercase()) {
                wrong.push(format!("holds {must_not:?}"));
            }
        }
        let words = answer.split_whitespace().count();
        let limit = self.max_words.unwrap_or(DEFAULT_MAX_WORDS);
        if words > limit {
            wrong.push(format!("{words} words, limit {limit}"));
        }
        wrong
    }
}

fn scenario_file() -> ScenarioFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conversations/scenarios.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_scenario_file_has_the_shape_the_issue_asks_for() {
    let file = scenario_file();
    let scenarios = &file.scenario;
    let long = scenarios.iter().filter(|s| s.turn.len() >= 3).count();
    let checks: usize = scenarios.iter().map(|s| s.turn.len()).sum();
    assert!(scenarios.len() >= 60, "{} scenarios", scenarios.len());
    assert!(long >= 40, "{long} scenarios of three or more turns");
    assert!(checks >= 150, "{checks} checks");
    assert!(file.markets.contains_key("US") && file.markets.contains_key("UK"));
    assert!(file.states.contains_key("lit") && file.states.contains_key("clear"));
    let mut names = std::collections::HashSet::new();
    for scenario in scenarios {
        assert!(names.insert(&scenario.name), "two scenarios named {:?}", scenario.name);
        let has_must_not = scenario
            .turn
            .iter()
            .any(|t| !(t.must_not.is_empty() && t.must_not_us.is_empty() && t.must_not_uk.is_empty()));
        assert!(has_must_not, "{:?} has no must_not", scenario.name);
        for turn in &scenario.turn {
            assert!(!turn.must.is_empty(), "{:?}: {:?} has no must", scenario.name, turn.say);
            assert!(!turn.say.trim().is_empty() && !turn.say.contains('\n'));
        }
        for name in scenario.markets.iter().flatten() {
            assert!(file.markets.contains_key(name), "{:?}: no market {name}", scenario.name);
        }
        for name in scenario.states.iter().flatten() {
            assert!(file.states.contains_key(name), "{:?}: no state {name}", scenario.name);
        }
    }
}

/// One scenario in one market and state.
struct Run<'a> {
    scenario: &'a Scenario,
    market: &'a str,
    state: &'a str,
    signals: Value,
}

fn runs(file: &ScenarioFile) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    for scenario in &file.scenario {
        for (market, market_signals) in &file.markets {
            if scenario.markets.as_ref().is_some_and(|m| !m.contains(market)) {
                continue;
            }
            for (state, state_signals) in &file.states {
                if scenario.states.as_ref().is_some_and(|s| !s.contains(state)) {
                    continue;
                }
                let mut signals = serde_json::Map::new();
                for table in [market_signals, state_signals, &scenario.signals] {
                    let value = serde_json::to_value(table).expect("TOML signals are JSON");
                    signals.extend(value.as_object().expect("a table").clone());
                }
                runs.push(Run {
                    scenario,
                    market,
                    state,
                    signals: Value::Object(signals),
                });
            }
        }
    }
    runs
}

/// The turns `edge-agent chat --json` answered for one run.
fn chat(run: &Run<'_>, dir: &Path) -> Vec<Value> {
    let signals: PathBuf = dir.join("signals.jsonl");
    std::fs::write(&signals, format!("{}\n", run.signals)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["chat", "--json", "--signals"])
        .arg(&signals)
        .env_remove("EDGE_AGENT_MODEL_DIR")
        .env_remove("EDGE_AGENT_CONFIG")
        .env("EDGE_AGENT__STATE__DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edge-agent runs");
    let input: String = run.scenario.turn.iter().map(|t| format!("{}\n", t.say)).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The failed checks of one run, as printable lines, and how many checks it made.
fn check_run(run: &Run<'_>) -> (usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let turns = chat(run, dir.path());
    assert_eq!(
        turns.len(),
        run.scenario.turn.len(),
        "{}: one object per turn",
        run.scenario.name
    );
    let mut failed = Vec::new();
    for (check, turn) in run.scenario.turn.iter().zip(&turns) {
        let wrong = check.failures(turn, run.market);
        if !wrong.is_empty() {
            failed.push(format!(
                "FAIL [{} {}] {}\n  you> {}\n  car> {}\n  {}",
                run.market,
                run.state,
                run.scenario.name,
                check.say,
                turn["answer"].as_str().unwrap_or_default(),
                wrong.join("; ")
            ));
        }
    }
    (turns.len(), failed)
}

#[test]
fn the_conversations_pass() {
    let file = scenario_file();
    let runs = runs(&file);
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers = 2;
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<&Run<'_>> = runs.iter().skip(w).step_by(workers).collect();
                scope.spawn(move || mine.into_iter().map(check_run).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker panicked"))
            .collect()
    });
    let checks: usize = results.iter().map(|(n, _)| n).sum();
    let failed: Vec<&String> = results.iter().flat_map(|(_, f)| f).collect();
    for failure in &failed {
        eprintln!("{failure}");
    }
    let rate = (checks - failed.len()) as f64 / checks as f64;
    eprintln!(
        "conversations: {} of {checks} checks pass ({:.1}%) over {} runs; required {:.1}%",
        checks - failed.len(),
        rate * 100.0,
        runs.len(),
        REQUIRED_PASS_RATE * 100.0
    );
    assert!(
        rate >= REQUIRED_PASS_RATE,
        "pass rate {rate:.3} below {REQUIRED_PASS_RATE}"
    );
}
