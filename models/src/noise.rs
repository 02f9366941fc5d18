//! Generated noise: the strings a recogniser or a bored passenger hands over that
//! say nothing (symbol runs, emoticons, digits, keyboard mashes, letters held down,
//! made-up syllables), drawn by a seeded generator and labelled `out_of_scope`.
//!
//! The corpus has a few dozen such lines by hand; a model with nothing else to go
//! on puts a string it has never seen wherever its class weights push it, and with
//! `emergency` weighted up that drifted to the urgent route from one retrain to the
//! next. These lines fill that region with what it means: nothing to act on. They
//! are training data only, made at train time from the seed (never stored), and no
//! line is a known word or one slip from a corpus word, so a typo of a real request
//! is never taught as noise.
//!
//! Measured once (`train --noise-per-kind 200`, with the tenth corpus round): the
//! symbols and mashes of the noise dev set all stayed out of scope, but three lone
//! words ("bleh", "beep", "whatever") still crossed the emergency floor, so the
//! shipped models were trained without these lines and `train` generates none by
//! default (the model card has the figures).

use std::collections::HashSet;

use crate::corpus::Example;
use crate::labels::{Intent, Sentiment};
use crate::rng::SplitMix64;

/// The family prefix of generated lines: each line is its own family, so the
/// held-out split takes some of every kind.
pub const FAMILY_PREFIX: &str = "generated/noise/";

const SYMBOLS: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const EYES: &[&str] = &[":", ";", "=", "8", "x", "X", ":'"];
const NOSES: &[&str] = &["", "", "-", "o", "^"];
const MOUTHS: &[&str] = &[
    ")", "(", "D", "P", "p", "/", "\\", "|", "]", "[", "O", "o", "*", "3", "$", "@", "S",
];
const FACE_PARTS: &[&str] = &["^", "-", "o", "O", ".", ";", "T", ">", "<", "x", "u", "*", "=", "@"];
const KEYBOARD_ROWS: &[&str] = &["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"];
const ONSETS: &[&str] = &[
    "b", "bl", "br", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k", "kl", "l", "m", "n", "p", "pl", "pr", "qu",
    "r", "s", "sk", "sl", "sn", "sp", "st", "t", "tr", "v", "w", "y", "z", "zw", "",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "oo", "ee", "ai", "ou", "y"];
const CODAS: &[&str] = &[
    "b", "ck", "d", "f", "g", "k", "l", "m", "mp", "n", "nk", "p", "rp", "rk", "rt", "sh", "t", "x", "z", "zz", "",
];

/// One kind of noise; [`generate`] draws the same number of lines of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Symbols,
    Emoticon,
    Digits,
    KeyboardRun,
    HeldKey,
    Syllables,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Symbols,
        Kind::Emoticon,
        Kind::Digits,
        Kind::KeyboardRun,
        Kind::HeldKey,
        Kind::Syllables,
    ];

    fn draw(self, rng: &mut SplitMix64) -> String {
        match self {
            Kind::Symbols => symbols(rng),
            Kind::Emoticon => emoticon(rng),
            Kind::Digits => (0..1 + rng.below(6))
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect(),
            Kind::KeyboardRun => keyboard_run(rng),
            Kind::HeldKey => held_key(rng),
            Kind::Syllables => syllables(rng),
        }
    }
}

/// What a generated line must not be: a word the model knows (the corpus's or the
/// tokenizer's whole words) or one edit from a corpus word.
pub struct Known<'a> {
    pub words: &'a HashSet<String>,
    pub corpus_words: &'a [String],
}

impl Known<'_> {
    fn allows(&self, line: &str) -> bool {
        line.split_whitespace().all(|word| {
            let letters = word.chars().any(|c| c.is_ascii_alphabetic());
            !letters
                || (!self.words.contains(word)
                    && !self
                        .corpus_words
                        .iter()
                        .any(|known| known.len() >= 3 && strsim::levenshtein(known, word) <= 1))
        })
    }
}

/// `per_kind` distinct lines of each kind, drawn from `seed`, none of them allowed
/// by `known` to be a word, labelled `out_of_scope` and neutral.
pub fn generate(seed: u64, per_kind: usize, known: &Known) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed ^ 0x6e6f_6973_6521);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let mut drawn = 0;
        // Short kinds run out of distinct strings; stop trying after enough misses.
        for _ in 0..per_kind * 20 {
            if drawn == per_kind {
                break;
            }
            let line = kind.draw(&mut rng);
            if line.trim().is_empty() || !known.allows(&line) || !seen.insert(line.clone()) {
                continue;
            }
            drawn += 1;
            out.push(Example {
                family: format!("{FAMILY_PREFIX}{}", out.len()),
                text: line,
                intent: Intent::OutOfScope,
                sentiment: Some(Sentiment::Neutral),
            });
        }
    }
    out
}

/// How many of `lines` are generated noise.
pub fn count(lines: &[Example]) -> usize {
    lines.iter().filter(|e| e.family.starts_with(FAMILY_PREFIX)).count()
}

fn pick<'a>(rng: &mut SplitMix64, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

