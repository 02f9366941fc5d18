//! Local answers: what the car says for an in-scope `local` intent, built from the
//! knowledge base and the live vehicle signals.
//!
//! An answer is spoken, so it is at most two whole sentences; the full article
//! stays available, and every answer cites the ids of the articles it rests on.
//! Live values are spoken in the units of the car's market.

use knowledge::{Article, KnowledgeBase, KnowledgeError, Query};
use models::Intent;
use serde::Serialize;

use crate::config::Config;
use crate::vehicle::{ChargingState, Units, VehicleState};

/// What the car says, and what it rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Answer {
    pub text: String,
    /// Ids of the articles the answer rests on.
    pub sources: Vec<String>,
    /// The full article behind the answer, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article: Option<Article>,
}

impl Answer {
    fn said(text: impl Into<String>, sources: &[&str]) -> Answer {
        Answer {
            text: text.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            article: None,
        }
    }

    fn from_article(article: Article) -> Answer {
        Answer {
            text: article.summary.clone(),
            sources: vec![article.id.clone()],
            article: Some(article),
        }
    }
}

/// Everything an answer may draw on.
pub struct AnswerContext<'a> {
    pub config: &'a Config,
    pub state: &'a VehicleState,
    pub kb: &'a KnowledgeBase,
    pub units: Units,
    pub today: jiff::civil::Date,
}

impl AnswerContext<'_> {
    fn search(&self, text: &str, intent: Intent, limit: usize) -> Result<Vec<Article>, KnowledgeError> {
        let vehicle = self.vehicle_filter();
        Ok(self
            .kb
            .search(&Query {
                text,
                intent: Some(intent.as_str()),
                vehicle: &vehicle,
                limit,
            })?
            .into_iter()
            .map(|h| h.article)
            .collect())
    }

    fn vehicle_filter(&self) -> knowledge::VehicleFilter {
        let mut filter = self.state.filter();
        filter.model.get_or_insert_with(|| self.config.vehicle.model.clone());
        filter.year.get_or_insert(self.config.vehicle.year);
        filter.market.get_or_insert_with(|| self.config.vehicle.market.clone());
        filter
    }

    fn article(&self, id: &str) -> Result<Option<Article>, KnowledgeError> {
        self.kb.article(id)
    }

    /// The best article for the utterance among those tagged with `intent`.
    fn best_article(&self, text: &str, intent: Intent) -> Result<Answer, KnowledgeError> {
        match self.search(text, intent, 1)?.into_iter().next() {
            Some(article) => Ok(Answer::from_article(article)),
            None => Ok(Answer::said(
                "I don't have an answer for that in the car's manual. I can pass it to the cloud assistant if you like.",
                &[],
            )),
        }
    }
}

/// The local answer for `intent` (a `local` route other than the dialogue labels).
pub fn local_answer(ctx: &AnswerContext<'_>, intent: Intent, text: &str) -> Result<Answer, KnowledgeError> {
    match intent {
        Intent::FuelLevel => Ok(fuel_level(ctx)),
        Intent::TirePressure => Ok(tire_pressure(ctx)),
        Intent::VehicleHealth => vehicle_health(ctx),
        Intent::LastService => Ok(last_service(ctx)),
        Intent::OilChangeWhen => Ok(oil_change_when(ctx)),
        Intent::CurrentLocation => Ok(current_location(ctx)),
        Intent::WarningLight => warning_light(ctx, text),
        Intent::FuelEconomy => fuel_economy(ctx, text),
        _ => ctx.best_article(text, intent),
    }
}

fn percent(value: f64) -> String {
    format!("{:.0}%", value.clamp(0.0, 100.0))
}

fn fuel_level(ctx: &AnswerContext<'_>) -> Answer {
    let s = ctx.state;
    let u = ctx.units;
    let source = ["fuel-range-estimate"];
    let fuel = match (s.fuel_percent, s.fuel_range_km) {
        (Some(p), Some(r)) => Some(format!("{} fuel, about {}", percent(p), u.distance(r))),
        (Some(p), None) => Some(format!("{} fuel", percent(p))),
        _ => None,
    };
    let battery = match (s.battery_percent, s.electric_range_km) {
        (Some(p), Some(r)) => Some(format!(
            "the battery is at {}, good for {} electric",
            percent(p),
            u.distance(r)
        )),
        (Some(p), None) => Some(format!("the battery is at {}", percent(p))),
        _ => None,
    };
    let charging = match s.charging {
        Some(ChargingState::Charging) => " and charging",
        _ => "",
    };
    let first = match (fuel, battery) {
        (Some(f), Some(b)) => format!("You have {f}, and {b}{charging}."),
        (Some(f), None) => format!("You have {f}."),
        (None, Some(b)) => format!("{}{charging}; I can't read the fuel gauge right now.", capitalise(&b)),
        (None, None) => return Answer::said("I can't read the fuel or battery level right now.", &source),
    };
    let low = s.fuel_percent.is_some_and(|p| p <= ctx.config.vehicle.low_fuel_percent);
    let text = if low {
        format!("{first} Fuel is low, so fill up soon.")
    } else {
        first
    };
    Answer::said(text, &source)
}

