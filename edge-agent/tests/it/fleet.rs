//! Fleet knowledge updates on the car, with the shipped model and pack: every
//! refusal the issue lists (nothing changes, the reason is recorded), a download
//! cut mid-way that resumes with a Range request from a loopback HTTPS server,
//! and a kill -9 at every failure point of the apply.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::locate;
use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::fleet::{self, Outcome, UpdateError};
use edge_agent::knowledge_base;
use knowledge::bundle::{Manifest, Payload, PayloadKind, SigningKey, Targets, TrustedKeys};
use knowledge::Article;

use testkit::blob_server::BlobServer;
use testkit::bundle::notice;

/// A car following `stable`, a Voyager in the US, trusting `key` (and a revoked one).
struct Car {
    dir: tempfile::TempDir,
    config: Config,
}

fn car(key: &SigningKey, revoked: &SigningKey) -> Car {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded();
    config.state.dir = dir.path().join("state").display().to_string();
    config.uplink.thing_name = "car-1".into();
    config.fleet.channel = "stable".into();
    config.fleet.keys = TrustedKeys::default().with_key(key, false).with_key(revoked, true);
    Car { dir, config }
}

impl Car {
    fn updater(&self, ca_file: Option<&Path>) -> Arc<fleet::Updater> {
        let mut config = self.config.clone();
        if let Some(ca) = ca_file {
            config.fleet.ca_file = ca.display().to_string();
            config.fleet.idle_timeout_seconds = 5;
        }
        let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
        let embedder = Arc::new(locate::ModelEmbedder::new(classifier));
        let kb = knowledge_base::open(&config, embedder).unwrap();
        Arc::new(fleet::updater_for(&config, Arc::new(arc_swap::ArcSwap::from_pointee(kb))).unwrap())
    }

    /// The config as a file, for the binary.
    fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        let mut keys = String::new();
        for (id, key) in &self.config.fleet.keys.0 {
            keys.push_str(&format!(
                "[fleet.keys.{id}]\npublic_key = \"{}\"\nrevoked = {}\n",
                key.public_key, key.revoked
            ));
        }
        std::fs::write(
            &path,
            format!(
                "[state]\ndir = \"{}\"\n[uplink]\nthing_name = \"car-1\"\n[fleet]\nchannel = \"stable\"\n{keys}",
                self.config.state.dir
            ),
        )
        .unwrap();
        path
    }
}

/// The next version of the shipped content: one answer changed, one article added.
fn next_content(current: &[Article]) -> Vec<Article> {
    let mut articles = current.to_vec();
    articles[0].summary = format!("{} (Revised by fleet ops.)", articles[0].summary);
    let mut added = articles[1].clone();
    added.id = "fleet-added-article".into();
    added.title = "Winter tyre chains".into();
    added.summary = "Snow chains fit the front wheels only, and the speed limit with them is 50 km/h.".into();
    articles.push(added);
    articles
}

struct Bundle {
    manifest: Manifest,
    payload: Vec<u8>,
}

fn bundle(version: u64, payload: &Payload, url: &str) -> Bundle {
    let bytes = payload.to_bytes();
    let targets = Targets {
        models: vec!["Voyager".into()],
        markets: vec![],
    };
    Bundle {
        manifest: testkit::bundle::manifest(version, payload, &bytes, url, targets),
        payload: bytes,
    }
}

fn keys() -> (SigningKey, SigningKey, SigningKey) {
    (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    )
}

/// A car's updater, its shipped knowledge (the articles and their hash), and
/// version 2: the shipped articles plus one, as a payload and a signed bundle.
struct Release2 {
    updater: Arc<fleet::Updater>,
    shipped: Vec<Article>,
    before: String,
    payload: Payload,
    good: Bundle,
}

fn release_2(car: &Car) -> Release2 {
    let updater = car.updater(None);
    let live = updater.live().load_full();
    let shipped = live.articles().unwrap();
    let before = live.content_hash().unwrap();
    let payload = Payload::full(live.meta(), next_content(&shipped));
    let good = bundle(2, &payload, "https://bundles.example/stable/2");
    Release2 {
        updater,
        shipped,
        before,
        payload,
        good,
    }
}

