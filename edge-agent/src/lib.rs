//! edge-agent: the in-vehicle assistant daemon. This crate owns the command line,
//! the car's configuration, the live vehicle
//! context, local answers and the dialogue, the car's state store, and the
//! commands built on them (`classify`, `chat`, `kb build`, `validate`).
//!
//! **Architecture Invariant:** edge-agent depends on no AWS SDK, no broker and no
//! demo code; everything it needs runs on the head unit, offline.

pub mod analytics;
pub mod api;
pub mod chat;
pub mod classify;
pub mod cli;
pub mod client;
pub mod config;
pub mod dialogue;
pub mod engine;
pub mod event_log;
pub mod failpoint;
pub mod fleet;
pub mod knowledge_base;
pub mod listener;
pub mod metrics;
pub mod privacy;
pub mod serve;
pub mod store;
pub mod uplink;
pub mod vehicle;
pub mod watchdog;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use daemon::{locate, signals};

use cli::{Cli, Command, KbCommand};
use config::Config;
use store::{Retention, Store};
use vehicle::{FileFollower, Vehicle, VehicleState};

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // What the car keeps (history, the outbox, the compiled pack) is its
    // owner's alone, with or without systemd's UMask=: files 0600, folders 0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    match cli.command {
        Command::Classify(args) => {
            let classifier = locate::load_classifier(&args.model).context("cannot load the intent model")?;
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let summary = classify::run(&classifier, stdin, stdout)?;
            tracing::info!(lines = summary.lines, errors = summary.errors, "classify finished");
            Ok(())
        }
        Command::Chat(args) => {
            let config = Config::load(args.runtime.config.config.as_deref())?;
            let (assistant, vehicle, store) = assemble(&config, &args.runtime, true)?;
            let engine = Arc::new(engine::Engine::new(assistant, vehicle, store));
            let id = args
                .conversation
                .clone()
                .unwrap_or_else(|| format!("chat-{}", jiff::Timestamp::now().as_millisecond()));
            // With an uplink configured, it runs beside the chat on a small runtime.
            let shutdown = tokio_util::sync::CancellationToken::new();
            let uplink = if config.uplink.host.is_empty() {
                None
            } else {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let connector = uplink::RumqttcConnector::new(&config.uplink)?;
                runtime.spawn(uplink::run(
                    connector,
                    engine.clone(),
                    config.uplink.clone(),
                    None,
                    shutdown.clone(),
                ));
                Some(runtime)
            };
            let options = chat::ChatOptions::for_terminal(args.json);
            let input = chat::Input::new(std::io::stdin().lock(), options.prompt);
            let summary = chat::run(&engine, &id, &options, input, std::io::stdout().lock())?;
            shutdown.cancel();
            if let Some(runtime) = uplink {
                runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            }
            tracing::info!(turns = summary.turns, errors = summary.errors, "chat finished");
            Ok(())
        }
        Command::Serve(args) => {
            serve::return_freed_memory_promptly();
            let config = Config::load(args.runtime.config.config.as_deref())?;
            let (assistant, vehicle, store) = assemble(&config, &args.runtime, false)?;
            let engine = Arc::new(engine::Engine::new(assistant, vehicle, store));
            // Turns run on the blocking pool under one mutex; 64 threads is far
            // more than they can use, and stays inside the unit's TasksMax.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .max_blocking_threads(64)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                signals::cancel_on_signals(shutdown.clone())?;
                serve::run(engine, &config, shutdown).await
            })?;
            // Dropping the runtime waits for blocking tasks; the store closes after.
            drop(runtime);
            tracing::info!("stopped");
            Ok(())
        }
        Command::Ask(args) => {
            let socket = match &args.socket {
                Some(s) => s.clone(),
                None => Config::load(args.config.config.as_deref())?.socket_path(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(client::ask(
                &socket,
                &args.text,
                args.conversation.as_deref(),
                args.json,
            ))
        }
        Command::Kb {
            command: KbCommand::Build(args),
        } => {
            let config = Config::load(args.config.config.as_deref())?;
            let classifier = Arc::new(locate::load_classifier(&args.model).context("cannot load the intent model")?);
            let embedder = locate::ModelEmbedder::new(classifier);
            let pack = match &args.pack {
                Some(p) => p.clone(),
                None => locate::find_pack_dir(&config.knowledge.pack)?,
            };
            let out = args.out.clone().unwrap_or_else(|| config.knowledge_db());
            let started = Instant::now();
            let report = knowledge_base::build(&pack, &out, &embedder)?;
            eprintln!(
                "built {} v{}: {} articles from {} files into {} in {:.0} ms",
                report.name,
                report.version,
                report.articles,
                report.files,
                out.display(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            Ok(())
        }
        Command::Kb {
            command: KbCommand::Eval(args),
        } => kb_eval(&args),
        Command::Kb {
            command: KbCommand::Apply(args),
        } => {
            let (config, updater) = open_updater(&args.status)?;
            anyhow::ensure!(
                !config.fleet.channel.is_empty(),
                "fleet.channel is not set: a car applies only bundles of the channel it follows"
            );
            updater.leave_refusals_to_the_caller();
            updater.clean_up();
            let notice: protocol::KnowledgeManifestNotice = serde_json::from_slice(
                &std::fs::read(&args.notice).with_context(|| format!("cannot read {}", args.notice.display()))?,
            )
            .with_context(|| format!("{} is not a knowledge notice", args.notice.display()))?;
            let payload =
                std::fs::read(&args.payload).with_context(|| format!("cannot read {}", args.payload.display()))?;
            let applied = updater
                .apply_local(&notice, &payload)
                .with_context(|| format!("knowledge update for {}", config.uplink.thing_name))?;
            eprintln!(
                "applied knowledge version {}: {} articles in {} ms",
                applied.version, applied.articles, applied.apply_ms
            );
            print_kb_status(&updater, args.status.json)
        }
        Command::Kb {
            command: KbCommand::Status(args),
        } => {
            let (_, updater) = open_updater(&args)?;
            print_kb_status(&updater, args.json)
        }
        Command::Kb {
            command: KbCommand::Rollback(args),
        } => {
            let config = Config::load(args.config.config.as_deref())?;
            let files = fleet::KbFiles::beside(&config.knowledge_db());
            let state = fleet::rollback(&files)?;
            eprintln!(
                "knowledge rolled back to {} (the high-water mark stays at {:?}); restart edge-agent to serve it",
                state
                    .current
                    .map_or("the shipped pack".to_string(), |v| format!("version {v}")),
                state.high_water
            );
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "edge-agent", &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Validate(args) => {
            let config = Config::load(args.config.config.as_deref())?;
            let classifier = locate::load_classifier(&args.model).context("cannot load the intent model")?;
            let pack = locate::find_pack_dir(&config.knowledge.pack)?;
            let (manifest, articles) = knowledge::pack::load(&pack, &locate::intent_labels())?;
            validate_what_serve_needs(&config)?;
            eprintln!(
                "config ok (market {}); model ok ({}; cpu {}); pack ok ({} v{}, {} articles); state in {}",
                config.vehicle.market,
                classifier.dir().display(),
                models::cpu_features(),
                manifest.name,
                manifest.version,
                articles.len(),
                config.state_dir().display()
            );
            Ok(())
        }
    }
}

/// What `serve` would refuse, found before it starts (systemd's ExecStartPre):
/// the uplink's CA, certificate and key, the socket's group, the fleet's keys
/// and its download CA.
/// `kb eval`: the pack's questions through the whole dialogue, on the demo vehicle.
fn kb_eval(args: &cli::KbEvalArgs) -> anyhow::Result<()> {
    use dialogue::retrieval;
    let config = Config::load(args.build.config.config.as_deref())?;
    let classifier = Arc::new(locate::load_classifier(&args.build.model).context("cannot load the intent model")?);
    let pack = match &args.build.pack {
        Some(p) => p.clone(),
        None => locate::find_pack_dir(&config.knowledge.pack)?,
    };
    let scratch = tempfile::tempdir()?;
    let db = scratch.path().join("eval.sqlite");
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
    knowledge_base::build(&pack, &db, embedder.as_ref())?;
    let mut kb = knowledge::KnowledgeBase::open(&db, embedder)?;
    let mut questions = retrieval::load_pairs(&args.pairs.clone().unwrap_or_else(|| pack.join("eval/questions.tsv")))?;
    let uncovered = args
        .uncovered
        .clone()
        .unwrap_or_else(|| pack.join("eval/uncovered.txt"));
    if args.uncovered.is_some() || uncovered.is_file() {
        questions.extend(retrieval::load_uncovered(&uncovered)?);
    }
    let state = VehicleState::demo();
    if args.tune {
        let weights = retrieval::tune_weights(&mut kb, &classifier, &questions, &state.filter())?;
        println!("best fusion weights on the tuning half: {weights:?}");
    }
    let kb = Arc::new(kb);
    let report = if args.calibrate {
        let ((min_score, min_coverage), report) =
            retrieval::calibrate(&config, classifier.clone(), kb.clone(), &state, &questions)?;
        println!("fitted on the tuning halves: knowledge.min_score = {min_score:.2}, knowledge.min_coverage = {min_coverage:.2}");
        report
    } else {
        retrieval::measure(
            &dialogue::Assistant::new(config.clone(), classifier.clone(), kb.clone()),
            &state,
            &questions,
        )?
    };
    print_retrieval_report(&report, args.misses);
    if let Some(dir) = &args.out_of_scope {
        let assistant = dialogue::Assistant::new(config, classifier, kb);
        let texts = retrieval::load_public(dir, &["out_of_scope"])?;
        let t = retrieval::measure_public(&assistant, &state, &texts)?;
        let pct = |n: usize| t.share(n) * 100.0;
        println!(
            "real out of scope: {} utterances; an article spoken {:.2}%, offered to the cloud {:.1}%, sent on {:.1}%",
            t.questions,
            pct(t.wrong),
            pct(t.abstained),
            pct(t.elsewhere)
        );
        // What the car keeps of them, it keeps wrongly: these are the cloud's.
        let texts = retrieval::load_public(dir, &["directions", "distance", "traffic", "find_place"])?;
        let t = retrieval::measure_public(&assistant, &state, &texts)?;
        let pct = |n: usize| t.share(n) * 100.0;
        println!(
            "real routes, traffic and places: {} utterances; sent on {:.1}%, kept in the car {:.2}% (an article {:.2}%)",
            t.questions,
            pct(t.elsewhere),
            pct(t.wrong + t.abstained),
            pct(t.wrong)
        );
    }
    Ok(())
}

fn print_retrieval_report(report: &dialogue::retrieval::Report, misses: bool) {
    let mut table = daemon::table::new(
        &["set", "questions", "top-1", "wrong", "abstained", "elsewhere"],
        &[1, 2, 3, 4, 5],
    );
    let pct = |t: &dialogue::retrieval::Tally, n: usize| format!("{:.1}%", t.share(n) * 100.0);
    let mut row = |name: &str, t: dialogue::retrieval::Tally| {
        if t.questions > 0 {
            table.add_row(vec![
                name.to_string(),
                t.questions.to_string(),
                pct(&t, t.right),
                pct(&t, t.wrong),
                pct(&t, t.abstained),
                pct(&t, t.elsewhere),
            ]);
        }
    };
    row("covered, tuning", report.covered[0]);
    row("covered, held out", report.covered[1]);
    row("covered, all", report.covered_all());
    row("uncovered, tuning", report.uncovered[0]);
    row("uncovered, held out", report.uncovered[1]);
    row("uncovered, all", report.uncovered_all());
    println!("{table}");
    if misses {
        for m in &report.misses {
            let half = if m.tuning { "tuning" } else { "held out" };
            println!(
                "  miss ({half}): {:?}: want {:?}, heard {:?}",
                m.question, m.want, m.heard
            );
        }
    }
}

fn validate_what_serve_needs(config: &Config) -> anyhow::Result<()> {
    if !config.uplink.host.is_empty() {
        uplink::RumqttcConnector::new(&config.uplink)?;
    }
    serve::check_socket_group(&config.api.socket_group)?;
    config.fleet.keys.check().map_err(anyhow::Error::msg)?;
    if !config.fleet.channel.is_empty() {
        anyhow::ensure!(
            !config.fleet.keys.0.is_empty(),
            "fleet.channel is `{}` but fleet.keys is empty: every bundle would be refused",
            config.fleet.channel
        );
        fleet::Downloader::new(&config.fleet.ca_file, std::time::Duration::from_secs(1)).context("fleet.ca_file")?;
    }
    Ok(())
}

/// The live base and the fleet updater over it, for the `kb` commands.
fn open_updater(args: &cli::KbStatusArgs) -> anyhow::Result<(Config, fleet::Updater)> {
    let config = Config::load(args.config.config.as_deref())?;
    let classifier = Arc::new(locate::load_classifier(&args.model).context("cannot load the intent model")?);
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier));
    let kb = knowledge_base::open(&config, embedder)?;
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(kb));
    let updater = fleet::updater_for(&config, live)?;
    Ok((config, updater))
}

