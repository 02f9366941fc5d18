//! Spoken style: what the car says is short enough to hear while driving, and in
//! the words of the car's market.
//!
//! - [`cap`] keeps whole sentences up to a word limit (30 by default) and keeps
//!   the rest for "tell me more".
//! - [`in_market_words`] says "tire, gas, center, hood, trunk" in North America
//!   and "tyre, petrol, centre, bonnet, boot" elsewhere, whatever the knowledge
//!   pack was written in. Units are the market's already ([`crate::vehicle::Units`]).
//! - [`date`] and [`days`] say dates and spans of time as people do: "July 10"
//!   or "10 July", "in about 7 months" rather than "in 215 days".

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// The default spoken limit, in words.
pub const MAX_WORDS: usize = 30;

/// A spoken answer and what was left unsaid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    pub said: String,
    pub rest: Option<String>,
}

/// Whole sentences of `text` up to `max_words`. A first sentence that alone is
/// longer is cut after its last comma, colon or semicolon within the limit, so
/// nothing spoken is ever longer than the limit.
pub fn cap(text: &str, max_words: usize) -> Capped {
    let sentences = sentences(text);
    let mut said: Vec<&str> = Vec::new();
    let mut words = 0;
    let mut taken = 0;
    for sentence in &sentences {
        let n = sentence.split_whitespace().count();
        if words + n > max_words {
            break;
        }
        said.push(sentence);
        words += n;
        taken += 1;
    }
    if taken == 0 {
        let (head, tail) = cut_clause(sentences[0], max_words);
        let mut rest = vec![tail];
        rest.extend(sentences[1..].iter().map(|s| s.to_string()));
        return Capped {
            said: head,
            rest: Some(rest.join(" ")),
        };
    }
    let mut said = said.join(" ");
    let mut rest = sentences[taken..].join(" ");
    // "If it is steady, book a check soon; if it flashes, stop.": the first
    // half is a whole instruction, and worth saying when it fits.
    if let Some((head, tail)) = sentences.get(taken).and_then(|next| next.split_once("; ")) {
        if words + head.split_whitespace().count() <= max_words {
            said = format!("{said} {head}.");
            let mut remaining = vec![capitalise(tail)];
            remaining.extend(sentences[taken + 1..].iter().map(|s| s.to_string()));
            rest = remaining.join(" ");
        }
    }
    Capped {
        said,
        rest: (!rest.trim().is_empty()).then_some(rest),
    }
}

/// The sentences of `text` that say what to do when something fails ("If
/// pairing fails, delete the car..."), to "try" something, or to do it
/// "instead", in their order; `None` when there are none. After "it didn't
/// work", these are the next thing to try, not a fact about the feature.
pub fn remedies(text: &str) -> Option<String> {
    static REMEDY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^if\b.*(\b(fail|fails|failed|not|still)\b|n['’]t\b)|\b(try|instead|otherwise)\b")
            .expect("valid")
    });
    let found: Vec<&str> = sentences(text).into_iter().filter(|s| REMEDY.is_match(s)).collect();
    (!found.is_empty()).then(|| found.join(" "))
}

/// Splits after `.`, `!` or `?` followed by a space (so "2.4 bar" stays whole).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| *n == b' ') {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    if !text[start..].trim().is_empty() {
        out.push(text[start..].trim());
    }
    if out.is_empty() {
        out.push("");
    }
    out
}

/// The sentence cut after the last comma within `max_words` (or at the limit),
/// closed with a full stop; and the rest, capitalised.
fn cut_clause(sentence: &str, max_words: usize) -> (String, String) {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let limit = max_words.min(words.len());
    let at = (1..limit)
        .rev()
        .find(|&i| words[i - 1].ends_with([',', ';', ':']))
        .unwrap_or(limit);
    let head = words[..at].join(" ");
    let head = format!("{}.", head.trim_end_matches([',', ';', ':']));
    let tail = words[at..].join(" ");
    (head, capitalise(&tail))
}

/// `text` with its first letter in upper case.
pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Which English a market speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    American,
    British,
}

impl Wording {
    /// North American markets say "tire" and "gas"; the rest, "tyre" and "petrol".
    pub fn of_market(market: &str) -> Wording {
        match market.to_ascii_uppercase().as_str() {
            "US" | "CA" => Wording::American,
            _ => Wording::British,
        }
    }
}

