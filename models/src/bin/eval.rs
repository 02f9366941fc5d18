//! `eval`: scores a model folder on a JSONL set of `{"text", "intent", "sentiment"}`
//! (or on the corpus's held-out families) beside a TF-IDF + logistic-regression
//! baseline trained on the same training split, and counts near-duplicates between
//! the evaluated lines and the training lines.
//!
//! cargo run --release -p models --bin eval -- [--encoder compact|transformer] [--data FILE | --held-out]
//! cargo run --release -p models --bin eval -- --yardstick [--folds DIR]   # real use, one table

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use models::baseline::Baseline;
use models::corpus::{count_near_duplicates, load_jsonl, split_by_family, Corpus};
use models::metrics::{print_comparison, tune_gate, tune_sentiment_bias, RealUse, Report, Scored};
use models::recipe::evaluate;
use models::transformer::default_encoder_dir;
use models::{Classifier, EncoderKind};

#[derive(Parser)]
#[command(about = "Evaluate a model against the TF-IDF baseline")]
struct Args {
    #[arg(long, default_value = "compact")]
    encoder: EncoderKind,
    /// The model folder (default: models/compact or models/transformer).
    #[arg(long)]
    model: Option<PathBuf>,
    /// For --encoder transformer: the pretrained encoder folder.
    #[arg(long)]
    encoder_dir: Option<PathBuf>,
    /// The evaluation set (JSONL).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/dev.jsonl"))]
    data: PathBuf,
    /// Evaluate on the corpus's held-out families instead of --data.
    #[arg(long)]
    held_out: bool,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))]
    corpus: PathBuf,
    /// Override the model's gate threshold (to see the in-scope / out-of-scope trade).
    #[arg(long)]
    gate: Option<f32>,
    /// Also print every misclassified line.
    #[arg(long)]
    errors: bool,
    /// Score, per public source, its rows in the held-out families (never trained
    /// on), beside the baseline trained on the same split; read from this folder.
    #[arg(long, num_args = 0..=1, default_missing_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))]
    public: Option<PathBuf>,
    /// The yardstick of real use in one table: leave-one-source-out folds (with
    /// --folds), the real-phrasing car set, and the held-out families, each beside
    /// the TF-IDF baseline. Reads the public sets from --public (default
    /// ../shared/data).
    #[arg(long)]
    yardstick: bool,
    /// With --yardstick: the folder `train --folds` wrote (one model per source).
    #[arg(long, requires = "yardstick")]
    folds: Option<PathBuf>,
    /// The real-phrasing car set (never trained on).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/real_car.jsonl"))]
    real_car: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let load_started = Instant::now();
    let classifier = load_classifier(&args, &root)?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let corpus = Corpus::load(&args.corpus)?;
    let held_out_percent = classifier.manifest().training.held_out_percent;
    if args.yardstick {
        let dir = args.public.clone().unwrap_or_else(models::public::default_dir);
        return yardstick(
            &classifier,
            &corpus,
            held_out_percent,
            &dir,
            args.folds.as_deref(),
            &args.real_car,
        );
    }
    if let Some(dir) = &args.public {
        return public_table(&classifier, &corpus, dir, held_out_percent);
    }
    let (train, held_out) = split_by_family(&corpus.examples, held_out_percent);
    let (name, data) = if args.held_out {
        ("held-out families".to_string(), held_out)
    } else {
        (args.data.display().to_string(), load_jsonl(&args.data)?)
    };

    let scored = evaluate(&classifier, &data)?;
    let report = Report::compute(&scored);

    // The baseline: same training split, gate tuned the same way on the held-out families.
    let baseline = train_baseline(&corpus, &[], held_out_percent, &classifier);
    let baseline_report = Report::compute(&score_baseline(&baseline, &data));

    println!(
        "model {} ({}), load {load_ms:.1} ms, gate {:?}",
        classifier.dir().display(),
        args.encoder,
        classifier.gate()
    );
    println!(
        "near-duplicates (word-set Jaccard >= 0.8) between {name} and the {} training lines: {}",
        train.len(),
        count_near_duplicates(&train, &data)
    );
    print_comparison(
        &name,
        &[(&args.encoder.to_string(), &report), ("tfidf+lr", &baseline_report)],
    );
    if args.errors {
        print_errors(&data, &scored);
    }
    Ok(())
}

