//! The knowledge base end to end on a small pack written per test: compile, open,
//! search, and refuse bad input clearly.

use std::path::Path;
use std::sync::Arc;

use knowledge::embed::fake::HashingEmbedder;
use knowledge::{compile, Embedder, KnowledgeBase, KnowledgeError, Query, VehicleFilter};

const INTENTS: &[&str] = &["warning_light", "tire_pressure", "feature_howto", "fuel_level"];

const PACK: &str = r#"
name = "test-pack"
title = "Test pack"
version = 3

[applies]
models = ["Voyager"]
years = [2025, 2025]
"#;

const ARTICLES: &str = r#"
[[article]]
id = "warning-light-oil-pressure"
title = "Oil pressure warning light"
intents = ["warning_light"]
aliases = ["red oil can light", "oil lamp"]
keywords = ["red", "oil can", "drip"]
summary = "The red oil can means the oil pressure is too low. Stop safely and switch off the engine."
body = "Low oil pressure can destroy the engine within minutes. Check the level once the engine has cooled."

[[article]]
id = "tire-pressure-recommended"
title = "Recommended tyre pressures"
intents = ["tire_pressure"]
aliases = ["tire pressure", "how much air"]
summary = "Front tyres take 2.4 bar and rear tyres 2.6 bar when cold."
body = "The label on the driver's door pillar lists the pressures."

[[article]]
id = "pair-phone"
title = "Pair a phone over Bluetooth"
intents = ["feature_howto"]
aliases = ["connect my phone", "bluetooth"]
summary = "Open Settings, then Phone, then Add device, and confirm the code on both screens."
body = "Up to five phones can be paired."

[[article]]
id = "heated-seats-uk"
title = "Heated seats"
intents = ["feature_howto"]
summary = "Press the seat button on the climate panel once for high and twice for low."
body = "Heated seats are standard on UK cars."
applies = { markets = ["UK"] }
"#;

fn write_pack(dir: &Path, articles: &str) {
    std::fs::create_dir_all(dir.join("articles")).unwrap();
    std::fs::write(dir.join("pack.toml"), PACK).unwrap();
    std::fs::write(dir.join("articles/main.toml"), articles).unwrap();
}

fn build(dir: &Path, embedder: &HashingEmbedder) -> KnowledgeBase {
    write_pack(&dir.join("src"), ARTICLES);
    let out = dir.join("kb.sqlite");
    let report = compile(&dir.join("src"), &out, embedder, INTENTS).unwrap();
    assert_eq!(report.articles, 4);
    KnowledgeBase::open(&out, Arc::new(embedder.clone())).unwrap()
}

fn us_voyager() -> VehicleFilter {
    VehicleFilter {
        model: Some("Voyager".into()),
        year: Some(2025),
        trim: None,
        market: Some("US".into()),
    }
}

/// The best hit for `text` on the US Voyager, whatever its intent.
fn first_hit(kb: &KnowledgeBase, text: &str) -> knowledge::Hit {
    let vehicle = us_voyager();
    kb.search(&Query {
        text,
        intent: None,
        vehicle: &vehicle,
        limit: 1,
    })
    .unwrap()
    .remove(0)
}

fn top(kb: &KnowledgeBase, text: &str, intent: Option<&str>) -> Vec<String> {
    let vehicle = us_voyager();
    kb.search(&Query {
        text,
        intent,
        vehicle: &vehicle,
        limit: 3,
    })
    .unwrap()
    .into_iter()
    .map(|h| h.article.id)
    .collect()
}

#[test]
fn search_finds_articles_by_name_alias_and_keyword() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = build(tmp.path(), &HashingEmbedder::default());
    assert_eq!(kb.info().name, "test-pack");
    assert_eq!(kb.info().version, 3);
    assert_eq!(
        top(&kb, "what does the red oil can mean", None)[0],
        "warning-light-oil-pressure"
    );
    // "tire" finds the article written with "tyre".
    assert_eq!(
        top(&kb, "what should my tire pressures be", None)[0],
        "tire-pressure-recommended"
    );
    assert_eq!(
        top(&kb, "how do i connect my phone", Some("feature_howto"))[0],
        "pair-phone"
    );
}

#[test]
fn search_leaves_out_articles_for_other_vehicles() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = build(tmp.path(), &HashingEmbedder::default());
    assert!(!top(&kb, "heated seats", None).contains(&"heated-seats-uk".to_string()));
    let uk = VehicleFilter {
        market: Some("UK".into()),
        ..us_voyager()
    };
    let hits = kb
        .search(&Query {
            text: "heated seats",
            intent: None,
            vehicle: &uk,
            limit: 1,
        })
        .unwrap();
    assert_eq!(hits[0].article.id, "heated-seats-uk");
    let old = VehicleFilter {
        year: Some(2019),
        ..us_voyager()
    };
    assert!(kb.by_intent("feature_howto", &old).unwrap().is_empty());
    assert_eq!(kb.by_intent("feature_howto", &us_voyager()).unwrap().len(), 1);
}