/// A date as people in the market say it: "July 10" in North America, "10 July"
/// elsewhere, with the year only when it is not this year's.
pub fn date(date: jiff::civil::Date, today: jiff::civil::Date, wording: Wording) -> String {
    let this_year = date.year() == today.year();
    match (wording, this_year) {
        (Wording::American, true) => date.strftime("%B %-d").to_string(),
        (Wording::American, false) => date.strftime("%B %-d, %Y").to_string(),
        (Wording::British, true) => date.strftime("%-d %B").to_string(),
        (Wording::British, false) => date.strftime("%-d %B %Y").to_string(),
    }
}

/// A span of days as people say it: "3 days", "about 5 weeks", "about 7 months".
pub fn days(days: i32) -> String {
    let plural = |n: i32, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match days.abs() {
        d if d < 14 => plural(d, "day"),
        d if d < 60 => format!("about {}", plural((d as f64 / 7.0).round() as i32, "week")),
        d => format!("about {}", plural((d as f64 / 30.44).round() as i32, "month")),
    }
}

/// British and American words for the same thing; each side is one whole word.
const PAIRS: &[(&str, &str)] = &[
    ("tyre", "tire"),
    ("tyres", "tires"),
    ("petrol", "gas"),
    ("centre", "center"),
    ("centres", "centers"),
    ("bonnet", "hood"),
    ("boot", "trunk"),
    ("windscreen", "windshield"),
    ("screenwash", "washer fluid"),
    ("colour", "color"),
    ("colours", "colors"),
    ("litres", "liters"),
    ("litre", "liter"),
    ("metres", "meters"),
    ("kerb", "curb"),
    ("motorway", "highway"),
    ("wing", "fender"),
    ("demister", "defroster"),
    ("glovebox", "glove box"),
    ("petrol station", "gas station"),
];

/// `normalised` (lower case, single spaces) with each American word in its
/// British form ("hood" is "bonnet"), word by word and without a pattern (its
/// per-thread caches cost the daemon memory): for comparing what two texts say,
/// not for speaking.
pub fn british_words(normalised: &str) -> String {
    static BY_AMERICAN: LazyLock<std::collections::HashMap<&'static str, &'static str>> = LazyLock::new(|| {
        PAIRS
            .iter()
            .filter(|(b, a)| !a.contains(' ') && !b.contains(' '))
            .map(|(b, a)| (*a, *b))
            .collect()
    });
    normalised
        .split(' ')
        .map(|word| BY_AMERICAN.get(word).copied().unwrap_or(word))
        .collect::<Vec<_>>()
        .join(" ")
}

static BRITISH: LazyLock<Regex> = LazyLock::new(|| whole_words(PAIRS.iter().map(|(b, _)| *b)));
static AMERICAN: LazyLock<Regex> = LazyLock::new(|| whole_words(PAIRS.iter().map(|(_, a)| *a)));

fn whole_words<'a>(words: impl Iterator<Item = &'a str>) -> Regex {
    let mut words: Vec<&str> = words.collect();
    // Longest first, so "petrol station" wins over "petrol".
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let alternatives: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
    super::slots::re(&format!(r"(?i)\b({})\b", alternatives.join("|")))
}

