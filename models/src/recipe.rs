//! The recipes that make the model folders: split the corpus by family, build the
//! features, train the heads, tune the gate on the held-out families, measure, and
//! write the folder atomically. The `train` binary is a thin shell around these.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::classifier::{COMPACT_WEIGHTS, SPELLING_WORDS, TOKENIZER, TRANSFORMER_HEADS};
use crate::compact::CompactEncoder;
use crate::corpus::{split_by_family, Corpus, Example};
use crate::encoder::EncoderKind;
use crate::encoder::SentenceEncoder;
use crate::error::{ModelError, Result};
use crate::gate::Gate;
use crate::heads::Heads;
use crate::manifest::{write_atomically, Distillation, Manifest, TrainingRecord, FORMAT_VERSION};
use crate::metrics::{tune_gate, tune_sentiment_bias, Report, Scored};
use crate::rng::SplitMix64;
use crate::spelling::{corpus_words, Speller};
use crate::train::{
    compact_features, misspelt, propagate_neighbour_moves, train_heads, train_joint, Features, HeadConfig, JointConfig,
};
use crate::Classifier;

#[derive(Debug, Clone)]
pub struct Recipe {
    pub heads: HeadConfig,
    pub held_out_percent: u64,
    /// Token-dropout copies per training line (compact only).
    pub token_dropout_copies: usize,
    pub token_dropout: f32,
    /// The gate's floor for a best-label `emergency`, below the tuned threshold.
    pub emergency_threshold: f32,
    /// When set, the compact table is fine-tuned with the heads at this rate.
    pub embedding_learning_rate: Option<f64>,
    /// Compact, fine-tuned table only: heads trained afresh (other seeds) on the
    /// tuned table, averaged in logit space with the jointly trained pair. One
    /// family-split run swings by a point or more with the seed; the ensemble
    /// evens that out at a few microseconds per utterance.
    pub extra_heads: usize,
    /// Compact, fine-tuned table only: joint runs averaged weight by weight (a
    /// model soup; see [`crate::train::soup`]). 1 is a single run. One run's
    /// family-split accuracy and emergency recall swing by a point or more with
    /// the order of its batches; the soup of five holds them steady at five times
    /// the training time (about a minute on two cores) and no cost at inference.
    pub soup_runs: usize,
    /// Compact, fine-tuned table only: the share of training lines that get one
    /// extra copy with a word misspelt ([`crate::train::misspelt`]). The corpus's
    /// own typos cover only the words of their families; these teach the table the
    /// word pieces a misspelling breaks any corpus word into. 1.0 copies every line.
    pub misspelt_copies: f32,
    /// Compact, fine-tuned table only: each row the training lines never touched
    /// moves with this many nearest trained rows
    /// ([`crate::train::propagate_neighbour_moves`]); 0 leaves it as distilled.
    pub propagate_neighbours: usize,
    /// Compact only: the shipped model corrects typing slips towards the training
    /// lines' words ([`crate::spelling`]) before it classifies. Training reads the
    /// lines as written; the gate is tuned, and the held-out families measured,
    /// through the speller, as the product reads them.
    pub spelling: bool,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            heads: HeadConfig::default(),
            held_out_percent: 15,
            token_dropout_copies: 2,
            token_dropout: 0.25,
            emergency_threshold: 0.25,
            embedding_learning_rate: Some(1e-3),
            extra_heads: 0,
            soup_runs: 5,
            misspelt_copies: 1.0,
            propagate_neighbours: 10,
            spelling: true,
        }
    }
}

/// Heads, gate and held-out figures from one training run.
#[derive(Debug, Clone)]
pub struct Trained {
    pub heads: Heads,
    pub gate: Gate,
    pub held_out: Report,
    pub record: TrainingRecord,
    /// The fine-tuned static table (f16), when the recipe tunes it.
    pub embeddings: Option<Tensor>,
    /// The words the compact model's typo correction knows, most frequent first
    /// (empty: no correction).
    pub spelling_words: Vec<String>,
}

/// The training lines and the held-out families.
fn split(corpus: &Corpus, recipe: &Recipe, progress: &mut dyn FnMut(&str)) -> (Vec<Example>, Vec<Example>) {
    let (train, held_out) = split_by_family(&corpus.examples, recipe.held_out_percent);
    progress(&format!(
        "{} training lines, {} held out by family",
        train.len(),
        held_out.len()
    ));
    (train, held_out)
}

