//! Servicing: the dealer's opening hours and free slots, and the deterministic
//! reading of what a driver asked for ("a brake inspection next friday morning")
//! that the local provider uses where Bedrock would use the model.
//!
//! Day words are read in the owner's time zone, relative to today:
//! - "today", "tomorrow", "the day after tomorrow", "in 3 days";
//! - a weekday ("friday", "this friday", "next friday", "on fri") is the first
//!   such day strictly after today; "next week" is next Monday;
//! - a date: "2026-12-04", "december 4", "4 december", "the 4th".
//!
//! Parts of the day: morning 08:00-12:00, afternoon 12:00-17:00, evening
//! 17:00-18:00; "at 9", "9am", "2 pm", "14:30", "noon" name an hour.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// The services a dealer books, by name, with the words drivers use for them.
pub const SERVICES: &[(&str, &[&str])] = &[
    ("brake inspection", &["brake", "brakes", "braking", "pads", "rotors"]),
    ("oil change", &["oil"]),
    (
        "tire service",
        &["tire", "tires", "tyre", "tyres", "rotation", "alignment", "puncture"],
    ),
    ("battery check", &["battery", "12v"]),
    (
        "air conditioning service",
        &["aircon", "a/c", "ac", "conditioning", "climate"],
    ),
    ("recall repair", &["recall"]),
    (
        "annual service",
        &[
            "annual",
            "yearly",
            "maintenance",
            "service",
            "servicing",
            "checkup",
            "check-up",
            "inspection",
            "mot",
        ],
    ),
];

/// The service a slot is for: one of [`SERVICES`].
pub fn canonical_service(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_lowercase();
    SERVICES
        .iter()
        .find(|(canonical, words)| *canonical == lower || words.contains(&lower.as_str()))
        .map(|(canonical, _)| *canonical)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartOfDay {
    Morning,
    Afternoon,
    Evening,
    Any,
}

impl PartOfDay {
    /// The start hours of slots in this part of the day: [from, to).
    pub fn hours(self) -> (i8, i8) {
        match self {
            PartOfDay::Morning => (8, 12),
            PartOfDay::Afternoon => (12, 17),
            PartOfDay::Evening => (17, 18),
            PartOfDay::Any => (8, 18),
        }
    }

    pub fn parse(text: &str) -> Option<PartOfDay> {
        match text {
            "morning" => Some(PartOfDay::Morning),
            "afternoon" => Some(PartOfDay::Afternoon),
            "evening" => Some(PartOfDay::Evening),
            "any" => Some(PartOfDay::Any),
            _ => None,
        }
    }
}

/// What a booking request asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingRequest {
    pub service: Option<&'static str>,
    pub date: Option<Date>,
    pub part_of_day: PartOfDay,
    /// An exact hour asked for ("at 9").
    pub hour: Option<(i8, i8)>,
}

const WEEKDAYS: [(&str, Weekday); 14] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month(word: &str) -> Option<i8> {
    MONTHS
        .iter()
        .position(|m| {
            *m == word || (word.len() >= 3 && m.starts_with(word) && word != "mar" || word == "mar" && *m == "march")
        })
        .map(|i| i as i8 + 1)
}

fn ordinal(word: &str) -> Option<i8> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    digits.parse::<i8>().ok().filter(|d| (1..=31).contains(d))
}

fn number_word(word: &str) -> Option<i64> {
    const WORDS: [&str; 10] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    word.parse()
        .ok()
        .or_else(|| WORDS.iter().position(|w| *w == word).map(|i| i as i64 + 1))
}

/// The first `weekday` strictly after `today`.
fn next_weekday(today: Date, weekday: Weekday) -> Date {
    let ahead = (weekday.to_monday_zero_offset() - today.weekday().to_monday_zero_offset()).rem_euclid(7);
    let ahead = if ahead == 0 { 7 } else { ahead };
    today
        .checked_add(jiff::Span::new().days(ahead))
        .expect("a date a week ahead")
}