fn tire_pressure(ctx: &AnswerContext<'_>) -> Answer {
    let u = ctx.units;
    let recommended = ctx.config.vehicle.recommended_tire_kpa;
    let source = ["tire-pressure-recommended"];
    let Some(tires) = ctx.state.tire_pressure_kpa else {
        return Answer::said(
            format!(
                "I can't read the tyre sensors right now. The recommended pressure is {} cold.",
                u.pressure(recommended)
            ),
            &source,
        );
    };
    let low: Vec<(&str, f64)> = tires
        .each()
        .into_iter()
        .filter(|(_, kpa)| *kpa <= recommended - ctx.config.vehicle.low_tire_margin_kpa)
        .collect();
    let text = match low.as_slice() {
        [] => {
            let (min, max) = tires
                .each()
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), (_, p)| (lo.min(*p), hi.max(*p)));
            let range = if u.pressure_number(min) == u.pressure_number(max) {
                format!("at {}", u.pressure(min))
            } else {
                format!("between {} and {}", u.pressure_number(min), u.pressure(max))
            };
            format!(
                "All four tyres look fine, {range}. The recommended pressure is {} cold.",
                u.pressure(recommended)
            )
        }
        [(wheel, kpa)] => format!(
            "{} is at {}, {} below the recommended {}. Top it up soon.",
            capitalise(wheel),
            u.pressure(*kpa),
            u.pressure_number(recommended - kpa),
            u.pressure_number(recommended)
        ),
        several => format!(
            "{} are low, at {} {} against the recommended {}. Top them up soon.",
            capitalise(&join_words(several.iter().map(|(w, _)| w.to_string()).collect())),
            join_words(several.iter().map(|(_, p)| u.pressure_number(*p)).collect()),
            u.pressure_name(),
            u.pressure_number(recommended)
        ),
    };
    Answer::said(text, &source)
}

/// Known meanings of common fault codes, to say more than the code.
const DTC_MEANINGS: &[(&str, &str)] = &[
    ("P0420", "catalytic converter efficiency low"),
    ("P0300", "engine misfire"),
    ("P0171", "engine running lean"),
    ("P0455", "fuel vapour leak, often the filler seal"),
    ("P0128", "engine slow to warm up"),
    ("P0A80", "hybrid battery pack needs attention"),
    ("P0AA6", "high-voltage insulation fault"),
    ("C0035", "wheel speed sensor fault"),
    ("U0100", "lost communication with the engine computer"),
    ("B0001", "driver airbag circuit fault"),
];

fn light_article_id(name: &str) -> String {
    format!("light-{}", name.trim().to_lowercase().replace(['_', ' '], "-"))
}

