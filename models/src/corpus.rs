//! The training corpus (`models/corpus/*.tsv`) and evaluation sets (JSONL): reading
//! them with errors that name the file and line, splitting by template family, and
//! the text normalisation used to count near-duplicates across splits.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::labels::{Intent, Sentiment};
use crate::rng::stable_hash;

/// One labelled utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    pub intent: Intent,
    /// `None` where the source has no sentiment label (the public sets): such a
    /// line teaches the intent head only and is left out of sentiment figures.
    pub sentiment: Option<Sentiment>,
    /// The template family the line grew from; lines of one family never straddle a
    /// split. Evaluation sets give each line its own family.
    pub family: String,
}

/// The corpus as read from its folder, with the hash that the manifest records.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub examples: Vec<Example>,
    /// sha256 over the TSV files, in name order, so a manifest pins the exact corpus.
    pub sha256: String,
}

impl Corpus {
    /// Reads every `<intent>.tsv` in `dir`. The file name is the intent label.
    pub fn load(dir: &Path) -> Result<Corpus> {
        let paths = files_ending_in(dir, "tsv")?;
        if paths.is_empty() {
            return Err(ModelError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no .tsv corpus files here"),
            ));
        }
        let mut hasher = Sha256::new();
        let mut examples = Vec::new();
        for path in &paths {
            let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            hasher.update(path.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update(&bytes);
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let intent: Intent = stem.parse().map_err(|e| ModelError::BadLine {
                path: path.clone(),
                line: 0,
                reason: format!("file name: {e}"),
            })?;
            let text = String::from_utf8(bytes).map_err(|e| ModelError::BadLine {
                path: path.clone(),
                line: 0,
                reason: format!("not UTF-8: {e}"),
            })?;
            examples.extend(parse_tsv(path, &text, intent)?);
        }
        Ok(Corpus {
            examples,
            sha256: hex(&hasher.finalize()),
        })
    }
}

/// The files of `dir` whose extension is `extension`, in name order.
pub fn files_ending_in(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == extension))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Parses one corpus file's text; `intent` comes from its name.
pub fn parse_tsv(path: &Path, text: &str, intent: Intent) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| ModelError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 3 {
            return Err(bad(format!(
                "expected 3 tab-separated fields (text, sentiment, family), found {}",
                fields.len()
            )));
        }
        let text = fields[0].trim();
        if text.is_empty() {
            return Err(bad("empty text".into()));
        }
        let sentiment = Some(fields[1].parse().map_err(|e| bad(format!("sentiment: {e}")))?);
        let family = fields[2].trim();
        if family.is_empty() {
            return Err(bad("empty template family".into()));
        }
        out.push(Example {
            text: text.to_string(),
            intent,
            sentiment,
            family: family.to_string(),
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct EvalLine {
    text: String,
    intent: String,
    sentiment: String,
}

/// Reads an evaluation set: one `{"text", "intent", "sentiment"}` object per line.
pub fn load_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ModelError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let row: EvalLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        out.push(Example {
            intent: row.intent.parse().map_err(|e| bad(format!("intent: {e}")))?,
            sentiment: Some(row.sentiment.parse().map_err(|e| bad(format!("sentiment: {e}")))?),
            family: format!("{}:{}", path.display(), i + 1),
            text: row.text,
        });
    }
    Ok(out)
}

/// Which side of the family-keeping split an example falls on.
pub fn is_held_out(family: &str, held_out_percent: u64) -> bool {
    stable_hash(family) % 100 < held_out_percent
}

/// Splits into (train, held-out), keeping each template family whole.
pub fn split_by_family(examples: &[Example], held_out_percent: u64) -> (Vec<Example>, Vec<Example>) {
    examples
        .iter()
        .cloned()
        .partition(|e| !is_held_out(&e.family, held_out_percent))
}