/// Reads a booking request; `today` is in the owner's zone.
pub fn parse_request(text: &str, today: Date) -> BookingRequest {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, ':' | '-' | '/')))
        .filter(|w| !w.is_empty())
        .collect();
    let service = SERVICES
        .iter()
        .find(|(_, keys)| words.iter().any(|w| keys.contains(w)))
        .map(|(canonical, _)| *canonical);

    let mut date = None;
    let day = |n: i64| today.checked_add(jiff::Span::new().days(n)).ok();
    if lower.contains("day after tomorrow") {
        date = day(2);
    } else if words.contains(&"tomorrow") {
        date = day(1);
    } else if words.contains(&"today") || words.contains(&"tonight") {
        date = Some(today);
    }
    for (i, w) in words.iter().enumerate() {
        if date.is_some() {
            break;
        }
        if let Ok(d) = w.parse::<Date>() {
            date = Some(d);
        } else if let Some((_, weekday)) = WEEKDAYS.iter().find(|(name, _)| name == w) {
            date = Some(next_weekday(today, *weekday));
        } else if *w == "in" {
            if let (Some(n), Some(unit)) = (words.get(i + 1).and_then(|n| number_word(n)), words.get(i + 2)) {
                match *unit {
                    "day" | "days" => date = day(n),
                    "week" | "weeks" => date = day(7 * n),
                    _ => {}
                }
            }
        } else if *w == "week" && i > 0 && words[i - 1] == "next" {
            date = Some(next_weekday(today, Weekday::Monday));
        } else if let Some(m) = month(w) {
            let before = i.checked_sub(1).and_then(|j| ordinal(words[j]));
            let after = words.get(i + 1).and_then(|n| ordinal(n));
            if let Some(d) = after.or(before) {
                let mut candidate = Date::new(today.year(), m, d).ok();
                if candidate.is_some_and(|c| c < today) {
                    candidate = Date::new(today.year() + 1, m, d).ok();
                }
                date = candidate;
            }
        } else if *w == "the" {
            if let Some(d) = words.get(i + 1).and_then(|n| ordinal(n)).filter(|_| {
                words
                    .get(i + 1)
                    .is_some_and(|n| n.ends_with(|c: char| c.is_ascii_alphabetic()))
            }) {
                let this_month = Date::new(today.year(), today.month(), d).ok().filter(|c| *c > today);
                date = this_month.or_else(|| {
                    let next = today.first_of_month().checked_add(jiff::Span::new().months(1)).ok()?;
                    Date::new(next.year(), next.month(), d).ok()
                });
            }
        }
    }

    let part_of_day = if words.contains(&"morning") {
        PartOfDay::Morning
    } else if words.contains(&"afternoon") {
        PartOfDay::Afternoon
    } else if words.iter().any(|w| *w == "evening" || *w == "tonight") {
        PartOfDay::Evening
    } else {
        PartOfDay::Any
    };
    let hour = parse_hour(&words);
    BookingRequest {
        service,
        date,
        part_of_day,
        hour,
    }
}

/// "at 9", "9am", "9 am", "2 pm", "14:30", "noon".
fn parse_hour(words: &[&str]) -> Option<(i8, i8)> {
    if words.contains(&"noon") || words.contains(&"midday") {
        return Some((12, 0));
    }
    for (i, w) in words.iter().enumerate() {
        let (number, attached) = match w.strip_suffix("am").or_else(|| w.strip_suffix("pm")) {
            Some(n) if !n.is_empty() => (n, Some(w.ends_with("pm"))),
            _ => (*w, None),
        };
        let next = words.get(i + 1).copied();
        let pm = attached.or(match next {
            Some("am") => Some(false),
            Some("pm") => Some(true),
            _ => None,
        });
        let after_at = i > 0 && words[i - 1] == "at";
        let (h, m) = match number.split_once(':') {
            Some((h, m)) => (h.parse::<i8>().ok(), m.parse::<i8>().ok()),
            None => (number.parse::<i8>().ok(), Some(0)),
        };
        let (Some(mut h), Some(m)) = (h, m) else { continue };
        if pm.is_none() && !after_at && !number.contains(':') {
            continue;
        }
        if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
            continue;
        }
        match pm {
            Some(true) if h < 12 => h += 12,
            Some(false) if h == 12 => h = 0,
            // "at 2" means the afternoon at a garage.
            None if (1..=6).contains(&h) => h += 12,
            _ => {}
        }
        return Some((h, m));
    }
    None
}

/// A dealer's working week: slot start times on the hour.
#[derive(Debug, Clone)]
pub struct Workshop {
    pub dealer: String,
    pub zone: TimeZone,
}

impl Workshop {
    /// Start hours on a day: Monday-Friday 08:00-17:00, Saturday 09:00-12:00,
    /// closed on Sunday.
    pub fn opening_hours(date: Date) -> Option<(i8, i8)> {
        match date.weekday() {
            Weekday::Sunday => None,
            Weekday::Saturday => Some((9, 12)),
            _ => Some((8, 18)),
        }
    }