/// Tunes the gate on the held-out families and measures them.
fn finish(
    encoder: &dyn SentenceEncoder,
    heads: Heads,
    held_out: &[Example],
    recipe: &Recipe,
    record: TrainingRecord,
    progress: &mut dyn FnMut(&str),
) -> Result<Trained> {
    let texts: Vec<&str> = held_out.iter().map(|e| e.text.as_str()).collect();
    let probabilities = batch_probabilities(encoder, &heads, &texts)?;
    let gold: Vec<_> = held_out.iter().map(|e| e.intent).collect();
    let gate = if held_out.is_empty() {
        Gate::default()
    } else {
        let gate = tune_gate(&probabilities, &gold, recipe.emergency_threshold);
        let sentiments: Vec<_> = held_out.iter().map(|e| e.sentiment).collect();
        tune_sentiment_bias(&probabilities, &sentiments, gate)
    };
    progress(&format!(
        "gate and sentiment correction tuned on the held-out families: {gate:?}"
    ));
    let scored: Vec<Scored> = held_out
        .iter()
        .zip(&probabilities)
        .map(|(e, (i, s))| Scored {
            gold_intent: e.intent,
            gold_sentiment: e.sentiment,
            prediction: gate.decide(i, s),
            latency_us: f64::NAN,
        })
        .collect();
    Ok(Trained {
        heads,
        gate,
        held_out: Report::compute(&scored),
        record,
        embeddings: None,
        spelling_words: Vec::new(),
    })
}

fn record(recipe: &Recipe, train: &[Example], held_out: usize, started: Instant, tuned_table: bool) -> TrainingRecord {
    TrainingRecord {
        generated_noise: crate::noise::count(train),
        seed: recipe.heads.seed,
        hidden: recipe.heads.hidden,
        epochs: recipe.heads.epochs,
        batch_size: recipe.heads.batch_size,
        learning_rate: recipe.heads.learning_rate,
        weight_decay: recipe.heads.weight_decay,
        dropout: recipe.heads.dropout,
        emergency_weight: recipe.heads.emergency_weight,
        out_of_scope_weight: recipe.heads.out_of_scope_weight,
        token_dropout_copies: if tuned_table && recipe.extra_heads == 0 {
            0
        } else {
            recipe.token_dropout_copies
        },
        token_dropout: recipe.token_dropout,
        embedding_learning_rate: if tuned_table {
            recipe.embedding_learning_rate
        } else {
            None
        },
        extra_heads: if tuned_table { recipe.extra_heads } else { 0 },
        soup_runs: if tuned_table { recipe.soup_runs.max(1) } else { 1 },
        held_out_percent: recipe.held_out_percent,
        train_examples: train.len(),
        misspelt_copies: 0,
        propagate_neighbours: 0,
        spelling_words: 0,
        held_out_examples: held_out,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// One misspelt copy of about `rate` of `lines` (those with a word long enough to
/// misspell), drawn from a stream of their own so the rest of training is unmoved.
pub fn misspelt_copies(lines: &[Example], rate: f32, seed: u64) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed ^ 0x7970);
    lines
        .iter()
        .filter_map(|line| {
            if rng.next_f32() >= rate {
                return None;
            }
            misspelt(&line.text, &mut rng).map(|text| Example { text, ..line.clone() })
        })
        .collect()
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
        .0
}

/// Embeds `texts` in batches (shortest first, to pad little) and runs the heads.
pub fn batch_probabilities(
    encoder: &dyn SentenceEncoder,
    heads: &Heads,
    texts: &[&str],
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let embeddings = embed_all(encoder, texts, &mut |_| {})?;
    let (intent, sentiment) = heads.batch_probabilities(&embeddings)?;
    Ok(intent.into_iter().zip(sentiment).collect())
}

