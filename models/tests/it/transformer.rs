//! The transformer path, against the real all-MiniLM-L6-v2 folder. It needs the
//! encoder fetched by `models/fetch-encoder.sh`: without it the tests report a skip,
//! and with `EDGE_REQUIRE_EXTERNALS=1` they fail instead.

use std::path::PathBuf;

use crate::common::*;
use models::encoder::SentenceEncoder;
use models::transformer::{default_encoder_dir, TransformerEncoder};
use models::{Classifier, Intent, Route};

fn encoder_dir() -> Option<PathBuf> {
    let dir = default_encoder_dir();
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    let message = format!(
        "transformer encoder not found at {}: run models/fetch-encoder.sh",
        dir.display()
    );
    if externals_required() {
        panic!("EDGE_REQUIRE_EXTERNALS=1 but {message}");
    }
    report_skip(&message);
    None
}

fn cosine(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a * b).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn transformer_embeddings_are_normalised_and_meaningful() {
    let Some(dir) = encoder_dir() else { return };
    let encoder = TransformerEncoder::load(&dir).unwrap();
    assert_eq!(encoder.dim(), 384);
    let fuel = encoder.embed("how much fuel is left in the tank").unwrap();
    let petrol = encoder.embed("how much petrol do i have").unwrap();
    let jazz = encoder.embed("play some jazz music").unwrap();
    assert_eq!(fuel.dims(), &[384]);
    assert!((cosine(&fuel, &fuel) - 1.0).abs() < 1e-4);
    assert!(cosine(&fuel, &petrol) > cosine(&fuel, &jazz) + 0.2);
}

#[test]
fn batched_embeddings_match_single_ones_despite_padding() {
    let Some(dir) = encoder_dir() else { return };
    let encoder = TransformerEncoder::load(&dir).unwrap();
    let texts = [
        "hi",
        "where is the nearest charging station for this car",
        "call an ambulance",
    ];
    let batch = encoder.embed_batch(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = encoder.embed(text).unwrap();
        let diff = (batch.get(i).unwrap() - single)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "row {i} differs by {diff}");
    }
}

#[test]
fn shipped_transformer_heads_classify_through_the_real_encoder() {
    let Some(dir) = encoder_dir() else { return };
    let classifier = Classifier::load_transformer(&models_root().join("transformer"), &dir).unwrap();
    let p = classifier
        .classify("we crashed and my friend is bleeding, call an ambulance")
        .unwrap();
    assert_eq!((p.intent, p.route), (Intent::Emergency, Route::Urgent));
    assert_eq!(
        classifier.classify("navigate to the airport please").unwrap().intent,
        Intent::Directions
    );
    assert_eq!(
        classifier.classify("play some jazz").unwrap().intent,
        Intent::OutOfScope
    );
}

#[test]
fn an_incomplete_encoder_folder_is_refused() {
    let Some(dir) = encoder_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(dir.join(name), tmp.path().join(name)).unwrap();
    }
    let err = TransformerEncoder::load(tmp.path())
        .err()
        .expect("no config.json")
        .to_string();
    assert!(err.contains("config.json is missing"), "{err}");
    std::fs::write(tmp.path().join("config.json"), br#"{"hidden_size": 7}"#).unwrap();
    let err = TransformerEncoder::load(tmp.path())
        .err()
        .expect("bad config")
        .to_string();
    assert!(err.contains("not a BERT config"), "{err}");
}