/// The model the arguments name (the shipped one by default), with the gate's
/// threshold overridden when `--gate` is given.
fn load_classifier(args: &Args, root: &Path) -> anyhow::Result<Classifier> {
    let mut classifier = match args.encoder {
        EncoderKind::Compact => Classifier::load_compact(&args.model.clone().unwrap_or(root.join("compact")))?,
        EncoderKind::Transformer => Classifier::load_transformer(
            &args.model.clone().unwrap_or(root.join("transformer")),
            &args.encoder_dir.clone().unwrap_or_else(default_encoder_dir),
        )?,
    };
    if let Some(threshold) = args.gate {
        classifier.set_gate(models::Gate {
            threshold,
            ..classifier.gate()
        });
    }
    Ok(classifier)
}

/// The baseline's predictions, timed like the model's.
fn score_baseline((baseline, gate): &(Baseline, models::Gate), data: &[models::corpus::Example]) -> Vec<Scored> {
    data.iter()
        .map(|e| {
            let started = Instant::now();
            let (i, s) = baseline.probabilities(&e.text);
            let prediction = gate.decide(&i, &s);
            Scored {
                gold_intent: e.intent,
                gold_sentiment: e.sentiment,
                prediction,
                latency_us: started.elapsed().as_secs_f64() * 1e6,
            }
        })
        .collect()
}

fn print_errors(data: &[models::corpus::Example], scored: &[Scored]) {
    println!("-- errors");
    for (e, s) in data.iter().zip(scored) {
        let p = &s.prediction;
        if p.intent != e.intent || e.sentiment.is_some_and(|s| s != p.sentiment) {
            println!(
                "  {:?}: {} -> {} (top {} {:.2}) | {} -> {}",
                e.text,
                e.intent,
                p.intent,
                p.top_intent,
                p.top_confidence,
                e.sentiment.map_or("-".to_string(), |s| s.to_string()),
                p.sentiment
            );
        }
    }
}

/// Per public source: the model and the TF-IDF baseline on the source's held-out
/// rows, the baseline trained on the corpus's training split plus the public rows
/// the model's recipe draws outside the held-out families, its gate tuned as the
/// model's is.
fn public_table(classifier: &Classifier, corpus: &Corpus, dir: &Path, held_out_percent: u64) -> anyhow::Result<()> {
    let drawn = drawn_rows(classifier, corpus, dir, &[])?;
    let baseline = train_baseline(corpus, &drawn, held_out_percent, classifier);
    print_real_use_header();
    for (source, rows) in models::public::held_out_rows(dir, held_out_percent)? {
        print_real_use_row(&source, classifier, &baseline, &rows)?;
    }
    Ok(())
}

/// The yardstick of real use, in one table beside the baseline:
/// - leave one source out: each fold model in `folds/<source>` (trained without
///   that source by `train --folds`) on every labelled row of its source, beside a
///   baseline trained without it;
/// - the real-phrasing car set (`eval/real_car.jsonl`, never trained on);
/// - the corpus's held-out families.
fn yardstick(
    classifier: &Classifier,
    corpus: &Corpus,
    held_out_percent: u64,
    dir: &Path,
    folds: Option<&Path>,
    real_car: &Path,
) -> anyhow::Result<()> {
    print_real_use_header();
    if let Some(folds) = folds {
        let mut all_rows = models::public::held_out_rows(dir, 100)?;
        for source in models::public::source_names(dir)? {
            let fold_dir = folds.join(&source);
            if !fold_dir.exists() {
                println!("{:<14} no fold at {}", format!("loso:{source}"), fold_dir.display());
                continue;
            }
            let fold = Classifier::load_compact(&fold_dir)?;
            let drawn = drawn_rows(&fold, corpus, dir, std::slice::from_ref(&source))?;
            let baseline = train_baseline(corpus, &drawn, held_out_percent, &fold);
            let rows = all_rows.remove(&source).unwrap_or_default();
            print_real_use_row(&format!("loso:{source}"), &fold, &baseline, &rows)?;
        }
    }
    let drawn = drawn_rows(classifier, corpus, dir, &[])?;
    let baseline = train_baseline(corpus, &drawn, held_out_percent, classifier);
    print_real_use_row("real car set", classifier, &baseline, &load_jsonl(real_car)?)?;
    let held = split_by_family(&corpus.examples, held_out_percent).1;
    print_real_use_row("held-out fam.", classifier, &baseline, &held)?;
    Ok(())
}

