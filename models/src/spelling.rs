//! Typing-slip correction before the compact encoder tokenizes. A slip ("wehre",
//! "disreegard") breaks a word into word pieces whose rows say little, so a word the
//! model does not know, one slip away from one it does, is read as that word. The
//! known words are the training corpus's own (stored with the model as `words.txt`,
//! most frequent first) and the tokenizer's whole-word tokens; a word either list
//! holds is never touched, so known words, numbers and anything not spelt in ASCII
//! letters pass as they are.

use std::borrow::Cow;
use std::collections::HashMap;

use tokenizers::Tokenizer;

/// Words shorter than this are left alone: a short word has too many neighbours one
/// edit away to guess which was meant.
pub const MIN_CORRECTED_LETTERS: usize = 4;

/// Letters a word needs before a dropped letter is put back: a short real word is
/// too often a longer known word minus one letter ("bake", "brake").
pub const MIN_LETTERS_TO_RESTORE: usize = 5;

/// Times a word must occur in the training lines to join the corpus's word list
/// (a typo of the corpus's own occurs once or twice; a real word more often).
pub const MIN_CORPUS_COUNT: usize = 3;

/// The known words, each with a rank (lower is more likely).
#[derive(Debug, Clone, Default)]
pub struct Speller {
    rank: HashMap<String, usize>,
}

impl Speller {
    /// `corpus_words` (most frequent first) rank ahead of the tokenizer's whole-word
    /// tokens, which rank by id (the vocabulary lists common words first).
    pub fn new(corpus_words: &[String], tokenizer: &Tokenizer) -> Speller {
        let mut rank: HashMap<String, usize> = HashMap::new();
        for (i, word) in corpus_words.iter().enumerate() {
            rank.entry(word.clone()).or_insert(i);
        }
        let offset = corpus_words.len();
        for (token, id) in tokenizer.get_vocab(false) {
            if !token.is_empty() && token.chars().all(|c| c.is_ascii_lowercase()) {
                rank.entry(token).or_insert(offset + id as usize);
            }
        }
        Speller { rank }
    }

    /// `text` with every unknown word of [`MIN_CORRECTED_LETTERS`] or more letters
    /// replaced by the best-ranked known word one typing slip away: a letter typed
    /// twice, two neighbours swapped, or (in words of [`MIN_LETTERS_TO_RESTORE`] or
    /// more letters) a letter left out. The first letter is never changed. Other
    /// edits (a letter changed, or a stray one dropped) are not tried: they turn
    /// real words the model does not know into other real words ("router" into
    /// "route") far more often than they undo a slip. Words with no such neighbour
    /// stay as they are, and so does the punctuation around a word (a corrected
    /// word comes out lowercase).
    pub fn correct<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.rank.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out: Option<String> = None;
        let mut copied_to = 0;
        for (start, word) in words(text) {
            let lower = word.to_ascii_lowercase();
            if lower.len() < MIN_CORRECTED_LETTERS || self.rank.contains_key(&lower) {
                continue;
            }
            if let Some(fix) = self.best_neighbour(&lower) {
                let s = out.get_or_insert_with(String::new);
                s.push_str(&text[copied_to..start]);
                s.push_str(&fix);
                copied_to = start + word.len();
            }
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut s) => {
                s.push_str(&text[copied_to..]);
                Cow::Owned(s)
            }
        }
    }

    fn best_neighbour(&self, word: &str) -> Option<String> {
        let letters = word.as_bytes();
        let n = letters.len();
        // One buffer for every candidate: a word can have hundreds.
        let mut candidate: Vec<u8> = Vec::with_capacity(n + 1);
        let mut best: Option<(usize, &str)> = None;
        let mut consider = |candidate: &[u8]| {
            let text = std::str::from_utf8(candidate).expect("ASCII letters");
            if let Some((known, &r)) = self.rank.get_key_value(text) {
                if best.is_none_or(|(b, w)| (r, known.as_str()) < (b, w)) {
                    best = Some((r, known.as_str()));
                }
            }
        };
        for i in 1..n {
            // a doubled letter: drop one of the two
            if letters[i] == letters[i - 1] {
                candidate.clear();
                candidate.extend_from_slice(&letters[..i]);
                candidate.extend_from_slice(&letters[i + 1..]);
                consider(&candidate);
            }
            // two neighbours swapped: swap them back
            if i + 1 < n && letters[i] != letters[i + 1] {
                candidate.clear();
                candidate.extend_from_slice(letters);
                candidate.swap(i, i + 1);
                consider(&candidate);
            }
        }
        // a dropped letter: put one back (only in longer words, see MIN_LETTERS_TO_RESTORE)
        if n >= MIN_LETTERS_TO_RESTORE {
            for i in 1..=n {
                candidate.clear();
                candidate.extend_from_slice(&letters[..i]);
                candidate.push(b'a');
                candidate.extend_from_slice(&letters[i..]);
                for letter in b'a'..=b'z' {
                    candidate[i] = letter;
                    consider(&candidate);
                }
            }
        }
        best.map(|(_, w)| w.to_string())
    }
}

