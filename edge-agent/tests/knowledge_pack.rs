//! The shipped knowledge pack: what it covers, and retrieval on it (top-1 on the
//! 215 question -> article pairs written apart from the articles; the weights were
//! tuned on one half, the other half must reach 90%).

use std::sync::Arc;

use edge_agent::cli::ModelArgs;
use edge_agent::knowledge_base::{self, retrieval};
use edge_agent::locate;
use edge_agent::vehicle::VehicleState;

#[test]
fn held_out_questions_find_their_article_first_at_least_nine_times_in_ten() {
    let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
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

#[test]
fn the_shipped_pack_covers_every_local_intent_and_the_required_topics() {
    let pack = locate::find_pack_dir("").unwrap();
    let (manifest, articles) = knowledge::pack::load(&pack, &knowledge_base::intent_labels()).unwrap();
    assert_eq!(manifest.name, "kestrel-voyager-2025");
    assert!(articles.len() >= 120, "{} articles", articles.len());
    for intent in models::Intent::ALL.iter().filter(|i| i.route() == models::Route::Local) {
        assert!(
            articles.iter().any(|a| a.intents.iter().any(|x| x == intent.as_str())),
            "no article for the local intent {}",
            intent.as_str()
        );
    }
    let count = |prefix: &str| articles.iter().filter(|a| a.id.starts_with(prefix)).count();
    assert!(count("light-") >= 30, "{} warning lights", count("light-"));
    assert!(count("howto-") >= 30, "{} feature how-tos", count("howto-"));
    for id in [
        "service-schedule",
        "oil-type-capacity",
        "oil-check-level",
        "tire-pressure-recommended",
        "tire-change-flat",
        "fuel-type",
        "charging-home",
        "jump-start-how",
    ] {
        assert!(articles.iter().any(|a| a.id == id), "missing {id}");
    }
    // Findable by colour and shape: every light names its colour in its keywords.
    for light in articles.iter().filter(|a| a.id.starts_with("light-")) {
        let words = light.keywords.join(" ").to_lowercase();
        assert!(
            ["red", "yellow", "amber", "green", "blue", "white"]
                .iter()
                .any(|c| words.contains(c)),
            "{} has no colour keyword",
            light.id
        );
    }
}