fn print_kb_status(updater: &fleet::Updater, json: bool) -> anyhow::Result<()> {
    let state = updater.state();
    let kb = updater.live().load_full();
    let info = kb.info();
    let status = serde_json::json!({
        "pack": info.name,
        "pack_version": info.version,
        "articles": info.articles,
        "bundle_version": info.bundle_version,
        "high_water": state.high_water,
        "applied_at": state.applied_at,
        "previous": state.previous,
        "last_failure": state.last_failure,
        "content_hash": kb.content_hash()?,
    });
    if json {
        println!("{status}");
    } else {
        println!(
            "knowledge: {} v{} ({} articles), bundle {}, high-water {}, previous {}",
            info.name,
            info.version,
            info.articles,
            info.bundle_version
                .map_or("none (shipped pack)".into(), |v| v.to_string()),
            state.high_water.map_or("none".into(), |v| v.to_string()),
            state.previous.map_or("none".into(), |v| v.to_string()),
        );
        if let Some(failure) = &state.last_failure {
            println!(
                "last failure at {}: {}: {}",
                failure.at,
                knowledge::bundle::version_text(failure.version),
                failure.reason
            );
        }
        println!("content hash: {}", status["content_hash"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// The engine `serve` runs, assembled from `config` (the demo in cloud-bridge
/// runs a car in-process with it).
pub fn open_engine(config: &Config, args: &cli::RuntimeArgs) -> anyhow::Result<engine::Engine> {
    let (assistant, vehicle, store) = assemble(config, args, false)?;
    Ok(engine::Engine::new(assistant, vehicle, store))
}

/// Loads the model and the knowledge base, opens the store, and sets up the
/// vehicle (the demo state, followed by the configured signal source).
fn assemble(
    config: &Config,
    args: &cli::RuntimeArgs,
    stdin_is_taken: bool,
) -> anyhow::Result<(dialogue::Assistant, Vehicle, Store)> {
    let classifier = Arc::new(locate::load_classifier(&args.model).context("cannot load the intent model")?);
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
    let kb = Arc::new(knowledge_base::open(config, embedder)?);
    let store = open_store(config)?;
    let mut vehicle = Vehicle::new(VehicleState::demo());
    let signals = args
        .signals
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(&config.vehicle.signals));
    match signals.to_str() {
        Some("demo") => {}
        Some("-") if stdin_is_taken => anyhow::bail!("chat reads turns on stdin, so its signals must come from a file"),
        Some("-") => vehicle.add_source(Box::new(vehicle::ChannelSource::from_reader(
            "stdin",
            std::io::BufReader::new(std::io::stdin()),
        ))),
        _ => vehicle.add_source(Box::new(FileFollower::new(&signals))),
    }
    Ok((dialogue::Assistant::new(config.clone(), classifier, kb), vehicle, store))
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.state_dir().join("edge-agent.sqlite");
    Store::open(
        &path,
        Retention {
            days: config.history.retention_days,
            max_turns_per_conversation: config.history.max_turns_per_conversation,
        },
    )
    .with_context(|| format!("cannot open the state database {}", path.display()))
}