/// The words of `text` that consist of ASCII letters only, with their byte offsets:
/// whitespace-separated pieces, trimmed of the punctuation around them. Pieces with
/// digits, apostrophes or other letters inside are skipped.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace().filter_map(move |piece| {
        let offset = piece.as_ptr() as usize - text.as_ptr() as usize;
        let trimmed_start = piece.trim_start_matches(|c: char| c.is_ascii_punctuation());
        let lead = piece.len() - trimmed_start.len();
        let core = trimmed_start.trim_end_matches(|c: char| c.is_ascii_punctuation());
        (!core.is_empty() && core.bytes().all(|b| b.is_ascii_alphabetic())).then_some((offset + lead, core))
    })
}

/// The words of `lines` that occur [`MIN_CORPUS_COUNT`] times or more, lowercased,
/// most frequent first (ties alphabetically): the list a model folder stores for
/// its [`Speller`].
pub fn corpus_words<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in lines {
        for (_, word) in words(line) {
            *counts.entry(word.to_ascii_lowercase()).or_default() += 1;
        }
    }
    let mut words: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= MIN_CORPUS_COUNT).collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.into_iter().map(|(w, _)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speller(words: &[&str]) -> Speller {
        let tokenizer = Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
        Speller::new(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>(), &tokenizer)
    }

    #[test]
    fn typing_slips_are_read_as_the_known_word() {
        let s = speller(&["where", "disregard", "thanks", "course", "town", "away", "cores"]);
        assert_eq!(s.correct("wehre is the car"), "where is the car", "swapped");
        assert_eq!(s.correct("Disreegard that."), "disregard that.", "doubled");
        assert_eq!(s.correct("the next toown"), "the next town", "doubled");
        assert_eq!(s.correct("won't go awway!"), "won't go away!", "doubled");
        assert_eq!(s.correct("great, thnks a bunch"), "great, thanks a bunch", "left out");
        // "coures" is "course" swapped and "cores" with a stray "u": only slips count.
        assert_eq!(s.correct("of coures"), "of course");
    }

    #[test]
    fn known_short_and_far_words_are_left_alone() {
        let s = speller(&["where", "course", "brake", "route", "trending"]);
        for kept in [
            "course",       // known
            "xhere",        // the first letter is never changed
            "wheeere",      // two slips away
            "whre",         // a left-out letter is put back in longer words only
            "bake",         // (which keeps "bake" from becoming "brake")
            "router",       // a stray letter is not taken out: "route" is not meant
            "reno 95 i-95", // unknown but nothing near; numbers untouched
            "ça va",        // not ASCII letters
            "whe",          // three letters are too few
        ] {
            assert_eq!(s.correct(kept), kept);
        }
        assert!(matches!(s.correct("nothing to fix"), Cow::Borrowed(_)));
        assert_eq!(speller(&[]).correct("wehre"), "wehre");
    }

    #[test]
    fn corpus_words_keep_the_frequent_ones_most_frequent_first() {
        let lines = ["where is it", "where now", "Where, then?", "now now", "typo wehre"];
        assert_eq!(corpus_words(lines), vec!["now", "where"]);
    }
}
