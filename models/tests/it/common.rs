//! Fixtures shared by the models crate's integration tests: a tiny word-level
//! tokenizer, a tiny random static table and a tiny corpus, so training and loading
//! can be exercised without the shipped model or the pretrained encoder.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use models::corpus::{Corpus, Example};
use models::rng::SplitMix64;
use models::{Intent, Sentiment};

pub const WORDS: &[&str] = &[
    "[UNK]",
    "how",
    "much",
    "gas",
    "fuel",
    "is",
    "left",
    "navigate",
    "to",
    "the",
    "airport",
    "take",
    "me",
    "home",
    "call",
    "ambulance",
    "crash",
    "help",
    "play",
    "jazz",
    "music",
    "ugh",
    "great",
    "thanks",
    "hi",
    "hello",
];

pub fn write_tokenizer(path: &Path) {
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}

pub fn random_table(dim: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let data: Vec<f32> = (0..WORDS.len() * dim).map(|_| rng.next_f32() - 0.5).collect();
    Tensor::from_vec(data, (WORDS.len(), dim), &Device::Cpu).unwrap()
}

pub fn tiny_corpus() -> Corpus {
    let rows: &[(&str, Intent, Sentiment)] = &[
        ("how much gas is left", Intent::FuelLevel, Sentiment::Neutral),
        ("how much fuel is left", Intent::FuelLevel, Sentiment::Neutral),
        ("ugh how much gas", Intent::FuelLevel, Sentiment::Negative),
        ("fuel left", Intent::FuelLevel, Sentiment::Neutral),
        ("navigate to the airport", Intent::Directions, Sentiment::Neutral),
        ("take me home", Intent::Directions, Sentiment::Neutral),
        ("navigate home", Intent::Directions, Sentiment::Neutral),
        ("take me to the airport thanks", Intent::Directions, Sentiment::Positive),
        ("call ambulance", Intent::Emergency, Sentiment::Negative),
        ("crash help", Intent::Emergency, Sentiment::Negative),
        ("help crash call ambulance", Intent::Emergency, Sentiment::Negative),
        ("play jazz", Intent::OutOfScope, Sentiment::Neutral),
        ("play music", Intent::OutOfScope, Sentiment::Neutral),
        ("great music thanks", Intent::OutOfScope, Sentiment::Positive),
        ("hi", Intent::Greeting, Sentiment::Neutral),
        ("hello", Intent::Greeting, Sentiment::Neutral),
        ("hi great", Intent::Greeting, Sentiment::Positive),
    ];
    Corpus {
        examples: rows
            .iter()
            .enumerate()
            .map(|(i, (t, intent, s))| Example {
                text: t.to_string(),
                intent: *intent,
                sentiment: Some(*s),
                family: format!("tiny/{i}"),
            })
            .collect(),
        sha256: "tiny".into(),
    }
}

/// The repository's models folder.
pub fn models_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether tests that need something outside the repository must fail without it.
pub fn externals_required() -> bool {
    std::env::var("EDGE_REQUIRE_EXTERNALS").is_ok_and(|v| v == "1")
}

/// Writes a small but complete compact model folder under `dir` and returns it.
pub fn tiny_model_folder(dir: &Path) -> PathBuf {
    tiny_model_folder_trained_for(dir, 5)
}

/// Like [`tiny_model_folder`], with the heads trained for `epochs`.
pub fn tiny_model_folder_trained_for(dir: &Path, epochs: usize) -> PathBuf {
    use models::recipe::{train_compact, write_compact, Recipe};
    let tokenizer_path = dir.join("source-tokenizer.json");
    write_tokenizer(&tokenizer_path);
    let table = random_table(8, 3);
    let encoder = models::compact::CompactEncoder::new(
        models::encoder::load_tokenizer(&tokenizer_path, None).unwrap(),
        table.clone(),
    )
    .unwrap();
    let recipe = Recipe {
        heads: models::train::HeadConfig {
            hidden: 16,
            epochs,
            batch_size: 4,
            learning_rate: 1e-2,
            ..Default::default()
        },
        held_out_percent: 0,
        embedding_learning_rate: None,
        ..Default::default()
    };
    let trained = train_compact(&encoder, &tiny_corpus(), &recipe, &mut |_| {}).unwrap();
    let out = dir.join("model");
    write_compact(
        &out,
        &table.to_dtype(candle_core::DType::F16).unwrap(),
        &tokenizer_path,
        &trained,
        "tiny",
        None,
    )
    .unwrap();
    out
}

/// Copies a model folder (flat) to a new folder beside it.
pub fn copy_folder(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

/// Reports a skipped test where it is seen: straight to stderr, past the test
/// harness's output capture (which only takes `print!`/`eprint!`).
pub fn report_skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {message}");
}