/// Case, punctuation and whitespace folded away: two texts equal after this are
/// near-duplicates.
pub fn normalise(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The key two texts share when they say the same thing: the normalised text, or
/// for a text with no words (symbols, emoticons) its characters, spacing aside, so
/// that `:(` and `>>` stay two texts, as [`jaccard`] keeps them apart.
pub fn dedup_key(text: &str) -> String {
    let normalised = normalise(text);
    if normalised.is_empty() {
        wordless_key(text)
    } else {
        normalised
    }
}

/// The dedup keys of `examples` (to leave out what they already say).
pub fn normalised_texts(examples: &[Example]) -> HashSet<String> {
    examples.iter().map(|e| dedup_key(&e.text)).collect()
}

/// Word-set Jaccard similarity at or above which two texts count as near-duplicates:
/// they share at least 80% of their distinct words.
pub const NEAR_DUPLICATE_JACCARD: f64 = 0.8;

/// The distinct words of a text, normalised.
fn word_set(text: &str) -> BTreeSet<String> {
    normalise(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word-set Jaccard similarity of two texts. Texts with no words at all (symbols,
/// punctuation) are alike only when their characters, spacing aside, are equal.
pub fn jaccard(a: &str, b: &str) -> f64 {
    let (words_a, words_b) = (word_set(a), word_set(b));
    if words_a.is_empty() && words_b.is_empty() {
        return f64::from(u8::from(wordless_key(a) == wordless_key(b)));
    }
    set_jaccard(&words_a, &words_b)
}

fn wordless_key(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn set_jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// The texts of `probe` that have a near-duplicate in `reference` (word-set Jaccard
/// ≥ [`NEAR_DUPLICATE_JACCARD`]), each with the closest reference text.
pub fn near_duplicates<'a>(reference: &'a [Example], probe: &'a [Example]) -> Vec<(&'a str, &'a str)> {
    let reference: Vec<(BTreeSet<String>, &str)> =
        reference.iter().map(|e| (word_set(&e.text), e.text.as_str())).collect();
    probe
        .iter()
        .filter_map(|p| {
            let words = word_set(&p.text);
            reference
                .iter()
                .filter(|(r, _)| could_reach_threshold(&words, r))
                .map(|(r, text)| {
                    let score = if words.is_empty() {
                        jaccard(&p.text, text)
                    } else {
                        set_jaccard(&words, r)
                    };
                    (score, *text)
                })
                .filter(|(score, _)| *score >= NEAR_DUPLICATE_JACCARD)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, text)| (p.text.as_str(), text))
        })
        .collect()
}

/// Jaccard is at most min/max of the two set sizes: skips pairs that cannot reach
/// the threshold before counting their intersection.
fn could_reach_threshold(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    let (small, large) = (a.len().min(b.len()), a.len().max(b.len()));
    large == 0 || small as f64 >= NEAR_DUPLICATE_JACCARD * large as f64
}

/// How many of `probe`'s texts have a near-duplicate in `reference`.
pub fn count_near_duplicates(reference: &[Example], probe: &[Example]) -> usize {
    near_duplicates(reference, probe).len()
}

/// Examples per intent, for reports.
pub fn counts_by_intent(examples: &[Example]) -> BTreeMap<Intent, usize> {
    let mut counts = BTreeMap::new();
    for e in examples {
        *counts.entry(e.intent).or_insert(0) += 1;
    }
    counts
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed (model files are hashed at every load, and reading
/// them whole would double the peak memory of a start-up).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ModelError::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_corpus_line_names_its_file_and_line() {
        let path = Path::new("corpus/fuel_level.tsv");
        let text = "# comment\nhow much gas\tneutral\tfuel_level/000\nhow much petrol\tangry\tfuel_level/000\n";
        let err = parse_tsv(path, text, Intent::FuelLevel).unwrap_err().to_string();
        assert!(err.starts_with("corpus/fuel_level.tsv:3:"), "{err}");
        assert!(err.contains("angry"), "{err}");
        let err = parse_tsv(path, "no tabs here\n", Intent::FuelLevel)
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1:") && err.contains("3 tab-separated"), "{err}");
    }

    #[test]
    fn split_keeps_families_whole() {
        let examples: Vec<Example> = (0..400)
            .map(|i| Example {
                text: format!("line {i}"),
                intent: Intent::FuelLevel,
                sentiment: Some(Sentiment::Neutral),
                family: format!("fuel_level/{:03}", i / 4),
            })
            .collect();
        let (train, held) = split_by_family(&examples, 15);
        assert!(!held.is_empty() && !train.is_empty());
        let held_families: HashSet<&str> = held.iter().map(|e| e.family.as_str()).collect();
        assert!(train.iter().all(|e| !held_families.contains(e.family.as_str())));
        assert_eq!(train.len() + held.len(), examples.len());
    }

    #[test]
    fn near_duplicates_ignore_case_punctuation_and_spacing() {
        assert_eq!(normalise("  How much GAS,   do i have?? "), "how much gas do i have");
        assert_eq!(dedup_key("How much GAS??"), "how much gas");
        assert_eq!(dedup_key(" : ( "), ":(");
        assert_ne!(dedup_key(":("), dedup_key(">>"));
        let mk = |t: &str| Example {
            text: t.into(),
            intent: Intent::FuelLevel,
            sentiment: Some(Sentiment::Neutral),
            family: "f".into(),
        };
        assert_eq!(
            count_near_duplicates(&[mk("How much gas?")], &[mk("how much gas"), mk("how much fuel")]),
            1
        );
    }

    #[test]
    fn near_duplicates_are_word_sets_sharing_four_fifths() {
        let mk = |t: &str| Example {
            text: t.into(),
            intent: Intent::FuelLevel,
            sentiment: Some(Sentiment::Neutral),
            family: "f".into(),
        };
        // 4 shared of 5 distinct words: 0.8, a near-duplicate; order does not matter.
        assert!((jaccard("how much gas is left", "how much gas left") - 0.8).abs() < 1e-9);
        assert_eq!(jaccard("left is gas much how", "how much gas is left"), 1.0);
        // Texts without words are alike only when their symbols are.
        assert_eq!(jaccard("* *", "**"), 1.0);
        assert_eq!(jaccard("*", "#"), 0.0);
        assert_eq!(jaccard("*", "help"), 0.0);
        // 4 of 6: 0.67, not one.
        assert!(jaccard("how much gas is left now", "how much gas left") < NEAR_DUPLICATE_JACCARD);
        let train = [mk("how much gas is left"), mk("what is the tyre pressure")];
        let probe = [
            mk("How much gas left?"),
            mk("how much gas is left in the tank"),
            mk("what's the tyre pressure"),
            mk("what is the tyre pressure please"),
        ];
        let found = near_duplicates(&train, &probe);
        assert_eq!(
            found,
            vec![
                ("How much gas left?", "how much gas is left"),
                ("what is the tyre pressure please", "what is the tyre pressure"),
            ]
        );
    }

    #[test]
    fn the_shipped_corpus_meets_its_minimums() {
        let corpus = Corpus::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).unwrap();
        let counts = counts_by_intent(&corpus.examples);
        for intent in Intent::ALL {
            let n = counts.get(&intent).copied().unwrap_or(0);
            let min = if intent == Intent::OutOfScope { 1500 } else { 120 };
            assert!(n >= min, "{intent} has {n} lines, needs {min}");
        }
        let unique = normalised_texts(&corpus.examples);
        assert_eq!(unique.len(), corpus.examples.len(), "corpus has near-duplicate lines");
    }

    #[test]
    fn no_dev_line_is_a_near_duplicate_of_a_training_line() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let corpus = Corpus::load(&root.join("corpus")).unwrap();
        for dev in [
            "dev.jsonl",
            "dev2.jsonl",
            "real_car.jsonl",
            "assistant.jsonl",
            "noise.jsonl",
            "noise_select.jsonl",
        ] {
            let lines = load_jsonl(&root.join("eval").join(dev)).unwrap();
            let shared = near_duplicates(&corpus.examples, &lines);
            assert!(
                shared.is_empty(),
                "{dev} lines with a near-duplicate (word-set Jaccard >= {NEAR_DUPLICATE_JACCARD}) in the corpus: {shared:?}"
            );
        }
    }
}
