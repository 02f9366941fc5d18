//! Retrieval on the shipped pack: top-1 on the 215 question -> article pairs,
//! written apart from the articles. The weights were tuned on one half; the other
//! half must reach 90%.

use std::sync::Arc;

use edge_agent::cli::ModelArgs;
use edge_agent::knowledge_base::{self, retrieval};
use edge_agent::locate;
use edge_agent::vehicle::VehicleState;
use models::EncoderKind;

#[test]
fn held_out_questions_find_their_article_first_at_least_nine_times_in_ten() {
    let classifier = Arc::new(
        locate::load_classifier(&ModelArgs {
            encoder: EncoderKind::Compact,
            model: None,
            encoder_dir: None,
        })
        .unwrap(),
    );
    let pack = locate::find_pack_dir("").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedder = Arc::new(knowledge_base::ModelEmbedder::new(classifier.clone()));
    knowledge_base::build(&pack, &dir.path().join("kb.sqlite"), embedder.as_ref()).unwrap();
    let kb = knowledge::KnowledgeBase::open(&dir.path().join("kb.sqlite"), embedder).unwrap();
    let pairs = retrieval::load_pairs(&pack.join("eval/questions.tsv"), &classifier).unwrap();
    assert!(pairs.len() >= 200, "{} pairs", pairs.len());
    let score = retrieval::score(&kb, &pairs, &VehicleState::demo().filter()).unwrap();
    println!(
        "retrieval top-1: tuning half {:.1}% of {}, held-out half {:.1}% of {}",
        score.tuning * 100.0,
        score.tuning_count,
        score.held_out * 100.0,
        score.held_out_count
    );
    assert!(
        score.held_out >= 0.90,
        "held-out top-1 {:.3}; misses: {:#?}",
        score.held_out,
        score.misses
    );
}