/// `notice` with `bytes` is refused, for a reason that says `expect`; the failure
/// is recorded and reported, and the knowledge is still `before`.
fn assert_refused_and_unchanged(
    updater: &fleet::Updater,
    before: &str,
    notice: &protocol::KnowledgeManifestNotice,
    bytes: &[u8],
    expect: &str,
) {
    let error = updater.apply_local(notice, bytes).unwrap_err();
    assert!(matches!(error, UpdateError::Refused(_)), "{error}");
    assert!(error.to_string().contains(expect), "{expect:?} not in {error}");
    let state = updater.state();
    let failure = state.last_failure.expect("the failure is recorded");
    assert_eq!(failure.reason, error.to_string());
    assert_eq!(
        updater.reports().borrow().failure.as_ref().map(|f| &f.reason),
        Some(&failure.reason)
    );
    let kb = updater.live().load_full();
    assert_eq!(kb.content_hash().unwrap(), before, "{expect}: the knowledge changed");
    assert_eq!((state.current, state.high_water), (None, None), "{expect}");
}

#[test]
fn every_bad_bundle_is_refused_with_its_reason_and_nothing_changes() {
    let (key, revoked, stranger) = keys();
    let car = car(&key, &revoked);
    let Release2 {
        updater, before, good, ..
    } = release_2(&car);

    let refused = |notice: protocol::KnowledgeManifestNotice, bytes: &[u8], expect: &str| {
        assert_refused_and_unchanged(&updater, &before, &notice, bytes, expect);
    };

    // A tampered payload.
    let mut tampered = good.payload.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x20;
    refused(notice(&key, &good.manifest), &tampered, "altered or corrupted");
    // An edited manifest: version, targets, channel (the signature is over the bytes).
    for (from, to) in [
        ("\"version\":2", "\"version\":9"),
        ("\"models\":[\"Voyager\"]", "\"models\":[]"),
        ("\"channel\":\"stable\"", "\"channel\":\"beta\""),
    ] {
        let mut edited = notice(&key, &good.manifest);
        assert!(edited.manifest.contains(from), "{from} in {}", edited.manifest);
        edited.manifest = edited.manifest.replace(from, to);
        refused(edited, &good.payload, "signature does not verify");
    }
    // A valid bundle for another channel.
    let other_channel = Manifest {
        channel: "beta".into(),
        ..good.manifest.clone()
    };
    refused(notice(&key, &other_channel), &good.payload, "for channel `beta`");
    // A revoked key and an unknown one.
    refused(notice(&revoked, &good.manifest), &good.payload, "revoked key");
    refused(notice(&stranger, &good.manifest), &good.payload, "unknown key");
    // Another vehicle model.
    let other_model = Manifest {
        targets: Targets {
            models: vec!["Osprey".into()],
            markets: vec![],
        },
        ..good.manifest.clone()
    };
    refused(notice(&key, &other_model), &good.payload, "not for this car");
    // An expired manifest.
    let expired = Manifest {
        expires_at: jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1),
        ..good.manifest.clone()
    };
    refused(notice(&key, &expired), &good.payload, "expired");
}

