//! Training is reproducible, and a trained folder round-trips through the loader.

use crate::common::*;
use models::compact::CompactEncoder;
use models::encoder::load_tokenizer;
use models::recipe::{train_compact, Recipe};
use models::train::HeadConfig;
use models::{Classifier, Intent};

fn tiny_recipe(tune_embeddings: bool) -> Recipe {
    Recipe {
        heads: HeadConfig {
            hidden: 16,
            epochs: 40,
            batch_size: 4,
            learning_rate: 1e-2,
            ..Default::default()
        },
        held_out_percent: 20,
        embedding_learning_rate: tune_embeddings.then_some(1e-2),
        ..Default::default()
    }
}

fn bytes_of(t: &candle_core::Tensor) -> Vec<u32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer_path = dir.path().join("tokenizer.json");
    write_tokenizer(&tokenizer_path);
    let corpus = tiny_corpus();
    for tune in [false, true] {
        let run = || {
            let encoder =
                CompactEncoder::new(load_tokenizer(&tokenizer_path, None).unwrap(), random_table(8, 1)).unwrap();
            train_compact(&encoder, &corpus, &tiny_recipe(tune), &mut |_| {}).unwrap()
        };
        let (a, b) = (run(), run());
        assert_eq!(
            bytes_of(&a.heads.intent.w1),
            bytes_of(&b.heads.intent.w1),
            "tune={tune}"
        );
        assert_eq!(
            bytes_of(&a.heads.intent.w2),
            bytes_of(&b.heads.intent.w2),
            "tune={tune}"
        );
        assert_eq!(
            bytes_of(&a.heads.sentiment.w2),
            bytes_of(&b.heads.sentiment.w2),
            "tune={tune}"
        );
        assert_eq!(a.gate, b.gate);
        assert_eq!(a.embeddings.as_ref().map(bytes_of), b.embeddings.as_ref().map(bytes_of));
        // A different seed gives different weights: the seed is really used.
        let mut other = tiny_recipe(tune);
        other.heads.seed += 1;
        let encoder = CompactEncoder::new(load_tokenizer(&tokenizer_path, None).unwrap(), random_table(8, 1)).unwrap();
        let c = train_compact(&encoder, &corpus, &other, &mut |_| {}).unwrap();
        assert_ne!(bytes_of(&a.heads.intent.w1), bytes_of(&c.heads.intent.w1));
    }
}

#[test]
fn a_trained_folder_loads_and_classifies_what_it_learned() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_model_folder_trained_for(dir.path(), 150);
    let mut classifier = Classifier::load_compact(&out).unwrap();
    classifier.set_gate(models::Gate {
        threshold: 0.3,
        emergency_threshold: 0.2,
        ..Default::default()
    });
    assert_eq!(
        classifier.classify("call ambulance crash").unwrap().intent,
        Intent::Emergency
    );
    assert_eq!(
        classifier.classify("navigate to the airport").unwrap().intent,
        Intent::Directions
    );
    assert_eq!(
        classifier.classify("how much gas left").unwrap().intent,
        Intent::FuelLevel
    );
}

#[test]
fn joint_training_moves_only_the_rows_the_corpus_uses_until_propagation_moves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer_path = dir.path().join("tokenizer.json");
    write_tokenizer(&tokenizer_path);
    let table = random_table(8, 5);
    let encoder = CompactEncoder::new(load_tokenizer(&tokenizer_path, None).unwrap(), table.clone()).unwrap();
    let distilled = table.to_vec2::<f32>().unwrap();
    let before = &distilled;
    // Misspelt copies are off: the tiny tokenizer reads a misspelt word as "[UNK]".
    let tuned_with = |propagate_neighbours: usize| {
        let recipe = Recipe {
            misspelt_copies: 0.0,
            propagate_neighbours,
            ..tiny_recipe(true)
        };
        let trained = train_compact(&encoder, &tiny_corpus(), &recipe, &mut |_| {}).unwrap();
        assert_eq!(trained.record.propagate_neighbours, propagate_neighbours);
        let after = trained
            .embeddings
            .expect("the table is tuned")
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        move |word: &str| {
            let i = WORDS.iter().position(|w| *w == word).unwrap();
            before[i]
                .iter()
                .zip(&after[i])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
        }
    };
    let moved = tuned_with(0);
    assert!(moved("ambulance") > 1e-2, "a training word's row must move");
    // "[UNK]" is in no training line.
    assert!(
        moved("[UNK]") < 1e-3,
        "an unused row must stay as distilled (f16 rounding aside)"
    );
    let moved = tuned_with(3);
    assert!(moved("ambulance") > 1e-2);
    assert!(
        moved("[UNK]") > 1e-3,
        "with propagation an unused row follows its trained neighbours"
    );
}

#[test]
fn misspelt_copies_join_the_training_lines_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer_path = dir.path().join("tokenizer.json");
    write_tokenizer(&tokenizer_path);
    let encoder = CompactEncoder::new(load_tokenizer(&tokenizer_path, None).unwrap(), random_table(8, 5)).unwrap();
    let corpus = tiny_corpus();
    let count = |rate: f32| {
        let recipe = Recipe {
            misspelt_copies: rate,
            ..tiny_recipe(true)
        };
        train_compact(&encoder, &corpus, &recipe, &mut |_| {}).unwrap().record
    };
    let (none, all) = (count(0.0), count(1.0));
    assert_eq!(none.misspelt_copies, 0);
    assert_eq!(none.train_examples, all.train_examples, "copies are not corpus lines");
    let long_word_lines = models::recipe::misspelt_copies(
        &models::corpus::split_by_family(&corpus.examples, 20).0,
        1.0,
        tiny_recipe(true).heads.seed,
    )
    .len();
    assert!(long_word_lines > 0);
    assert_eq!(all.misspelt_copies, long_word_lines);
}

#[test]
fn the_shipped_folder_reads_typing_slips_as_the_words_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_model_folder_trained_for(dir.path(), 150);
    let manifest = models::manifest::Manifest::load_checked(&out).unwrap();
    assert!(
        manifest.files.contains_key(models::classifier::SPELLING_WORDS),
        "the speller's words are stored and hash-checked with the model"
    );
    let classifier = Classifier::load_compact(&out).unwrap();
    let clean = classifier.classify("call ambulance crash").unwrap();
    // A doubled and a swapped letter: the same tokens as the clean line, so the
    // very same confidence.
    let slipped = classifier.classify("call ambulancce carsh").unwrap();
    assert_eq!(slipped.intent, clean.intent);
    assert_eq!(slipped.top_confidence, clean.top_confidence);

    // A folder from before the speller (no word list) reads the slip as written.
    let old = dir.path().join("without-speller");
    copy_folder(&out, &old);
    std::fs::remove_file(old.join(models::classifier::SPELLING_WORDS)).unwrap();
    let manifest_path = old.join("manifest.json");
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    value["files"]
        .as_object_mut()
        .unwrap()
        .remove(models::classifier::SPELLING_WORDS);
    std::fs::write(&manifest_path, serde_json::to_vec(&value).unwrap()).unwrap();
    let as_written = Classifier::load_compact(&old)
        .unwrap()
        .classify("call ambulancce carsh")
        .unwrap();
    assert_ne!(as_written.top_confidence, clean.top_confidence);
}
