//! The loader refuses a corrupt or mismatched model folder with an error that says
//! what is wrong, and never half-loads one.

use std::path::Path;

use crate::common::*;
use models::Classifier;

fn load_error(dir: &Path) -> String {
    match Classifier::load_compact(dir) {
        Ok(_) => panic!("{} loaded but should have been refused", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

#[test]
fn a_good_folder_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model_folder(tmp.path());
    assert!(Classifier::load_compact(&dir).is_ok());
}

/// A good tiny folder, and copies of it spoilt one way each.
struct Spoilt {
    tmp: tempfile::TempDir,
    good: std::path::PathBuf,
}

impl Spoilt {
    fn new() -> Spoilt {
        let tmp = tempfile::tempdir().unwrap();
        let good = tiny_model_folder(tmp.path());
        Spoilt { tmp, good }
    }

    /// The loader's error on a copy of the good folder that `spoil` changed.
    fn case(&self, name: &str, spoil: &dyn Fn(&Path)) -> String {
        let dir = self.tmp.path().join(name);
        copy_folder(&self.good, &dir);
        spoil(&dir);
        load_error(&dir)
    }
}

#[test]
fn corrupt_files_are_refused_with_a_clear_reason() {
    let spoilt = Spoilt::new();
    let case = |name: &str, spoil: &dyn Fn(&Path)| spoilt.case(name, spoil);
    let err = case("flipped-byte", &|d| {
        let path = d.join("model.safetensors");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(err.contains("model.safetensors is corrupt"), "{err}");

    let err = case("truncated", &|d| {
        let path = d.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(err.contains("corrupt"), "{err}");

    let err = case("no-manifest", &|d| {
        std::fs::remove_file(d.join("manifest.json")).unwrap()
    });
    assert!(err.contains("manifest.json cannot be read"), "{err}");

    let err = case("garbled-manifest", &|d| {
        std::fs::write(d.join("manifest.json"), b"{not json").unwrap()
    });
    assert!(err.contains("manifest.json is corrupt"), "{err}");

    let err = case("future-format", &|d| {
        edit_json(&d.join("manifest.json"), |m| m["format_version"] = 99.into())
    });
    assert!(err.contains("format version 99 is not supported"), "{err}");
}

#[test]
fn labels_that_break_the_contract_are_refused() {
    let spoilt = Spoilt::new();
    let case = |name: &str, spoil: &dyn Fn(&Path)| spoilt.case(name, spoil);
    let err = case("missing-label", &|d| {
        edit_json(&d.join("labels.json"), |l| {
            l["intents"].as_array_mut().unwrap().pop();
        })
    });
    assert!(err.contains("29 intent labels") && err.contains("contract"), "{err}");

    let err = case("renamed-label", &|d| {
        edit_json(&d.join("labels.json"), |l| l["intents"][3] = "tyre_pressure".into())
    });
    assert!(err.contains("tyre_pressure"), "{err}");
}

#[test]
fn a_missing_tokenizer_or_an_edited_word_list_is_refused() {
    let spoilt = Spoilt::new();
    let case = |name: &str, spoil: &dyn Fn(&Path)| spoilt.case(name, spoil);
    let err = case("missing-tokenizer", &|d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap()
    });
    assert!(err.contains("tokenizer.json"), "{err}");

    // The speller's word list is vouched for like the weights: an edited list would
    // quietly change what the model reads.
    let err = case("edited-words", &|d| {
        let path = d.join("words.txt");
        let mut words = std::fs::read_to_string(&path).unwrap();
        words.push_str("brake\n");
        std::fs::write(&path, words).unwrap();
    });
    assert!(err.contains("words.txt is corrupt"), "{err}");
    let err = case("missing-words", &|d| std::fs::remove_file(d.join("words.txt")).unwrap());
    assert!(err.contains("words.txt listed in the manifest cannot be read"), "{err}");
}

#[test]
fn a_folder_of_another_kind_or_from_other_data_is_refused() {
    let spoilt = Spoilt::new();
    let case = |name: &str, spoil: &dyn Fn(&Path)| spoilt.case(name, spoil);
    let err = case("wrong-kind", &|d| {
        edit_json(&d.join("manifest.json"), |m| m["encoder"] = "transformer".into())
    });
    assert!(err.contains("not a compact model"), "{err}");

    // The data manifest: what the model learnt from is vouched for by its digest.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spoilt.good.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["data_sha256"].is_string(),
        "the writer records the data digest"
    );
    let err = case("edited-corpus-record", &|d| {
        edit_json(&d.join("manifest.json"), |m| {
            m["corpus_sha256"] = "00".repeat(32).into()
        })
    });
    assert!(err.contains("data manifest") && err.contains("data_sha256"), "{err}");
    let err = case("added-public-set", &|d| {
        edit_json(&d.join("manifest.json"), |m| {
            m["public_data"] = serde_json::json!([{"file": "sgd.jsonl", "sha256": "ab", "rows": 10}])
        })
    });
    assert!(err.contains("data manifest"), "{err}");
}

#[test]
fn heads_that_do_not_fit_the_table_are_refused() {
    let spoilt = Spoilt::new();
    let case = |name: &str, spoil: &dyn Fn(&Path)| spoilt.case(name, spoil);
    // Heads that do not fit the table: the manifest vouches for the file, but the
    // shapes do not match the embedding width.
    let err = case("wrong-width", &|d| {
        let path = d.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        let wide =
            candle_core::Tensor::zeros((WORDS.len(), 12), candle_core::DType::F16, &candle_core::Device::Cpu).unwrap();
        tensors.insert("embeddings".into(), wide);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let sha = models::corpus::sha256_file(&path).unwrap();
        edit_json(&d.join("manifest.json"), |m| {
            m["files"]["model.safetensors"] = sha.into();
            m["dim"] = 12.into();
        });
    });
    assert!(err.contains("intent.w1") && err.contains("retrain"), "{err}");
}

#[test]
fn transformer_heads_refuse_an_encoder_they_were_not_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_model_folder(tmp.path());
    let heads = tmp.path().join("heads");
    copy_folder(&good, &heads);
    edit_json(&heads.join("manifest.json"), |m| {
        m["encoder"] = "transformer".into();
        m["encoder_sha256"] = "0".repeat(64).into();
    });
    let encoder = tmp.path().join("encoder");
    std::fs::create_dir_all(&encoder).unwrap();
    std::fs::write(encoder.join("model.safetensors"), b"not the weights").unwrap();
    let err = Classifier::load_transformer(&heads, &encoder)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("were trained on") && err.contains("retrain"), "{err}");
}

#[test]
fn the_shipped_transformer_folder_pins_its_fine_tuned_layers() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("transformer");
    let manifest = models::manifest::Manifest::load_checked(&shipped).unwrap();
    assert!(
        manifest.files.contains_key(models::finetune::OVERLAY_FILE),
        "the shipped transformer heads sit on a fine-tuned encoder: its layers must be listed"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("transformer");
    copy_folder(&shipped, &dir);
    let path = dir.join(models::finetune::OVERLAY_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = Classifier::load_transformer(&dir, &models::transformer::default_encoder_dir())
        .err()
        .expect("a changed overlay must be refused")
        .to_string();
    assert!(
        err.contains(models::finetune::OVERLAY_FILE) && err.contains("corrupt"),
        "{err}"
    );
}

/// Words of `text`, lower case, joined by single spaces.
fn words(text: &str) -> String {
    models::corpus::normalise(text)
}

/// The public sets' folder, or `None` after a visible SKIP line saying what cannot
/// be checked: a fresh clone has no shared data.
fn shared_data_or_skip(what: &str) -> Option<std::path::PathBuf> {
    let data = models::public::default_dir();
    if data.is_dir() {
        return Some(data);
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {} not found: {what}", data.display());
    None
}

#[test]
fn no_row_of_the_public_sets_ships_in_a_model_folder() {
    let Some(data) = shared_data_or_skip("the public sets cannot be checked against the shipped folders") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut shipped = Vec::new();
    for folder in ["compact", "transformer"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            shipped.push((
                path.clone(),
                words(&String::from_utf8_lossy(&std::fs::read(&path).unwrap())),
            ));
        }
    }
    // Every run of four words in a shipped file: a row that is in a file has its
    // first four words among them.
    let mut windows = std::collections::HashSet::new();
    for (_, text) in &shipped {
        let w: Vec<&str> = text.split(' ').collect();
        windows.extend(w.windows(4).map(|win| win.join(" ")));
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = words(row["text"].as_str().unwrap_or_default());
            let first: Vec<&str> = text.split(' ').take(4).collect();
            if first.len() < 4 || !windows.contains(&first.join(" ")) {
                continue;
            }
            checked += 1;
            for (file, content) in &shipped {
                assert!(
                    !content.contains(&text),
                    "{} holds a row of {}: {text:?}",
                    file.display(),
                    path.display()
                );
            }
        }
    }
    println!("rows whose first four words occur in a shipped file, checked whole: {checked}");
}

/// The shipped gate on real out-of-scope requests nobody here wrote: each public
/// source's out-of-scope rows in the held-out families (never trained on). The
/// floors sit under today's figures (lowest: sgd, 87.7% recall; false emergencies
/// at most 0.2%), so a retrain that lets real requests through to the car's own
/// answers, or to the urgent route, fails here. Needs `shared/data`.
#[test]
fn the_gate_keeps_real_out_of_scope_requests_off_the_car_and_the_urgent_route() {
    let Some(data) = shared_data_or_skip("the gate cannot be checked on real out-of-scope rows") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let classifier = Classifier::load_compact(&root.join("compact")).unwrap();
    let held_out_percent = classifier.manifest().training.held_out_percent;
    for (source, rows) in models::public::held_out_rows(&data, held_out_percent).unwrap() {
        let oos: Vec<_> = rows
            .into_iter()
            .filter(|e| e.intent == models::Intent::OutOfScope)
            .collect();
        if oos.len() < 50 {
            continue;
        }
        let scored = models::recipe::evaluate(&classifier, &oos).unwrap();
        let real = models::metrics::RealUse::compute(&scored);
        assert!(
            real.out_of_scope_recall >= 0.85,
            "{source}: out-of-scope recall {:.3} on {} rows",
            real.out_of_scope_recall,
            oos.len()
        );
        assert!(
            real.false_emergencies <= 0.01,
            "{source}: {:.3} of {} out-of-scope rows read as emergencies",
            real.false_emergencies,
            oos.len()
        );
    }
}