#[test]
fn a_good_bundle_applies_an_older_one_is_a_replay_and_a_rollback_keeps_the_high_water_mark() {
    let (key, revoked, _) = keys();
    let car = car(&key, &revoked);
    let Release2 {
        updater,
        shipped,
        before,
        payload,
        good,
    } = release_2(&car);

    // It applies; then the same content as an older version is a replay.
    let applied = updater
        .apply_local(&notice(&key, &good.manifest), &good.payload)
        .unwrap();
    assert_eq!(applied.version, 2);
    let after = updater.live().load_full();
    assert_eq!(after.info().bundle_version, Some(2));
    assert_eq!(after.info().articles, shipped.len() + 1);
    assert!(after.article("fleet-added-article").unwrap().is_some());
    assert_eq!(after.content_hash().unwrap(), applied.content_hash);
    let state = updater.state();
    assert_eq!(
        (state.current, state.high_water, state.last_failure.clone()),
        (Some(2), Some(2), None)
    );
    let older = bundle(1, &payload, "https://bundles.example/stable/1");
    let error = updater
        .apply_local(&notice(&key, &older.manifest), &older.payload)
        .unwrap_err();
    assert!(error.to_string().contains("not newer than 2"), "{error}");
    assert_eq!(updater.live().load_full().content_hash().unwrap(), applied.content_hash);

    // A local rollback restores the previous base; the high-water mark stays, so
    // the old version is still refused.
    let files = fleet::KbFiles::beside(&car.config.knowledge_db());
    let state = fleet::rollback(&files).unwrap();
    assert_eq!((state.current, state.high_water), (None, Some(2)));
    let reopened = car.updater(None);
    assert_eq!(reopened.live().load_full().content_hash().unwrap(), before);
    let error = reopened
        .apply_local(&notice(&key, &older.manifest), &older.payload)
        .unwrap_err();
    assert!(error.to_string().contains("not newer than 2"), "{error}");
    assert!(matches!(fleet::rollback(&files), Err(UpdateError::NoPrevious)));
}

#[test]
fn a_download_cut_midway_resumes_with_a_range_request_and_then_verifies() {
    let runtime = testkit::threaded_runtime();
    runtime.block_on(async {
        let (key, revoked, _) = keys();
        let car = car(&key, &revoked);
        let server = BlobServer::start().await;
        let ca = server.write_ca(car.dir.path());
        let updater = car.updater(Some(&ca));
        let live = updater.live().load_full();
        let payload = Payload::full(live.meta(), next_content(&live.articles().unwrap()));
        let full = bundle(2, &payload, &server.url("/stable/2?X-Amz-Signature=secret"));
        server.put("/stable/2", full.payload.clone());
        let size = full.payload.len();
        let cut = size / 3;
        server.cut_next_after(cut);
        let notice = notice(&key, &full.manifest);

        let first = updater.handle(&notice).await.unwrap_err();
        assert!(first.is_transient(), "{first}");
        assert_eq!(updater.state().current, None, "nothing applied from half a payload");
        assert!(
            updater.state().last_failure.is_none(),
            "a cut transfer is not a verdict"
        );

        let second = updater.handle(&notice).await.unwrap();
        let Outcome::Applied(applied) = second else {
            panic!("not applied: {second:?}")
        };
        let fetched = applied.fetched.unwrap();
        assert_eq!(fetched.resumed_from, cut as u64);
        assert_eq!(fetched.received, (size - cut) as u64);
        assert!(fetched.received < size as u64);
        let served = server.served();
        assert_eq!(served.len(), 2, "{served:?}");
        assert_eq!((served[0].range.as_deref(), served[0].sent), (None, cut));
        assert_eq!(served[1].range, Some(format!("bytes={cut}-")));
        assert_eq!((served[1].status, served[1].sent), (206, size - cut));
        assert_eq!(updater.live().load_full().info().bundle_version, Some(2));
        assert_eq!(updater.state().current, Some(2));
        eprintln!(
            "resumed: {} of {size} bytes fetched again after a cut at {cut}; applied in {} ms",
            fetched.received, applied.apply_ms
        );

        // A retained notice seen again changes nothing.
        assert_eq!(updater.handle(&notice).await.unwrap(), Outcome::AlreadyApplied(2));
        // A car outside the rollout's stage waits; a paused rollout stops everyone.
        let mut staged = notice.clone();
        staged.rollout = protocol::Rollout {
            percent: 0,
            cars: vec!["car-2".into()],
            paused: false,
        };
        let v3 = bundle(3, &payload, &server.url("/stable/3"));
        let mut staged_v3 = self::notice(&key, &v3.manifest);
        staged_v3.rollout = staged.rollout.clone();
        assert_eq!(updater.handle(&staged_v3).await.unwrap(), Outcome::NotInRollout(3));
        assert_eq!(server.served().len(), 2, "nothing downloaded outside the rollout");
    });
}