    /// Free slots on `date` within `part` (and at `hour` when given), after `now`,
    /// minus those `taken`. At most `limit`.
    pub fn free_slots(
        &self,
        date: Date,
        part: PartOfDay,
        hour: Option<(i8, i8)>,
        now: jiff::Timestamp,
        taken: &[jiff::Timestamp],
        limit: usize,
    ) -> Vec<jiff::Timestamp> {
        let Some((open, close)) = Workshop::opening_hours(date) else {
            return Vec::new();
        };
        let (from, to) = part.hours();
        let mut slots = Vec::new();
        for h in open.max(from)..close.min(to) {
            if let Some((wanted, _)) = hour {
                if h != wanted {
                    continue;
                }
            }
            let Ok(at) = DateTime::from_parts(date, Time::constant(h, 0, 0, 0)).to_zoned_datetime(self.zone.clone())
            else {
                continue;
            };
            let at = at.timestamp();
            if at > now && !taken.contains(&at) {
                slots.push(at);
            }
            if slots.len() == limit {
                break;
            }
        }
        slots
    }

    /// Whether `at` is a slot this workshop offers at all.
    pub fn is_slot(&self, at: jiff::Timestamp) -> bool {
        let local = at.to_zoned_datetime(self.zone.clone());
        let Some((open, close)) = Workshop::opening_hours(local.date()) else {
            return false;
        };
        local.minute() == 0 && local.second() == 0 && (open..close).contains(&local.hour())
    }
}

/// "Friday 4 December at 9:00" in the owner's zone.
pub fn spoken_time(at: jiff::Timestamp, zone: &TimeZone) -> String {
    let local = at.to_zoned_datetime(zone.clone());
    local.strftime("%A %-d %B at %-H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        // A Wednesday.
        Date::constant(2026, 11, 25)
    }

    #[test]
    fn the_issue_example_is_a_brake_inspection_on_the_coming_friday_morning() {
        let r = parse_request("book a brake inspection next friday morning", today());
        assert_eq!(r.service, Some("brake inspection"));
        assert_eq!(r.date, Some(Date::constant(2026, 11, 27)));
        assert_eq!(r.part_of_day, PartOfDay::Morning);
        assert_eq!(r.hour, None);
    }

    #[test]
    fn day_words_are_read_relative_to_today() {
        let cases = [
            ("can i get an oil change tomorrow", Some(Date::constant(2026, 11, 26))),
            ("the day after tomorrow please", Some(Date::constant(2026, 11, 27))),
            (
                "schedule my annual service on wednesday",
                Some(Date::constant(2026, 12, 2)),
            ),
            ("in 3 days", Some(Date::constant(2026, 11, 28))),
            ("sometime next week", Some(Date::constant(2026, 11, 30))),
            ("on december 4th at 10am", Some(Date::constant(2026, 12, 4))),
            ("on the 3rd", Some(Date::constant(2026, 12, 3))),
            ("2027-01-15", Some(Date::constant(2027, 1, 15))),
            ("march 2", Some(Date::constant(2027, 3, 2))),
            ("book a service", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_request(text, today()).date, want, "{text}");
        }
    }

    #[test]
    fn hours_and_services_are_read_in_the_words_drivers_use() {
        assert_eq!(parse_request("at 9", today()).hour, Some((9, 0)));
        assert_eq!(parse_request("2 pm", today()).hour, Some((14, 0)));
        assert_eq!(parse_request("around 14:30", today()).hour, Some((14, 30)));
        assert_eq!(parse_request("at 3", today()).hour, Some((15, 0)));
        assert_eq!(parse_request("noon", today()).hour, Some((12, 0)));
        assert_eq!(parse_request("i have 3 kids", today()).hour, None);
        assert_eq!(
            parse_request("my tyres need rotating", today()).service,
            Some("tire service")
        );
        assert_eq!(
            parse_request("book the car in for servicing", today()).service,
            Some("annual service")
        );
        assert_eq!(canonical_service("Brakes"), Some("brake inspection"));
        assert_eq!(canonical_service("a spa day"), None);
    }

    #[test]
    fn free_slots_keep_opening_hours_the_part_of_the_day_and_what_is_taken() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let shop = Workshop {
            dealer: "d".into(),
            zone: zone.clone(),
        };
        let friday = Date::constant(2026, 11, 27);
        let now = jiff::Timestamp::constant(1_764_000_000, 0);
        let nine = DateTime::from_parts(friday, Time::constant(9, 0, 0, 0))
            .to_zoned_datetime(zone.clone())
            .unwrap()
            .timestamp();
        let slots = shop.free_slots(friday, PartOfDay::Morning, None, now, &[nine], 10);
        let hours: Vec<i8> = slots.iter().map(|s| s.to_zoned_datetime(zone.clone()).hour()).collect();
        assert_eq!(hours, vec![8, 10, 11]);
        assert!(shop
            .free_slots(Date::constant(2026, 11, 29), PartOfDay::Any, None, now, &[], 10)
            .is_empty());
        assert!(shop.is_slot(nine));
        assert!(!shop.is_slot(nine.checked_add(jiff::SignedDuration::from_mins(30)).unwrap()));
        assert_eq!(spoken_time(nine, &zone), "Friday 27 November at 9:00");
    }
}
