//! `eval`: scores a model folder on a JSONL set of `{"text", "intent", "sentiment"}`
//! (or on the corpus's held-out families) beside a TF-IDF + logistic-regression
//! baseline trained on the same training split, and counts near-duplicates between
//! the evaluated lines and the training lines.
//!
//! cargo run --release -p models --bin eval -- [--encoder compact|transformer] [--data FILE | --held-out]

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use models::baseline::Baseline;
use models::corpus::{count_near_duplicates, load_jsonl, split_by_family, Corpus};
use models::metrics::{print_comparison, tune_gate, tune_sentiment_bias, Report, Scored};
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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let load_started = Instant::now();
    let mut classifier = match args.encoder {
        EncoderKind::Compact => Classifier::load_compact(&args.model.clone().unwrap_or(root.join("compact")))?,
        EncoderKind::Transformer => Classifier::load_transformer(
            &args.model.clone().unwrap_or(root.join("transformer")),
            &args.encoder_dir.clone().unwrap_or_else(default_encoder_dir),
        )?,
    };
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    if let Some(threshold) = args.gate {
        classifier.set_gate(models::Gate {
            threshold,
            ..classifier.gate()
        });
    }
    let corpus = Corpus::load(&args.corpus)?;
    let held_out_percent = classifier.manifest().training.held_out_percent;
    let (train, held_out) = split_by_family(&corpus.examples, held_out_percent);
    let (name, data) = if args.held_out {
        ("held-out families".to_string(), held_out)
    } else {
        (args.data.display().to_string(), load_jsonl(&args.data)?)
    };

    let scored = evaluate(&classifier, &data)?;
    let report = Report::compute(&scored);

    // The baseline: same training split, gate tuned the same way on the held-out families.
    let baseline = Baseline::train(&train, 20_261_124);
    let held_probs: Vec<_> = split_by_family(&corpus.examples, held_out_percent)
        .1
        .iter()
        .map(|e| baseline.probabilities(&e.text))
        .collect();
    let held_gold: Vec<_> = split_by_family(&corpus.examples, held_out_percent)
        .1
        .iter()
        .map(|e| e.intent)
        .collect();
    let held_sentiments: Vec<_> = split_by_family(&corpus.examples, held_out_percent)
        .1
        .iter()
        .map(|e| e.sentiment)
        .collect();
    let baseline_gate = tune_sentiment_bias(
        &held_probs,
        &held_sentiments,
        tune_gate(&held_probs, &held_gold, classifier.gate().emergency_threshold),
    );
    let baseline_scored: Vec<Scored> = data
        .iter()
        .map(|e| {
            let started = Instant::now();
            let (i, s) = baseline.probabilities(&e.text);
            let prediction = baseline_gate.decide(&i, &s);
            Scored {
                gold_intent: e.intent,
                gold_sentiment: e.sentiment,
                prediction,
                latency_us: started.elapsed().as_secs_f64() * 1e6,
            }
        })
        .collect();
    let baseline_report = Report::compute(&baseline_scored);

    println!(
        "model {} ({}), load {load_ms:.1} ms, gate {:?}",
        classifier.dir().display(),
        args.encoder,
        classifier.gate()
    );
    println!(
        "near-duplicates (normalised text) between {name} and the {} training lines: {}",
        train.len(),
        count_near_duplicates(&train, &data)
    );
    print_comparison(
        &name,
        &[(&args.encoder.to_string(), &report), ("tfidf+lr", &baseline_report)],
    );
    if args.errors {
        println!("-- errors");
        for (e, s) in data.iter().zip(&scored) {
            let p = &s.prediction;
            if p.intent != e.intent || p.sentiment != e.sentiment {
                println!(
                    "  {:?}: {} -> {} (top {} {:.2}) | {} -> {}",
                    e.text, e.intent, p.intent, p.top_intent, p.top_confidence, e.sentiment, p.sentiment
                );
            }
        }
    }
    Ok(())
}
