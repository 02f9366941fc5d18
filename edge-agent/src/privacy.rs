//! What may leave the car. Before an escalation is queued for the cloud, phone
//! numbers, e-mail addresses and payment-card numbers (Luhn-checked) are redacted
//! from the utterance, the recent turns and the vehicle snapshot, and precise
//! coordinates are kept only for the intents that need them. Each rule is a
//! setting (`[privacy]`).
//!
//! **Invariant:** everything bound for the cloud passes through [`Privacy::scrub`]
//! first; the raw text stays in the car's own history only.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::config::PrivacyConfig;

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b").expect("valid"));
/// A run of digits with the separators people and recognisers put in numbers:
/// spaces, dashes, dots, brackets, a leading plus.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\+?\(?\d[\d\s().-]{5,}\d").expect("valid"));
/// An ISO date (the vehicle snapshot's service dates, timestamps): eight digits,
/// but never a phone number.
static ISO_DATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("valid"));

pub const PHONE: &str = "[phone]";
pub const EMAIL_ADDRESS: &str = "[email]";
pub const CARD: &str = "[card]";

/// How much was removed, for the logs and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redactions {
    pub phones: usize,
    pub emails: usize,
    pub cards: usize,
}

#[derive(Debug, Clone)]
pub struct Privacy {
    config: PrivacyConfig,
}

/// The Luhn checksum of a digit string (payment cards have a valid one).
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else { return false };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

impl Privacy {
    pub fn new(config: PrivacyConfig) -> Privacy {
        Privacy { config }
    }

    pub fn cloud_consent(&self) -> bool {
        self.config.cloud_consent
    }

    /// Redacts one text.
    pub fn redact(&self, text: &str, counts: &mut Redactions) -> String {
        let mut out = if self.config.redact_email_addresses {
            EMAIL
                .replace_all(text, |_: &regex::Captures| {
                    counts.emails += 1;
                    EMAIL_ADDRESS
                })
                .into_owned()
        } else {
            text.to_string()
        };
        out = DIGIT_RUN
            .replace_all(&out, |caps: &regex::Captures| {
                let run = &caps[0];
                let digits: String = run.chars().filter(char::is_ascii_digit).collect();
                if ISO_DATE.is_match(run) {
                    run.to_string()
                } else if self.config.redact_payment_cards && (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
                    counts.cards += 1;
                    CARD.to_string()
                } else if self.config.redact_phone_numbers && (7..=15).contains(&digits.len()) {
                    counts.phones += 1;
                    PHONE.to_string()
                } else {
                    run.to_string()
                }
            })
            .into_owned();
        out
    }

    /// Redacts every string in a JSON value, in place.
    pub fn redact_json(&self, value: &mut Value, counts: &mut Redactions) {
        match value {
            Value::String(s) => *s = self.redact(s, counts),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v, counts)),
            Value::Object(fields) => fields.values_mut().for_each(|v| self.redact_json(v, counts)),
            _ => {}
        }
    }

    /// Coarsens `location` (`{"name", "latitude", "longitude"}`) unless the intent
    /// needs the precise one.
    pub fn place_location(&self, vehicle: &mut Value, intent: &str) {
        if self.config.precise_location_intents.iter().any(|i| i == intent) {
            return;
        }
        let Some(location) = vehicle.get_mut("location").and_then(Value::as_object_mut) else {
            return;
        };
        let scale = 10f64.powi(self.config.coarse_decimals as i32);
        for key in ["latitude", "longitude"] {
            if let Some(v) = location.get(key).and_then(Value::as_f64) {
                location.insert(key.to_string(), Value::from((v * scale).round() / scale));
            }
        }
        // "Market Street, San Francisco" -> "San Francisco".
        if let Some(Value::String(name)) = location.get_mut("name") {
            *name = name.rsplit(',').next().unwrap_or_default().trim().to_string();
        }
    }

    /// Applies every rule to an outgoing escalation payload (`utterance`,
    /// `recent_turns`, `vehicle`, `intent`).
    pub fn scrub(&self, payload: &mut Value) -> Redactions {
        let mut counts = Redactions::default();
        let intent = payload
            .get("intent")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for key in ["utterance", "recent_turns", "vehicle"] {
            if let Some(v) = payload.get_mut(key) {
                self.redact_json(v, &mut counts);
            }
        }
        if let Some(vehicle) = payload.get_mut("vehicle") {
            self.place_location(vehicle, &intent);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn privacy() -> Privacy {
        Privacy::new(Config::embedded().privacy)
    }

    #[test]
    fn phone_numbers_in_international_formats_are_redacted() {
        let p = privacy();
        for text in [
            "call me on +44 20 7946 0958 please",
            "my number is (555) 123-4567",
            "ring 555-123-4567",
            "it's +1-202-555-0143",
            "07700 900123 is my mobile",
            "+49 30 901820",
            "0033 1 42 68 53 00",
        ] {
            let mut counts = Redactions::default();
            let out = p.redact(text, &mut counts);
            assert_eq!(counts.phones, 1, "{text} -> {out}");
            assert!(
                out.contains(PHONE) && !out.chars().filter(char::is_ascii_digit).any(|_| true),
                "{text} -> {out}"
            );
        }
    }

    #[test]
    fn cards_need_a_valid_luhn_and_ordinary_numbers_stay() {
        let p = privacy();
        let mut counts = Redactions::default();
        let out = p.redact("charge it to 4111 1111 1111 1111 or 5500-0000-0000-0004", &mut counts);
        assert_eq!(counts.cards, 2, "{out}");
        assert_eq!(out, "charge it to [card] or [card]");
        let mut counts = Redactions::default();
        // 16 digits failing Luhn is not a card; it is too long for a phone: kept.
        let out = p.redact("order 4111 1111 1111 1112", &mut counts);
        assert_eq!(counts, Redactions::default(), "{out}");
        for text in [
            "book it for 2025",
            "I've done 23,480 km",
            "at 10:30 tomorrow",
            "35 psi",
            "P0420",
            "last service on 2026-06-28",
            "sent at 2026-11-25T02:00:00Z",
        ] {
            let mut counts = Redactions::default();
            assert_eq!(p.redact(text, &mut counts), text);
            assert_eq!(counts, Redactions::default());
        }
    }

    #[test]
    fn emails_are_redacted_and_rules_can_be_switched_off() {
        let mut counts = Redactions::default();
        assert_eq!(
            privacy().redact("mail jane.doe+car@example.co.uk now", &mut counts),
            "mail [email] now"
        );
        let mut config = Config::embedded().privacy;
        config.redact_email_addresses = false;
        config.redact_phone_numbers = false;
        let kept = Privacy::new(config).redact("jane@example.com 555-123-4567", &mut counts);
        assert_eq!(kept, "jane@example.com 555-123-4567");
    }

    #[test]
    fn coordinates_are_coarsened_unless_the_intent_needs_them() {
        let p = privacy();
        let vehicle = serde_json::json!({"location": {"name": "Market Street, San Francisco", "latitude": 37.779312, "longitude": -122.419318}});
        let mut coarse = vehicle.clone();
        p.place_location(&mut coarse, "book_service");
        assert_eq!(coarse["location"]["latitude"], 37.78);
        assert_eq!(coarse["location"]["longitude"], -122.42);
        assert_eq!(coarse["location"]["name"], "San Francisco");
        let mut precise = vehicle.clone();
        p.place_location(&mut precise, "roadside_assistance");
        assert_eq!(precise, vehicle);
    }
}