#[test]
fn fts5_syntax_in_driver_text_never_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = build(tmp.path(), &HashingEmbedder::default());
    for text in [
        "\"oil",
        "oil AND NOT pressure",
        "oil NEAR(pressure, 2)",
        "oil*",
        "(((oil",
        "oil)",
        "^oil",
        "title:oil",
        "'; DROP TABLE articles; --",
        "\u{0}\u{7f}",
        "",
        "   ",
        "AND OR NOT",
        "***",
        "what's the tyre's pressure?",
    ] {
        let vehicle = us_voyager();
        kb.search(&Query {
            text,
            intent: None,
            vehicle: &vehicle,
            limit: 3,
        })
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    assert_eq!(top(&kb, "oil AND (can*", None)[0], "warning-light-oil-pressure");
}

#[test]
fn a_model_change_re_embeds_the_articles() {
    let tmp = tempfile::tempdir().unwrap();
    let old = HashingEmbedder::default();
    drop(build(tmp.path(), &old));
    let new = HashingEmbedder {
        dim: 32,
        id: "hashing-32".into(),
    };
    let kb = KnowledgeBase::open(&tmp.path().join("kb.sqlite"), Arc::new(new.clone())).unwrap();
    assert_eq!(kb.info().embedding_model, "hashing-32");
    let hit = first_hit(&kb, "pair a phone over bluetooth");
    assert_eq!(hit.article.id, "pair-phone");
    assert!(
        hit.semantic > 0.5,
        "vectors of the new model are compared: {}",
        hit.semantic
    );
    drop(kb);
    // Stored, not just used: the base itself now names the new model.
    let conn = rusqlite::Connection::open(tmp.path().join("kb.sqlite")).unwrap();
    let stored: String = conn
        .query_row("SELECT value FROM pack WHERE key = 'embedding_model'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, new.model_id());
}

fn compile_error(articles: &str) -> KnowledgeError {
    let tmp = tempfile::tempdir().unwrap();
    write_pack(tmp.path(), articles);
    compile(
        tmp.path(),
        &tmp.path().join("kb.sqlite"),
        &HashingEmbedder::default(),
        INTENTS,
    )
    .unwrap_err()
}

fn assert_pack_error(err: KnowledgeError, want_line: usize, want: &str) {
    match &err {
        KnowledgeError::Pack { path, line, message } => {
            assert!(path.ends_with("articles/main.toml"), "{err}");
            assert_eq!(*line, want_line, "{err}");
            assert!(message.contains(want), "{err}");
        }
        other => panic!("expected a pack error, got {other}"),
    }
}

#[test]
fn a_bad_article_is_an_error_naming_its_file_and_line() {
    let good = "[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"fuel_level\"]\nsummary = \"One.\"\nbody = \"B\"\n";
    assert_pack_error(
        compile_error(&format!("{good}\n[[article]]\nid = \"b\"\ntitle = \"B\"\nintents = [\"fly_to_mars\"]\nsummary = \"One.\"\nbody = \"B\"\n")),
        11,
        "`fly_to_mars` is not an intent",
    );
    assert_pack_error(compile_error(&format!("{good}\n{good}")), 9, "already used at");
    assert_pack_error(
        compile_error("[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"fuel_level\"]\nsummary = \"One. Two. Three.\"\nbody = \"B\"\n"),
        5,
        "one or two whole sentences",
    );
    assert_pack_error(
        compile_error("[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"fuel_level\"]\nsummary = \"One.\"\nbody = \"B\"\ncolour = \"red\"\n"),
        7,
        "colour",
    );
    assert_pack_error(
        compile_error("[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"fuel_level\"\n"),
        4,
        "unclosed array",
    );
    assert_pack_error(
        compile_error("[[article]]\nid = \"Bad Id\"\ntitle = \"A\"\nintents = [\"fuel_level\"]\nsummary = \"One.\"\nbody = \"B\"\n"),
        2,
        "lowercase",
    );
}

#[test]
fn a_failed_build_leaves_the_previous_base_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let embedder = HashingEmbedder::default();
    drop(build(tmp.path(), &embedder));
    std::fs::write(tmp.path().join("src/articles/main.toml"), "[[article]]\nid = \"x\"\n").unwrap();
    assert!(compile(
        &tmp.path().join("src"),
        &tmp.path().join("kb.sqlite"),
        &embedder,
        INTENTS
    )
    .is_err());
    let kb = KnowledgeBase::open(&tmp.path().join("kb.sqlite"), Arc::new(embedder)).unwrap();
    assert_eq!(kb.info().articles, 4);
}

#[test]
fn a_file_that_is_not_a_pack_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.sqlite");
    std::fs::write(&junk, b"this is not sqlite at all, just some bytes to be refused").unwrap();
    let err = KnowledgeBase::open(&junk, Arc::new(HashingEmbedder::default())).unwrap_err();
    assert!(matches!(err, KnowledgeError::NotAPack { .. }), "{err}");
    let missing =
        KnowledgeBase::open(&tmp.path().join("none.sqlite"), Arc::new(HashingEmbedder::default())).unwrap_err();
    assert!(missing.to_string().contains("kb build"), "{missing}");
}