fn symbols(rng: &mut SplitMix64) -> String {
    let len = 1 + rng.below(4);
    if rng.below(2) == 0 {
        let c = char::from(SYMBOLS[rng.below(SYMBOLS.len())]);
        std::iter::repeat_n(c, len).collect()
    } else {
        (0..len)
            .map(|_| char::from(SYMBOLS[rng.below(SYMBOLS.len())]))
            .collect()
    }
}

fn emoticon(rng: &mut SplitMix64) -> String {
    match rng.below(3) {
        0 => format!("{}{}{}", pick(rng, EYES), pick(rng, NOSES), pick(rng, MOUTHS)),
        1 => {
            let eye = pick(rng, FACE_PARTS);
            let mouth = ["_", ".", "-", "o", "w"][rng.below(5)];
            format!("{eye}{mouth}{eye}")
        }
        _ => ["<3", "</3", "<33", "xD", "XD", "o/", "\\o/", ">_<", "^^", "(:"][rng.below(10)].to_string(),
    }
}

/// Neighbouring keys along one row, either way, sometimes typed twice over.
fn keyboard_run(rng: &mut SplitMix64) -> String {
    let row = KEYBOARD_ROWS[rng.below(KEYBOARD_ROWS.len())].as_bytes();
    let len = 3 + rng.below(4); // at most 6: every row has 7 keys or more
    let start = rng.below(row.len() - len + 1);
    let mut run: Vec<u8> = row[start..start + len].to_vec();
    if rng.below(2) == 0 {
        run.reverse();
    }
    let run = String::from_utf8(run).expect("ASCII keys");
    if rng.below(4) == 0 {
        let half = &run[..2.min(run.len())];
        half.repeat(2 + rng.below(2))
    } else {
        run
    }
}

/// One or two letters held down or tapped over and over ("mmmm", "fjfjfj").
fn held_key(rng: &mut SplitMix64) -> String {
    let letter = |rng: &mut SplitMix64| char::from(b'a' + rng.below(26) as u8);
    if rng.below(2) == 0 {
        std::iter::repeat_n(letter(rng), 3 + rng.below(4)).collect()
    } else {
        let pair: String = [letter(rng), letter(rng)].iter().collect();
        pair.repeat(2 + rng.below(3))
    }
}

/// One to three made-up syllables, sometimes said twice ("blorp", "zeezee"), or a
/// filler with its last letter held ("ohhh").
fn syllables(rng: &mut SplitMix64) -> String {
    let mut word = String::new();
    for _ in 0..1 + rng.below(2) {
        word.push_str(pick(rng, ONSETS));
        word.push_str(pick(rng, VOWELS));
        word.push_str(pick(rng, CODAS));
    }
    match rng.below(6) {
        0 => {
            let last = word.chars().last().unwrap_or('h');
            word.extend(std::iter::repeat_n(last, 1 + rng.below(3)));
            word
        }
        1 => format!("{word} {word}"),
        2 => format!("{word}{}", ["?", "!", "...", "!!"][rng.below(4)]),
        _ => word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known<'a>(words: &'a HashSet<String>, corpus_words: &'a [String]) -> Known<'a> {
        Known { words, corpus_words }
    }

    #[test]
    fn draws_the_same_lines_from_one_seed_and_other_lines_from_another() {
        let words = HashSet::new();
        let a = generate(7, 40, &known(&words, &[]));
        let b = generate(7, 40, &known(&words, &[]));
        let c = generate(8, 40, &known(&words, &[]));
        let texts = |v: &[Example]| v.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&a), texts(&b));
        assert_ne!(texts(&a), texts(&c));
        assert!(a.len() > 200, "{}", a.len());
        assert!(a
            .iter()
            .all(|e| e.intent == Intent::OutOfScope && e.family.starts_with(FAMILY_PREFIX)));
        let distinct: HashSet<&str> = a.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(distinct.len(), a.len());
    }

    #[test]
    fn never_draws_a_known_word_or_one_slip_from_a_corpus_word() {
        let none = HashSet::new();
        let free = generate(3, 200, &known(&none, &[]));
        let lettered: Vec<&str> = free
            .iter()
            .map(|e| e.text.as_str())
            .filter(|t| t.chars().all(|c| c.is_ascii_lowercase()) && t.len() >= 4)
            .collect();
        assert!(lettered.len() > 50);
        // Every lettered line drawn without a filter is now a known word, or a
        // corpus word one edit from it: none of them may come back.
        let words: HashSet<String> = lettered.iter().step_by(2).map(|t| t.to_string()).collect();
        let corpus_words: Vec<String> = lettered.iter().skip(1).step_by(2).map(|t| format!("{t}x")).collect();
        let filtered = generate(3, 200, &known(&words, &corpus_words));
        for line in &filtered {
            for word in line.text.split_whitespace() {
                assert!(!words.contains(word), "{word}");
                assert!(
                    !corpus_words.iter().any(|c| strsim::levenshtein(c, word) <= 1),
                    "{word}"
                );
            }
        }
        assert!(filtered.len() > 200);
    }
}
