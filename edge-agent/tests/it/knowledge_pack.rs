//! The shipped knowledge pack: what it covers, and retrieval as the driver hears
//! it, through the whole dialogue: the 215 question -> article pairs and the 130
//! car questions it does not cover, all written apart from the articles (the
//! weights and the "not in the manual" score were fitted on the tuning halves).

use std::path::Path;
use std::sync::Arc;

use daemon::locate;
use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::dialogue::{retrieval, Assistant};
use edge_agent::knowledge_base;
use edge_agent::vehicle::VehicleState;

/// Ratchets on the held-out halves, at the figures measured when they were set
/// (top-1 72.5%, wrong 9.2%; abstained 82.5%, wrong 14.3%). Issue 18 asks for
/// top-1 >= 95%, wrong <= 2% and abstention >= 90% with no wrong article: not
/// met. Most misses are the classifier's (a covered question read as out of
/// scope, even after the manual's overrule, or as another intent), and the
/// compact encoder's cosines part covered from uncovered questions only loosely.
const MIN_TOP_1: f64 = 0.72;
const MAX_WRONG: f64 = 0.095;
const MIN_ABSTAINED: f64 = 0.82;
const MAX_UNCOVERED_WRONG: f64 = 0.145;

fn questions(pack: &Path) -> Vec<retrieval::Question> {
    let mut questions = retrieval::load_pairs(&pack.join("eval/questions.tsv")).unwrap();
    questions.extend(retrieval::load_uncovered(&pack.join("eval/uncovered.txt")).unwrap());
    questions
}

/// The shipped model and pack, compiled into a scratch base, under `config`.
fn shipped_assistant(config: Config) -> Assistant {
    let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
    let pack = locate::find_pack_dir("").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
    knowledge_base::build(&pack, &dir.path().join("kb.sqlite"), embedder.as_ref()).unwrap();
    // Opened, the base lives in memory; the file may go with the folder.
    let kb = Arc::new(knowledge::KnowledgeBase::open(&dir.path().join("kb.sqlite"), embedder).unwrap());
    Assistant::new(config, classifier, kb)
}

#[test]
fn the_manual_is_found_as_the_driver_hears_it_and_what_it_lacks_is_said_honestly() {
    let questions = questions(&locate::find_pack_dir("").unwrap());
    let assistant = shipped_assistant(Config::embedded());
    let report = retrieval::measure(&assistant, &VehicleState::demo(), &questions).unwrap();
    let (covered, uncovered) = (report.covered[1], report.uncovered[1]);
    assert!(covered.questions >= 100 && uncovered.questions >= 60, "{report:?}");
    let pct = |t: &retrieval::Tally, n: usize| t.share(n) * 100.0;
    println!(
        "held out: top-1 {:.1}%, wrong {:.1}% of {} covered; abstained {:.1}%, wrong {:.1}% of {} uncovered",
        pct(&covered, covered.right),
        pct(&covered, covered.wrong),
        covered.questions,
        pct(&uncovered, uncovered.abstained),
        pct(&uncovered, uncovered.wrong),
        uncovered.questions
    );
    let misses: Vec<_> = report.misses.iter().filter(|m| !m.tuning).collect();
    assert!(covered.share(covered.right) >= MIN_TOP_1, "top-1; misses: {misses:#?}");
    assert!(
        covered.share(covered.wrong) <= MAX_WRONG,
        "wrong articles; misses: {misses:#?}"
    );
    assert!(
        uncovered.share(uncovered.abstained) >= MIN_ABSTAINED,
        "abstention; misses: {misses:#?}"
    );
    assert!(
        uncovered.share(uncovered.wrong) <= MAX_UNCOVERED_WRONG,
        "wrong on uncovered; misses: {misses:#?}"
    );
}

/// The gate refuses some plain car questions, and the model reads some under an
/// intent whose articles lack the answer; one article that clearly answers
/// overrules either, and nothing else does. The lines are written for this test
/// (none is in the retrieval sets; the last is a scenario turn the model reads
/// as an oil question).
#[test]
fn the_manual_overrules_the_model_only_when_one_article_clearly_answers() {
    let misread_but_answered = [
        ("warm the steering wheel up", "howto-heated-steering-wheel"),
        ("switch on the seat heating", "howto-heated-seats"),
        ("where is the isofix", "howto-isofix"),
        ("show me the surround view camera", "howto-reversing-camera"),
        ("where do i top up the washer fluid", "light-washer-fluid"),
    ];
    let not_the_cars = [
        // A confident how-to, not the bonnet-open light that shares its words.
        "how do i open the bonnet",
        "where can i pay with my card",
        "turn the kitchen lights on",
        "how do i update the apps on my phone",
        "what's 12 times 7",
    ];
    let store = retrieval::scratch_store().unwrap();
    let state = VehicleState::demo();
    let mut without = Config::embedded();
    without.knowledge.overrule_model = false;
    let (on, off) = (shipped_assistant(Config::embedded()), shipped_assistant(without));
    let heard = |assistant: &Assistant, text: &str| retrieval::hear(assistant, &store, &state, text).unwrap();
    for (text, article) in misread_but_answered {
        assert_eq!(
            heard(&off, text),
            retrieval::Heard::NotInManual,
            "{text:?}: the model no longer misreads it, so it tests nothing; pick a line it misreads"
        );
        assert_eq!(
            heard(&on, text),
            retrieval::Heard::Article(article.to_string()),
            "{text:?}"
        );
    }
    for text in not_the_cars {
        assert!(
            !matches!(heard(&on, text), retrieval::Heard::Article(_)),
            "{text:?} got an article"
        );
    }
}

/// An alias that copies a test question would make the yardsticks measure
/// themselves: no title or alias may share 80% of its words with a question of
/// the retrieval sets or a turn of the conversation scenarios.
#[test]
fn no_alias_is_a_near_copy_of_a_test_question() {
    let pack = locate::find_pack_dir("").unwrap();
    let (_, articles) = knowledge::pack::load(&pack, &locate::intent_labels()).unwrap();
    let mut tests: Vec<String> = questions(&pack).into_iter().map(|q| q.text).collect();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conversations/scenarios.toml");
    let scenarios: toml::Table = toml::from_str(&std::fs::read_to_string(scenarios).unwrap()).unwrap();
    for scenario in scenarios["scenario"].as_array().unwrap() {
        for turn in scenario["turn"].as_array().unwrap() {
            tests.push(turn["say"].as_str().unwrap().to_string());
        }
    }
    assert!(tests.len() > 500, "{} test questions", tests.len());
    let mut copies = Vec::new();
    for article in &articles {
        // A one-word name ("help", "yes") is a name, not a copied question.
        for name in std::iter::once(&article.title)
            .chain(&article.aliases)
            .filter(|name| name.split_whitespace().count() > 1)
        {
            for question in &tests {
                if models::corpus::jaccard(name, question) >= models::corpus::NEAR_DUPLICATE_JACCARD {
                    copies.push(format!("{}: {name:?} ~ {question:?}", article.id));
                }
            }
        }
    }
    assert!(copies.is_empty(), "aliases that copy a test question: {copies:#?}");
}

#[test]
fn the_shipped_pack_covers_every_local_intent_and_the_required_topics() {
    let pack = locate::find_pack_dir("").unwrap();
    let (manifest, articles) = knowledge::pack::load(&pack, &locate::intent_labels()).unwrap();
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