fn vehicle_health(ctx: &AnswerContext<'_>) -> Result<Answer, KnowledgeError> {
    let s = ctx.state;
    let mut sources = vec!["health-check".to_string()];
    let mut lights = Vec::new();
    let mut first_light: Option<Article> = None;
    for name in &s.warning_lights {
        match ctx.article(&light_article_id(name))? {
            Some(article) => {
                lights.push(short_title(&article.title));
                sources.push(article.id.clone());
                first_light.get_or_insert(article);
            }
            None => lights.push(format!("{} warning", name.replace('_', " "))),
        }
    }
    let codes: Vec<String> = s
        .dtcs
        .iter()
        .map(
            |code| match DTC_MEANINGS.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)) {
                Some((c, meaning)) => format!("{c}, {meaning}"),
                None => code.clone(),
            },
        )
        .collect();
    if !s.dtcs.is_empty() {
        sources.push("health-fault-codes".to_string());
    }
    let text = match (lights.is_empty(), codes.is_empty()) {
        (true, true) => {
            let service = next_service(ctx).map(|due| format!(" {due}")).unwrap_or_default();
            format!("No warnings are on and no fault codes are stored, so everything looks fine.{service}")
        }
        _ => {
            let mut first = String::new();
            if !lights.is_empty() {
                let verb = if lights.len() == 1 { "is" } else { "are" };
                first.push_str(&format!("The {} {verb} on", join_words(lights)));
            }
            if !codes.is_empty() {
                let stored = if codes.len() == 1 { "code" } else { "codes" };
                if first.is_empty() {
                    first.push_str(&format!(
                        "Fault {stored} {} {} stored",
                        join_words(codes.clone()),
                        if codes.len() == 1 { "is" } else { "are" }
                    ));
                } else {
                    first.push_str(&format!(
                        ", and fault {stored} {} {} stored",
                        join_words(codes.clone()),
                        if codes.len() == 1 { "is" } else { "are" }
                    ));
                }
            } else {
                first.push_str(", and no fault codes are stored");
            }
            first.push('.');
            match &first_light {
                Some(article) => format!("{first} {}", first_sentence(&article.summary)),
                None => format!("{first} Have the car checked soon."),
            }
        }
    };
    Ok(Answer {
        text,
        sources,
        article: first_light,
    })
}

/// "Tyre pressure warning light (horseshoe ...)" -> "tyre pressure warning light".
fn short_title(title: &str) -> String {
    let base = title.split(" (").next().unwrap_or(title).trim();
    let mut chars = base.chars();
    match chars.next() {
        Some(c)
            if base
                .split_whitespace()
                .next()
                .is_some_and(|w| w.chars().skip(1).all(|c| c.is_lowercase())) =>
        {
            c.to_lowercase().chain(chars).collect()
        }
        _ => base.to_string(),
    }
}

fn spoken_date(date: jiff::civil::Date) -> String {
    date.strftime("%-d %B %Y").to_string()
}

fn last_service(ctx: &AnswerContext<'_>) -> Answer {
    let source = ["last-service-record"];
    let Some(service) = &ctx.state.last_service else {
        return Answer::said("There's no service record in the car yet.", &source);
    };
    let work = service
        .work
        .as_deref()
        .filter(|w| !w.trim().is_empty())
        .map(|w| format!(": {}", w.trim().trim_end_matches('.')))
        .unwrap_or_default();
    Answer::said(
        format!(
            "Your last service was on {} at {}{work}.",
            spoken_date(service.date),
            ctx.units.distance(service.odometer_km)
        ),
        &source,
    )
}

/// When the next service is due, from the last one and the interval.
fn next_service(ctx: &AnswerContext<'_>) -> Option<String> {
    let service = ctx.state.last_service.as_ref()?;
    let v = &ctx.config.vehicle;
    let due_date = service
        .date
        .checked_add(jiff::Span::new().months(v.service_interval_months))
        .ok()?;
    let due_km = service.odometer_km + v.service_interval_km;
    let days_left = ctx.today.until(due_date).ok()?.get_days();
    let km_left = ctx.state.odometer_km.map(|odo| due_km - odo);
    let u = ctx.units;
    let overdue_by = if days_left < 0 {
        Some(format!("{} days", -days_left))
    } else {
        km_left.filter(|k| *k < 0.0).map(|k| u.distance(-k))
    };
    let sentence = match overdue_by {
        Some(by) => format!("Your service is overdue by {by}, so book one soon."),
        None => {
            let distance = km_left.map(|k| format!(" or {}", u.distance(k))).unwrap_or_default();
            format!(
                "Your next service is due by {} or at {}, whichever comes first: in {days_left} days{distance}.",
                spoken_date(due_date),
                u.distance(due_km)
            )
        }
    };
    Some(sentence)
}

fn oil_change_when(ctx: &AnswerContext<'_>) -> Answer {
    let source = ["oil-change-interval"];
    match next_service(ctx) {
        Some(due) => Answer::said(due.replacen("next service", "next oil change", 1), &source),
        None => Answer::said(
            format!(
                "There's no service record in the car, so I can't work out the date. The oil is changed every {} months or {}.",
                ctx.config.vehicle.service_interval_months,
                ctx.units.distance(ctx.config.vehicle.service_interval_km)
            ),
            &source,
        ),
    }
}

fn current_location(ctx: &AnswerContext<'_>) -> Answer {
    let source = ["location-current"];
    match &ctx.state.location {
        Some(loc) => {
            let place = loc.name.as_deref().map(|n| format!("on {n}, ")).unwrap_or_default();
            Answer::said(
                format!("You're {place}at {:.4}, {:.4}.", loc.latitude, loc.longitude),
                &source,
            )
        }
        None => Answer::said("I can't get a GPS position right now.", &source),
    }
}