/// Runs `edge-agent` with the car's config.
fn edge(car: &Car, args: &[&str]) -> Command {
    let mut command = Command::new(testkit::edge_binary());
    command
        .args(args)
        .env("EDGE_AGENT_CONFIG", car.config_file())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

#[test]
fn a_base_lost_after_a_v5_apply_is_v5_again_and_without_its_copy_the_gap_is_reported_and_v5_taken_again() {
    use std::os::unix::fs::FileExt;
    let (key, revoked, _) = keys();
    let car = car(&key, &revoked);
    let updater = car.updater(None);
    let live = updater.live().load_full();
    let payload = Payload::full(live.meta(), next_content(&live.articles().unwrap()));
    let shipped_hash = live.content_hash().unwrap();
    drop((updater, live));
    let b = bundle(5, &payload, "https://bundles.example/stable/5");
    let notice_file = car.dir.path().join("notice.json");
    std::fs::write(&notice_file, serde_json::to_vec(&notice(&key, &b.manifest)).unwrap()).unwrap();
    let payload_file = car.dir.path().join("payload.json");
    std::fs::write(&payload_file, &b.payload).unwrap();
    let apply = || {
        let args = [
            "kb",
            "apply",
            notice_file.to_str().unwrap(),
            "--payload",
            payload_file.to_str().unwrap(),
        ];
        edge(&car, &args).output().unwrap()
    };
    let out = apply();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v5 = status_of(&car);
    assert_eq!(v5["bundle_version"], 5);
    let base = PathBuf::from(&car.config.state.dir).join("knowledge.sqlite");
    let damage = |at: u64, len: usize| {
        let file = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
        file.write_all_at(&vec![0x5a; len], at).unwrap();
    };

    // 1. A page inside the base overwritten: v5 again, from the kept copy.
    damage(2 * 4096, 4096);
    let out = edge(&car, &["kb", "status", "--json"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("restored from the kept copy"), "{log}");
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["bundle_version"], 5, "{restored}");
    assert_eq!(restored["high_water"], 5);
    assert_eq!(
        restored["content_hash"], v5["content_hash"],
        "the same content as applied"
    );

    // 2. The header overwritten and no copy kept: the shipped pack answers, the
    // gap is reported, and the retained notice of v5 is taken again (no v6).
    std::fs::remove_file(PathBuf::from(&car.config.state.dir).join("knowledge.applied.json")).unwrap();
    damage(0, 100);
    let gap = status_of(&car);
    assert_eq!(gap["bundle_version"], serde_json::Value::Null, "{gap}");
    assert_eq!(gap["content_hash"], shipped_hash.as_str());
    assert_eq!(gap["high_water"], 5);
    assert_eq!(gap["last_failure"]["version"], 5, "{gap}");
    assert!(
        gap["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be restored"),
        "{gap}"
    );
    let out = apply();
    assert!(
        out.status.success(),
        "v5 taken again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = status_of(&car);
    assert_eq!(
        (again["bundle_version"].clone(), again["content_hash"].clone()),
        (5.into(), v5["content_hash"].clone())
    );
    assert_eq!(again["last_failure"], serde_json::Value::Null);
    // And once whole again, v5 is not newer than v5.
    assert!(!apply().status.success());
}

fn status_of(car: &Car) -> serde_json::Value {
    let out = edge(car, &["kb", "status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Waits for `child` to say it reached `point`, then kills it (SIGKILL); when.
fn kill_at_failpoint(mut child: std::process::Child, point: &str) -> Instant {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("failpoint") {
                let _ = tx.send(line);
            }
        }
    });
    let reached = rx.recv_timeout(Duration::from_secs(60));
    let killed_at = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        reached.as_deref().ok(),
        Some(format!("failpoint {point} reached").as_str()),
        "the apply never reached {point} (is the binary built with test-util?)"
    );
    killed_at
}

/// Whether the knowledge `after` a kill at `point` is the `old` or the `new`
/// (`kb status` of each); anything else fails.
fn old_or_new(
    after: &serde_json::Value,
    old: &serde_json::Value,
    new: &serde_json::Value,
    point: &str,
) -> &'static str {
    let outcome = if after["content_hash"] == old["content_hash"] {
        assert_eq!(after["bundle_version"], serde_json::Value::Null, "{point}");
        "old"
    } else {
        assert_eq!(
            after["content_hash"], new["content_hash"],
            "{point}: a base that is neither the old nor the new"
        );
        assert_eq!(after["bundle_version"], 2, "{point}");
        // The mark follows the base even when the crash came before the state's write.
        assert_eq!(after["high_water"], 2, "{point}");
        "new"
    };
    let expected = if outcome == "old" { old } else { new };
    assert_eq!(after["articles"], expected["articles"], "{point}");
    outcome
}