/// The public rows a model's recipe draws (its seed, the default cap), without
/// the `leave_out` sources.
fn drawn_rows(
    classifier: &Classifier,
    corpus: &Corpus,
    dir: &Path,
    leave_out: &[String],
) -> anyhow::Result<Vec<models::corpus::Example>> {
    let own = models::corpus::normalised_texts(&corpus.examples);
    let caps = models::public::Caps {
        per_label: models::public::DEFAULT_PER_LABEL,
        seed: classifier.manifest().training.seed,
    };
    Ok(models::public::load_leaving_out(dir, caps, &own, leave_out)?.examples)
}

fn print_real_use_header() {
    println!(
        "{:<14} {:>6} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8}",
        "set",
        "rows",
        "in-scope",
        "in-scope",
        "oos rec",
        "wrong-lc",
        "false-em",
        "in-scope",
        "oos rec",
        "wrong-lc",
        "false-em"
    );
    println!("{:<30} | {:^35} | {:^35}", "", "model", "tf-idf+lr");
}

fn print_real_use_row(
    name: &str,
    classifier: &Classifier,
    (baseline, gate): &(Baseline, models::Gate),
    rows: &[models::corpus::Example],
) -> anyhow::Result<()> {
    let pct = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{:.1}%", v * 100.0)
        }
    };
    let model = RealUse::compute(&evaluate(classifier, rows)?);
    let scored: Vec<Scored> = rows
        .iter()
        .map(|e| {
            let (i, s) = baseline.probabilities(&e.text);
            Scored {
                gold_intent: e.intent,
                gold_sentiment: e.sentiment,
                prediction: gate.decide(&i, &s),
                latency_us: 0.0,
            }
        })
        .collect();
    let base = RealUse::compute(&scored);
    println!(
        "{name:<14} {:>6} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8}",
        model.rows,
        model.in_scope_rows,
        pct(model.in_scope_accuracy),
        pct(model.out_of_scope_recall),
        pct(model.wrong_local),
        pct(model.false_emergencies),
        pct(base.in_scope_accuracy),
        pct(base.out_of_scope_recall),
        pct(base.wrong_local),
        pct(base.false_emergencies),
    );
    Ok(())
}

/// The TF-IDF baseline on the corpus's training split plus `public`'s rows outside
/// the held-out families, with its gate tuned on the held-out families.
fn train_baseline(
    corpus: &Corpus,
    public: &[models::corpus::Example],
    held_out_percent: u64,
    classifier: &Classifier,
) -> (Baseline, models::Gate) {
    let (mut training, mut held) = split_by_family(&corpus.examples, held_out_percent);
    let (public_training, public_held) = split_by_family(public, held_out_percent);
    training.extend(public_training);
    held.extend(public_held);
    let baseline = Baseline::train(&training, 20_261_124);
    let probabilities: Vec<_> = held.iter().map(|e| baseline.probabilities(&e.text)).collect();
    let gold: Vec<_> = held.iter().map(|e| e.intent).collect();
    let sentiments: Vec<_> = held.iter().map(|e| e.sentiment).collect();
    let gate = tune_sentiment_bias(
        &probabilities,
        &sentiments,
        tune_gate(&probabilities, &gold, classifier.gate().emergency_threshold),
    );
    (baseline, gate)
}