fn warning_light(ctx: &AnswerContext<'_>, text: &str) -> Result<Answer, KnowledgeError> {
    let hits = ctx.search(text, Intent::WarningLight, 5)?;
    let active: Vec<String> = ctx.state.warning_lights.iter().map(|n| light_article_id(n)).collect();
    // A light that is on now, among the close matches, is the likeliest meaning;
    // an utterance that names nothing ("what's that light?") means the light on now.
    let names_nothing =
        knowledge::fts_query(text).is_none() || hits.first().is_none_or(|top| !top.id.starts_with("light-"));
    let choice = hits
        .iter()
        .take(3)
        .find(|a| active.contains(&a.id))
        .cloned()
        .or_else(|| {
            if names_nothing || is_deictic(text) {
                active.iter().find_map(|id| ctx.article(id).ok().flatten())
            } else {
                None
            }
        })
        .or_else(|| hits.into_iter().next());
    Ok(match choice {
        Some(article) => Answer::from_article(article),
        None => Answer::said("I couldn't find that warning in the car's manual.", &[]),
    })
}

/// "that light", "this symbol", "the light that just came on": a light the driver
/// is looking at, not one they name.
fn is_deictic(text: &str) -> bool {
    let t = text.to_lowercase();
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let named = words.iter().any(|w| {
        !matches!(
            *w,
            "what"
                | "whats"
                | "s"
                | "is"
                | "that"
                | "this"
                | "the"
                | "a"
                | "light"
                | "lights"
                | "symbol"
                | "icon"
                | "on"
                | "came"
                | "come"
                | "just"
                | "why"
                | "does"
                | "mean"
                | "dash"
                | "dashboard"
                | "warning"
                | "there"
                | "up"
                | "lit"
                | "my"
                | "it"
                | "has"
                | "gone"
                | "turned"
                | "do"
                | "i"
                | "hey"
                | "um"
                | "uh"
                | "so"
        )
    });
    !named
}

fn fuel_economy(ctx: &AnswerContext<'_>, text: &str) -> Result<Answer, KnowledgeError> {
    let best = ctx.search(text, Intent::FuelEconomy, 1)?.into_iter().next();
    // Questions about the figures (rather than tips or modes) get the live ones.
    let about_my_driving = best
        .as_ref()
        .is_some_and(|a| a.id == "fuel-economy-trip" || a.id == "fuel-economy-rated");
    let u = ctx.units;
    match (about_my_driving, ctx.state.trip_fuel_l_per_100km) {
        (true, Some(fuel)) => {
            let electric = ctx
                .state
                .trip_kwh_per_100km
                .map(|kwh| format!(", plus {} from the battery", u.electricity(kwh)))
                .unwrap_or_default();
            let live = format!("This trip you're averaging {}{electric}.", u.economy(fuel));
            Ok(match best {
                // "Is that good?": the live figure, then the rating to compare with.
                Some(rated) if rated.id == "fuel-economy-rated" => Answer {
                    text: format!("{live} {}", first_sentence(&rated.summary)),
                    sources: vec!["fuel-economy-trip".to_string(), rated.id.clone()],
                    article: Some(rated),
                },
                _ => Answer::said(live, &["fuel-economy-trip"]),
            })
        }
        _ => Ok(match best {
            Some(article) => Answer::from_article(article),
            None => Answer::said("I can't read the trip computer right now.", &["fuel-economy-trip"]),
        }),
    }
}

pub fn first_sentence(text: &str) -> &str {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()) {
            return &text[..=i];
        }
    }
    text
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "a", "a and b", "a, b and c".
fn join_words(items: Vec<String>) -> String {
    match items.len() {
        0 => String::new(),
        1 => items.into_iter().next().unwrap_or_default(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_speak_lists_and_sentences() {
        assert_eq!(join_words(vec!["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(first_sentence("Oil is 2.4 litres. Then more."), "Oil is 2.4 litres.");
        assert_eq!(
            short_title("Tyre pressure warning light (horseshoe)"),
            "tyre pressure warning light"
        );
        assert_eq!(short_title("ABS warning light"), "ABS warning light");
        assert!(is_deictic("what's that light on the dash"));
        assert!(!is_deictic("what's the red oil can light"));
    }
}
