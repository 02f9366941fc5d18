//! `edge-agent kb`: compiling a pack, measuring retrieval through the dialogue,
//! and the fleet's knowledge on this car (apply a bundle by hand, status, rollback).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use daemon::locate;
use edge_agent::cli::{KbApplyArgs, KbBuildArgs, KbEvalArgs, KbStatusArgs};
use edge_agent::config::Config;
use edge_agent::dialogue::{self, retrieval};
use edge_agent::fleet;
use edge_agent::knowledge_base;
use edge_agent::vehicle::VehicleState;

/// `kb build`: compiles the pack into the car's base (or `--out`).
pub fn build(args: &KbBuildArgs) -> anyhow::Result<()> {
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

/// `kb apply`: a bundle from files, checked as the car checks one from the fleet.
pub fn apply(args: &KbApplyArgs) -> anyhow::Result<()> {
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
    let payload = std::fs::read(&args.payload).with_context(|| format!("cannot read {}", args.payload.display()))?;
    let applied = updater
        .apply_local(&notice, &payload)
        .with_context(|| format!("knowledge update for {}", config.uplink.thing_name))?;
    eprintln!(
        "applied knowledge version {}: {} articles in {} ms",
        applied.version, applied.articles, applied.apply_ms
    );
    print_kb_status(&updater, args.status.json)
}

/// `kb status`: the live base, the fleet's high-water mark and the last failure.
pub fn status(args: &KbStatusArgs) -> anyhow::Result<()> {
    let (_, updater) = open_updater(args)?;
    print_kb_status(&updater, args.json)
}

/// `kb rollback`: the previous fleet version (or the shipped pack) next start.
pub fn rollback(args: &KbStatusArgs) -> anyhow::Result<()> {
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

/// `kb eval`: the pack's questions through the whole dialogue, on the demo vehicle.
pub fn eval(args: &KbEvalArgs) -> anyhow::Result<()> {
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

/// The live base and the fleet updater over it, for the `kb` commands.
fn open_updater(args: &KbStatusArgs) -> anyhow::Result<(Config, fleet::Updater)> {
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
