//! An article and where it applies.

use serde::{Deserialize, Serialize};

/// One answer a driver can be given, with the full text behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    /// Stable id, cited in answers (`warning-light-oil-pressure`).
    pub id: String,
    pub title: String,
    /// The spoken answer: one or two whole sentences.
    pub summary: String,
    /// The full article, for the screen or a follow-up.
    pub body: String,
    /// Contract intents this article answers.
    pub intents: Vec<String>,
    /// Other names drivers use (`check engine light`, `engine management light`).
    pub aliases: Vec<String>,
    /// Search words that are not names: colours, shapes, parts.
    pub keywords: Vec<String>,
    pub applies: Applicability,
    pub locale: String,
    pub version: u64,
    /// `file:line` of its source, for fleet ops chasing a wrong answer.
    pub source: String,
}

impl Article {
    /// The text whose embedding stands for the article: what it is called and
    /// what it says first, not the whole body (a mean over a long body says little).
    pub fn embedding_text(&self) -> String {
        let mut text = self.title.clone();
        for alias in &self.aliases {
            text.push_str(". ");
            text.push_str(alias);
        }
        text.push_str(". ");
        text.push_str(&self.summary);
        text
    }

    /// Each way the article is said on its own (its title, each alias, its
    /// summary), embedded one by one: a question close to any of them is close
    /// to the article.
    pub fn field_texts(&self) -> Vec<&str> {
        std::iter::once(self.title.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(std::iter::once(self.summary.as_str()))
            .collect()
    }
}

/// Which vehicles an article is for. An empty list means any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applicability {
    pub models: Vec<String>,
    /// Inclusive model years.
    pub years: Option<(u16, u16)>,
    pub trims: Vec<String>,
    pub markets: Vec<String>,
}

/// The vehicle asking. A `None` matches any article.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VehicleFilter {
    pub model: Option<String>,
    pub year: Option<u16>,
    pub trim: Option<String>,
    pub market: Option<String>,
}

impl Applicability {
    pub fn matches(&self, vehicle: &VehicleFilter) -> bool {
        fn listed(list: &[String], value: &Option<String>) -> bool {
            match value {
                Some(v) if !list.is_empty() => list.iter().any(|x| x.eq_ignore_ascii_case(v)),
                _ => true,
            }
        }
        let year_ok = match (self.years, vehicle.year) {
            (Some((from, to)), Some(y)) => (from..=to).contains(&y),
            _ => true,
        };
        listed(&self.models, &vehicle.model)
            && year_ok
            && listed(&self.trims, &vehicle.trim)
            && listed(&self.markets, &vehicle.market)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applicability_matches_listed_values_and_treats_empty_as_any() {
        let applies = Applicability {
            models: vec!["Voyager".into()],
            years: Some((2024, 2025)),
            trims: vec![],
            markets: vec!["US".into(), "CA".into()],
        };
        let car = |model: &str, year, market: &str| VehicleFilter {
            model: Some(model.into()),
            year: Some(year),
            trim: Some("Touring".into()),
            market: Some(market.into()),
        };
        assert!(applies.matches(&car("voyager", 2025, "US")));
        assert!(!applies.matches(&car("Voyager", 2023, "US")));
        assert!(!applies.matches(&car("Voyager", 2025, "UK")));
        assert!(!applies.matches(&car("Other", 2025, "US")));
        assert!(applies.matches(&VehicleFilter::default()));
    }
}