/// `text` in the words of `wording`, keeping a capital letter where there was one.
/// "US gallons" and unit names are left alone.
pub fn in_market_words(text: &str, wording: Wording) -> String {
    let (from, lookup): (&Regex, fn(&str) -> Option<&'static str>) = match wording {
        Wording::American => (&BRITISH, |w| PAIRS.iter().find(|(b, _)| *b == w).map(|(_, a)| *a)),
        Wording::British => (&AMERICAN, |w| PAIRS.iter().find(|(_, a)| *a == w).map(|(b, _)| *b)),
    };
    from.replace_all(text, |caps: &Captures<'_>| {
        let found = &caps[0];
        match lookup(&found.to_lowercase()) {
            Some(other) if found.starts_with(|c: char| c.is_uppercase()) => capitalise(other),
            Some(other) => other.to_string(),
            None => found.to_string(),
        }
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn american_words_read_as_british_for_comparison() {
        assert_eq!(
            british_words("pop the hood and check the tires"),
            "pop the bonnet and check the tyres"
        );
        assert_eq!(british_words("the nearest gas station"), "the nearest petrol station");
        assert_eq!(british_words("the bonnet"), "the bonnet", "British stays");
    }

    #[test]
    fn the_next_thing_to_try_is_a_remedy_not_a_fact() {
        let text = "Up to five phones can be paired. If pairing fails, delete the car. Or try again later.";
        assert_eq!(
            remedies(text).as_deref(),
            Some("If pairing fails, delete the car. Or try again later.")
        );
        assert_eq!(remedies("Open the door. Press the button."), None);
        assert_eq!(
            remedies("It opens by hand. If it still won't open, pull the cord. If it isn’t locked, push.").as_deref(),
            Some("If it still won't open, pull the cord. If it isn’t locked, push.")
        );
        assert_eq!(
            remedies("If it is cold, wait. Otherwise press it.").as_deref(),
            Some("Otherwise press it."),
            "a condition that is not a failure is not a remedy"
        );
    }

    #[test]
    fn dates_and_spans_are_said_as_people_say_them() {
        let today = jiff::civil::date(2026, 12, 7);
        let july = jiff::civil::date(2026, 7, 10);
        let next_july = jiff::civil::date(2027, 7, 10);
        assert_eq!(date(july, today, Wording::American), "July 10");
        assert_eq!(date(next_july, today, Wording::American), "July 10, 2027");
        assert_eq!(date(july, today, Wording::British), "10 July");
        assert_eq!(date(next_july, today, Wording::British), "10 July 2027");
        assert_eq!(days(1), "1 day");
        assert_eq!(days(13), "13 days");
        assert_eq!(days(35), "about 5 weeks");
        assert_eq!(days(215), "about 7 months");
        assert_eq!(days(-3), "3 days");
    }

    #[test]
    fn cap_keeps_whole_sentences_within_the_limit() {
        let text = "One two three. Four five six seven. Eight.";
        assert_eq!(
            cap(text, 7),
            Capped {
                said: "One two three. Four five six seven.".into(),
                rest: Some("Eight.".into())
            }
        );
        assert_eq!(cap(text, 30).rest, None);
        assert_eq!(cap("Pump to 2.4 bar. Then go.", 4).said, "Pump to 2.4 bar.");
        let halves = cap("A fault. If it is steady, book a check; if it flashes, stop now.", 9);
        assert_eq!(halves.said, "A fault. If it is steady, book a check.");
        assert_eq!(halves.rest.as_deref(), Some("If it flashes, stop now."));
        assert_eq!(
            cap("A fault. If steady, book; if it flashes, stop.", 3).said,
            "A fault."
        );
    }

    #[test]
    fn an_overlong_first_sentence_is_cut_at_a_comma() {
        let capped = cap(
            "Park here, switch off, then wait five minutes and pull the stick out.",
            5,
        );
        assert_eq!(capped.said, "Park here, switch off.");
        assert_eq!(
            capped.rest.as_deref(),
            Some("Then wait five minutes and pull the stick out.")
        );
        assert!(capped.said.split_whitespace().count() <= 5);
        let capped = cap("Unlock the car first: the cable is locked while the car is.", 6);
        assert_eq!(capped.said, "Unlock the car first.");
        assert_eq!(capped.rest.as_deref(), Some("The cable is locked while the car is."));
    }

    #[test]
    fn market_words_follow_the_market_and_keep_capitals() {
        let text = "Tyres lose pressure; check the tyre under the bonnet on the centre screen. Petrol only.";
        assert_eq!(
            in_market_words(text, Wording::American),
            "Tires lose pressure; check the tire under the hood on the center screen. Gas only."
        );
        assert_eq!(
            in_market_words("the gas station in the trunk", Wording::British),
            "the petrol station in the boot"
        );
        assert_eq!(
            in_market_words("11.9 US gallons, reboot", Wording::American),
            "11.9 US gallons, reboot"
        );
        assert_eq!(Wording::of_market("uk"), Wording::British);
        assert_eq!(Wording::of_market("CA"), Wording::American);
    }
}