#[test]
fn a_kill_at_every_step_of_the_apply_leaves_the_old_or_the_new_knowledge() {
    let (key, revoked, _) = keys();
    let car = car(&key, &revoked);
    // The shipped base, built once, is the starting point of every run.
    let old = status_of(&car);
    let state = PathBuf::from(&car.config.state.dir);
    let pristine = car.dir.path().join("pristine");
    copy_dir(&state, &pristine);

    let updater = car.updater(None);
    let live = updater.live().load_full();
    let payload = Payload::full(live.meta(), next_content(&live.articles().unwrap()));
    drop((updater, live));
    let b = bundle(2, &payload, "https://bundles.example/stable/2");
    let notice_file = car.dir.path().join("notice.json");
    std::fs::write(&notice_file, serde_json::to_vec(&notice(&key, &b.manifest)).unwrap()).unwrap();
    let payload_file = car.dir.path().join("payload.json");
    std::fs::write(&payload_file, &b.payload).unwrap();
    let apply = |failpoint: Option<&str>| {
        let mut command = edge(
            &car,
            &[
                "kb",
                "apply",
                notice_file.to_str().unwrap(),
                "--payload",
                payload_file.to_str().unwrap(),
            ],
        );
        if let Some(point) = failpoint {
            command.env("EDGE_AGENT_FAILPOINT", point);
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command.spawn().unwrap()
    };

    // Without a failure: the new hash.
    let out = apply(None).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new = status_of(&car);
    let new_hash = new["content_hash"].as_str().unwrap().to_string();
    assert_ne!(old["content_hash"], new["content_hash"]);

    let mut outcomes = Vec::new();
    for point in fleet::FAILPOINTS {
        std::fs::remove_dir_all(&state).unwrap();
        copy_dir(&pristine, &state);
        let killed_at = kill_at_failpoint(apply(Some(point)), point);
        let outcome = old_or_new(&status_of(&car), &old, &new, point);
        // The next apply finishes the job (or finds it done), and leaves no staging file.
        let again = apply(None).wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&again.stderr);
        match outcome {
            "old" => assert!(again.status.success(), "{point}: {stderr}"),
            _ => {
                // The refusal's reason, said once, in words.
                assert_eq!(stderr.matches("not newer than 2").count(), 1, "{point}: {stderr}");
                assert!(!stderr.contains("Some("), "{point}: {stderr}");
            }
        }
        assert_eq!(
            status_of(&car)["content_hash"].as_str(),
            Some(new_hash.as_str()),
            "{point}"
        );
        assert!(
            !state.join("knowledge.staging.sqlite").exists(),
            "{point}: staging left behind"
        );
        eprintln!(
            "killed at {point}: {outcome} knowledge ({} ms after the point)",
            killed_at.elapsed().as_millis()
        );
        outcomes.push(outcome);
    }
    assert!(outcomes.contains(&"old") && outcomes.contains(&"new"), "{outcomes:?}");
    assert_eq!(outcomes, ["old", "old", "old", "new", "new"]);
}

#[test]
fn payload_kinds_are_checked_against_the_manifest() {
    let (key, revoked, _) = keys();
    let car = car(&key, &revoked);
    let updater = car.updater(None);
    let live = updater.live().load_full();
    let shipped = live.articles().unwrap();
    let delta = Payload::delta(live.meta(), 1, &shipped, &next_content(&shipped));
    // A delta on version 1, but this car answers from the shipped pack.
    let b = bundle(2, &delta, "https://bundles.example/stable/2");
    assert_eq!(b.manifest.payload, PayloadKind::Delta { base_version: 1 });
    let error = updater.apply_local(&notice(&key, &b.manifest), &b.payload).unwrap_err();
    assert!(error.to_string().contains("applies to version 1"), "{error}");
}