/// Embeds `texts` into `(n, dim)`, batching by length; rows keep the input order.
pub fn embed_all(encoder: &dyn SentenceEncoder, texts: &[&str], progress: &mut dyn FnMut(&str)) -> Result<Tensor> {
    if texts.is_empty() {
        return Ok(Tensor::zeros(
            (0, encoder.dim()),
            DType::F32,
            &candle_core::Device::Cpu,
        )?);
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (texts[i].len(), i));
    let mut rows: Vec<Option<Tensor>> = vec![None; texts.len()];
    for (n, chunk) in order.chunks(64).enumerate() {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let embedded = encoder.embed_batch(&batch)?;
        for (j, &i) in chunk.iter().enumerate() {
            rows[i] = Some(embedded.get(j)?);
        }
        if n % 20 == 0 {
            progress(&format!(
                "embedded {}/{}",
                (n * 64 + chunk.len()).min(texts.len()),
                texts.len()
            ));
        }
    }
    let rows: Vec<Tensor> = rows.into_iter().map(|r| r.expect("every row embedded")).collect();
    Ok(Tensor::stack(&rows, 0)?)
}

/// Trains the compact model. With `recipe.embedding_learning_rate` set, the
/// static table is fine-tuned with the heads and the result carries the new table
/// (f16, as shipped); otherwise the heads learn on the frozen table with
/// token-dropout copies.
#[expect(
    clippy::too_many_lines,
    reason = "the compact recipe in the order it runs (split, speller, misspelt copies, joint runs and their soup, neighbour rows, the f16 check, extra heads, the gate), each step commented"
)]
pub fn train_compact(
    encoder: &CompactEncoder,
    corpus: &Corpus,
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> Result<Trained> {
    let started = Instant::now();
    let (train, held_out) = split(corpus, recipe, progress);
    // The speller knows the training lines' words only: the held-out families
    // stay unseen in every way. It reads what the model is asked, not what it is
    // taught: training keeps the corpus's typos and the misspelt copies as they are,
    // so the rows of a slip's word pieces still learn where their words belong, for
    // the slips the speller cannot undo.
    let (spelling_words, speller) = if recipe.spelling {
        let words = corpus_words(train.iter().map(|e| e.text.as_str()));
        let speller = Speller::new(&words, encoder.tokenizer());
        (words, speller)
    } else {
        (Vec::new(), Speller::default())
    };
    progress(&format!("typo correction knows {} corpus words", spelling_words.len()));
    let with_speller = |table: Tensor| -> Result<CompactEncoder> {
        Ok(CompactEncoder::new(encoder.tokenizer().clone(), table)?.with_speller(speller.clone()))
    };
    let Some(embedding_learning_rate) = recipe.embedding_learning_rate else {
        let mut rng = SplitMix64::new(recipe.heads.seed ^ 0xa11a);
        let features = compact_features(
            encoder,
            &train,
            recipe.token_dropout_copies,
            recipe.token_dropout,
            &mut rng,
        )?;
        let heads = train_heads(&features, &recipe.heads, progress)?;
        let mut record = record(recipe, &train, held_out.len(), started, false);
        record.spelling_words = spelling_words.len();
        let spelled = with_speller(encoder.embeddings().clone())?;
        let mut trained = finish(&spelled, heads, &held_out, recipe, record, progress)?;
        trained.spelling_words = spelling_words;
        return Ok(trained);
    };
    let copies = misspelt_copies(&train, recipe.misspelt_copies, recipe.heads.seed);
    progress(&format!("{} misspelt copies of training lines", copies.len()));
    let (corpus_lines, copy_count) = (train.len(), copies.len());
    let train: Vec<Example> = train.into_iter().chain(copies).collect();
    let token_ids = train
        .iter()
        .map(|e| encoder.token_ids(&e.text))
        .collect::<Result<Vec<_>>>()?;
    let intents: Vec<u32> = train.iter().map(|e| e.intent.index() as u32).collect();
    let sentiments: Vec<u32> = train
        .iter()
        .map(|e| crate::train::sentiment_label(e.sentiment))
        .collect();
    let mut runs = Vec::new();
    for stream in 0..recipe.soup_runs.max(1) as u64 {
        let config = JointConfig {
            heads: recipe.heads.clone(),
            embedding_learning_rate,
            token_dropout: recipe.token_dropout,
            order_stream: stream,
        };
        if recipe.soup_runs > 1 {
            progress(&format!("soup: run {}/{}", stream + 1, recipe.soup_runs));
        }
        runs.push(train_joint(
            encoder.embeddings(),
            &token_ids,
            &intents,
            &sentiments,
            &config,
            progress,
        )?);
    }
    let (table, heads) = if runs.len() == 1 {
        runs.pop().expect("one run")
    } else {
        crate::train::soup(&runs)?
    };
    let table = if recipe.propagate_neighbours > 0 {
        let mut trained = vec![false; table.dims2()?.0];
        for &id in token_ids.iter().flatten() {
            if let Some(row) = trained.get_mut(id as usize) {
                *row = true;
            }
        }
        progress(&format!(
            "moving {} untrained rows with their {} nearest trained rows",
            trained.iter().filter(|t| !**t).count(),
            recipe.propagate_neighbours
        ));
        propagate_neighbour_moves(encoder.embeddings(), &table, &trained, recipe.propagate_neighbours)?
    } else {
        table
    };
    let f32_table = with_speller(table.clone())?;
    let texts: Vec<&str> = held_out.iter().map(|e| e.text.as_str()).collect();
    let f32_argmax: Vec<usize> = batch_probabilities(&f32_table, &heads, &texts)?
        .iter()
        .map(|(p, _)| argmax(p))
        .collect();
    let table = table.to_dtype(DType::F16)?;
    let tuned = with_speller(table.clone())?;
    let f16_argmax: Vec<usize> = batch_probabilities(&tuned, &heads, &texts)?
        .iter()
        .map(|(p, _)| argmax(p))
        .collect();
    let agree = f32_argmax.iter().zip(&f16_argmax).filter(|(a, b)| a == b).count();
    progress(&format!(
        "storing the table as f16: {agree}/{} held-out argmax labels unchanged from f32",
        texts.len()
    ));
    let heads = if recipe.extra_heads == 0 {
        heads
    } else {
        let mut rng = SplitMix64::new(recipe.heads.seed ^ 0xe45e);
        // Trained on the lines as written, like the joint pair.
        let unspelled = CompactEncoder::new(encoder.tokenizer().clone(), table.clone())?;
        let features = compact_features(
            &unspelled,
            &train,
            recipe.token_dropout_copies,
            recipe.token_dropout,
            &mut rng,
        )?;
        let mut members = vec![heads];
        for k in 1..=recipe.extra_heads {
            let config = HeadConfig {
                seed: recipe.heads.seed.wrapping_add(k as u64),
                ..recipe.heads.clone()
            };
            progress(&format!("extra heads {k}/{} on the tuned table", recipe.extra_heads));
            members.push(train_heads(&features, &config, &mut |_| {})?);
        }
        Heads::ensemble(&members)?
    };
    let mut record = record(recipe, &train[..corpus_lines], held_out.len(), started, true);
    record.misspelt_copies = copy_count;
    record.propagate_neighbours = recipe.propagate_neighbours;
    record.spelling_words = spelling_words.len();
    let mut trained = finish(&tuned, heads, &held_out, recipe, record, progress)?;
    trained.embeddings = Some(table);
    trained.spelling_words = spelling_words;
    Ok(trained)
}

/// Trains heads on any encoder's pooled embeddings (the transformer's), no
/// augmentation: re-encoding dropped-token copies would cost a forward pass each.
pub fn train_pooled(
    encoder: &dyn SentenceEncoder,
    corpus: &Corpus,
    recipe: &Recipe,
    progress: &mut dyn FnMut(&str),
) -> Result<Trained> {
    let started = Instant::now();
    let (train, held_out) = split(corpus, recipe, progress);
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let features = Features {
        x: embed_all(encoder, &texts, progress)?,
        intents: train.iter().map(|e| e.intent.index() as u32).collect(),
        sentiments: train
            .iter()
            .map(|e| crate::train::sentiment_label(e.sentiment))
            .collect(),
    };
    let heads = train_heads(&features, &recipe.heads, progress)?;
    let record = record(recipe, &train, held_out.len(), started, false);
    finish(encoder, heads, &held_out, recipe, record, progress)
}

fn metrics_map(trained: &Trained) -> std::collections::BTreeMap<String, f64> {
    trained
        .held_out
        .headline()
        .into_iter()
        .filter(|(k, v)| !k.starts_with("latency") && v.is_finite())
        .map(|(k, v)| (format!("held_out.{k}"), v))
        .collect()
}

/// Writes a compact model folder: `model.safetensors` (embeddings + heads),
/// `tokenizer.json`, `labels.json`, `manifest.json`. Each file goes through a
/// temporary name and a rename; the manifest, which vouches for the rest, is last.
pub fn write_compact(
    dir: &Path,
    embeddings: &Tensor,
    tokenizer_json: &Path,
    trained: &Trained,
    corpus_sha256: &str,
    distillation: Option<Distillation>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = trained.heads.to_map();
    tensors.insert("embeddings".into(), embeddings.clone());
    save_safetensors(&tensors, &dir.join(COMPACT_WEIGHTS))?;
    if tokenizer_json != dir.join(TOKENIZER) {
        let bytes = std::fs::read(tokenizer_json).map_err(|e| ModelError::io(tokenizer_json, e))?;
        write_atomically(&dir.join(TOKENIZER), &bytes)?;
    }
    // Without a word list the manifest lists no `words.txt`, and the loader reads none.
    let mut files = vec![COMPACT_WEIGHTS, TOKENIZER];
    if !trained.spelling_words.is_empty() {
        let mut text = trained.spelling_words.join("\n");
        text.push('\n');
        write_atomically(&dir.join(SPELLING_WORDS), text.as_bytes())?;
        files.push(SPELLING_WORDS);
    }
    Manifest {
        format_version: FORMAT_VERSION,
        encoder: EncoderKind::Compact,
        dim: embeddings.dims()[1],
        gate: trained.gate,
        files: Default::default(),
        encoder_sha256: None,
        corpus_sha256: corpus_sha256.to_string(),
        data_sha256: None,
        public_data: Vec::new(),
        distillation,
        training: trained.record.clone(),
        metrics: metrics_map(trained),
    }
    .write(dir, &files)
}

/// Writes a transformer heads folder: `heads.safetensors`, `labels.json`,
/// `manifest.json` (which pins the pretrained encoder's weights by hash) and, for
/// a fine-tuned encoder, its tuned layers (`overlay`, copied in as
/// [`crate::finetune::OVERLAY_FILE`]).
pub fn write_transformer_heads(
    dir: &Path,
    dim: usize,
    trained: &Trained,
    encoder_sha256: &str,
    corpus_sha256: &str,
    overlay: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    save_safetensors(&trained.heads.to_map(), &dir.join(TRANSFORMER_HEADS))?;
    let mut files = vec![TRANSFORMER_HEADS];
    if let Some(overlay) = overlay {
        let bytes = std::fs::read(overlay).map_err(|e| ModelError::io(overlay, e))?;
        write_atomically(&dir.join(crate::finetune::OVERLAY_FILE), &bytes)?;
        files.push(crate::finetune::OVERLAY_FILE);
    }
    Manifest {
        format_version: FORMAT_VERSION,
        encoder: EncoderKind::Transformer,
        dim,
        gate: trained.gate,
        files: Default::default(),
        encoder_sha256: Some(encoder_sha256.to_string()),
        corpus_sha256: corpus_sha256.to_string(),
        data_sha256: None,
        public_data: Vec::new(),
        distillation: None,
        training: trained.record.clone(),
        metrics: metrics_map(trained),
    }
    .write(dir, &files)
}

fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Classifies every example one at a time (the product's way), timing each.
pub fn evaluate(classifier: &Classifier, examples: &[Example]) -> Result<Vec<Scored>> {
    examples
        .iter()
        .map(|e| {
            let started = Instant::now();
            let prediction = classifier.classify(&e.text)?;
            Ok(Scored {
                gold_intent: e.intent,
                gold_sentiment: e.sentiment,
                prediction,
                latency_us: started.elapsed().as_secs_f64() * 1e6,
            })
        })
        .collect()
}

/// Adds figures measured on a written folder (the dev sets, say) to its manifest,
/// rewriting only `manifest.json`: the weights are neither written nor hashed again.
pub fn record_metrics(dir: &Path, extra: &[(String, f64)], public_data: &[crate::public::SourceUse]) -> Result<()> {
    let mut manifest = Manifest::load_checked(dir)?;
    manifest.metrics.extend(extra.iter().cloned());
    manifest.public_data = public_data.to_vec();
    manifest.data_sha256 = Some(manifest.data_digest());
    write_atomically(
        &dir.join(crate::manifest::MANIFEST_FILE),
        &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
    )
}