/// A delta on version 1 gives the same base, content and embeddings, as the full
/// bundle of version 2; and a delta that does not fit is refused.
#[test]
fn a_delta_applied_gives_the_same_base_as_the_full_bundle() {
    use knowledge::bundle::{Manifest, Payload, PayloadKind, Targets};
    let tmp = tempfile::tempdir().unwrap();
    let embedder = HashingEmbedder::default();
    let v1 = build(tmp.path(), &embedder);
    let old = v1.articles().unwrap();
    let mut new = old.clone();
    new.retain(|a| a.id != "pair-phone");
    new.iter_mut()
        .find(|a| a.id == "tire-pressure-recommended")
        .unwrap()
        .summary = "Front tyres take 2.5 bar and rear tyres 2.7 bar when cold.".into();
    let mut added = old[0].clone();
    added.id = "jump-start".into();
    added.title = "Jump starting".into();
    new.push(added);
    let meta = v1.meta();

    let manifest = |payload: &Payload| Manifest {
        channel: "stable".into(),
        version: 2,
        created_at: jiff::Timestamp::now(),
        expires_at: jiff::Timestamp::now(),
        targets: Targets::default(),
        article_count: payload.article_count,
        payload: payload.kind(),
        payload_sha256: String::new(),
        payload_size: 0,
        payload_url: String::new(),
        publisher: "test".into(),
    };
    let full = Payload::parse(&Payload::full(meta.clone(), new.clone()).to_bytes()).unwrap();
    let delta = Payload::parse(&Payload::delta(meta.clone(), 1, &old, &new).to_bytes()).unwrap();
    match &delta.content {
        knowledge::bundle::Content::Delta { upsert, delete, .. } => {
            assert_eq!((upsert.len(), delete.as_slice()), (2, &["pair-phone".to_string()][..]));
        }
        other => panic!("not a delta: {other:?}"),
    }
    assert_eq!(delta.kind(), PayloadKind::Delta { base_version: 1 });

    let open = |name: &str, payload: Payload| {
        let (meta, articles) = payload.clone().resolve(&manifest(&payload), &old).unwrap();
        let out = tmp.path().join(name);
        knowledge::pack::write_base(&out, &meta, &articles, &embedder, &[("bundle_version", "2".into())]).unwrap();
        KnowledgeBase::open(&out, Arc::new(embedder.clone())).unwrap()
    };
    let from_full = open("full.sqlite", full);
    let from_delta = open("delta.sqlite", delta.clone());
    assert_eq!(from_full.content_hash().unwrap(), from_delta.content_hash().unwrap());
    assert_ne!(from_full.content_hash().unwrap(), v1.content_hash().unwrap());
    assert_eq!(from_delta.info().bundle_version, Some(2));
    assert_eq!(from_delta.info().articles, 4);
    assert!(from_delta.article("pair-phone").unwrap().is_none());
    assert!(from_delta
        .article("tire-pressure-recommended")
        .unwrap()
        .unwrap()
        .summary
        .contains("2.5 bar"));

    // The same delta on a base without `pair-phone` does not fit.
    let wrong_base: Vec<_> = old.iter().filter(|a| a.id != "pair-phone").cloned().collect();
    let err = delta.clone().resolve(&manifest(&delta), &wrong_base).unwrap_err();
    assert!(err.to_string().contains("pair-phone"), "{err}");
}

#[test]
fn a_question_that_says_one_alias_is_close_to_its_article() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = build(tmp.path(), &HashingEmbedder::default());
    let hit = first_hit(&kb, "oil lamp");
    assert_eq!(hit.article.id, "warning-light-oil-pressure");
    // The alias alone matches one field exactly; the whole article only in part.
    assert!(hit.closeness > 0.99, "closeness {}", hit.closeness);
    assert!(hit.semantic < hit.closeness, "semantic {}", hit.semantic);
}

#[test]
fn a_base_compiled_before_field_vectors_gets_them_when_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let embedder = HashingEmbedder::default();
    drop(build(tmp.path(), &embedder));
    let db = tmp.path().join("kb.sqlite");
    {
        // What a base of schema version 1 holds: no field vectors.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP TABLE field_embeddings; PRAGMA user_version = 1;")
            .unwrap();
    }
    let kb = KnowledgeBase::open(&db, Arc::new(embedder)).unwrap();
    let hit = first_hit(&kb, "oil lamp");
    assert!(hit.closeness > 0.99, "closeness {}", hit.closeness);
    drop(kb);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let fields: i64 = conn
        .query_row("SELECT count(*) FROM field_embeddings", [], |r| r.get(0))
        .unwrap();
    // Title, aliases and summary of the four articles: 4 + 6 + 4.
    assert_eq!(fields, 14);
}

#[test]
fn compiling_into_a_folder_that_does_not_exist_yet_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    write_pack(&dir.path().join("src"), ARTICLES);
    let out = dir.path().join("state/kb/kb.sqlite");
    let report = compile(&dir.path().join("src"), &out, &HashingEmbedder::default(), INTENTS).unwrap();
    assert_eq!(report.articles, 4);
    assert!(out.is_file());
}
