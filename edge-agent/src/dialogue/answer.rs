//! Local answers: what the car says for an in-scope `local` intent, built from the
//! knowledge base and the live vehicle signals.
//!
//! An answer is spoken, so it is at most two whole sentences; the full article
//! stays available, and every answer cites the ids of the articles it rests on,
//! or says the manual does not have that: an article is spoken only when it is
//! tagged with the intent and close enough to the question.
//! Live values are spoken in the units of the car's market.

use knowledge::{Article, Hit, KnowledgeBase, KnowledgeError, Query};
use models::Intent;
use serde::Serialize;

use super::car_words;
use super::follow_up::{self, Context};
use super::slots::{normalise, Energy, Slots, WHEELS};
use super::spoken::{self, capitalise};
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
    pub(super) fn said(text: impl Into<String>, sources: &[&str]) -> Answer {
        Answer {
            text: text.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            article: None,
        }
    }

    pub(super) fn from_article(article: Article) -> Answer {
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
    /// The market's words, and its way of saying dates.
    pub wording: spoken::Wording,
    pub today: jiff::civil::Date,
    /// What the utterance says beyond its intent.
    pub slots: &'a Slots,
    /// What the turn before was about, if it is recent.
    pub previous: Option<&'a Context>,
}

impl AnswerContext<'_> {
    /// The closest articles that fit `intent` and clear the calibrated evidence
    /// ([`AnswerContext::speaks`]): an article tagged with another intent, or a
    /// weak match, is never spoken.
    fn search(&self, text: &str, intent: Intent, limit: usize) -> Result<Vec<Article>, KnowledgeError> {
        Ok(self
            .closest(text, intent, limit)?
            .into_iter()
            .filter(|hit| self.speaks(hit, text))
            .map(|hit| hit.article)
            .collect())
    }

    /// Whether the evidence is enough for an article to be spoken, and the
    /// article says every part of the car the question names.
    fn speaks(&self, hit: &Hit, text: &str) -> bool {
        speaks(&self.config.knowledge, hit, text)
    }

    /// The closest articles tagged with `intent`, whatever their score.
    fn closest(&self, text: &str, intent: Intent, limit: usize) -> Result<Vec<Hit>, KnowledgeError> {
        let vehicle = self.vehicle_filter();
        self.kb.search_tagged(&Query {
            text,
            intent: Some(intent.as_str()),
            vehicle: &vehicle,
            limit: limit.max(1),
        })
    }

    fn vehicle_filter(&self) -> knowledge::VehicleFilter {
        vehicle_filter(self.config, self.state)
    }

    /// What a fault code the driver read out means, and whether the car has it
    /// stored now.
    fn fault_code(&self, code: &str) -> Result<Answer, KnowledgeError> {
        let stored = self.state.dtcs.iter().any(|c| c.eq_ignore_ascii_case(code));
        let now = if stored {
            "The car has it stored now."
        } else {
            "The car doesn't have it stored now."
        };
        let source = "health-fault-codes";
        let text = match DTC_MEANINGS.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)) {
            Some((_, meaning)) => format!("{code} means {meaning}. {now}"),
            None => {
                let general = self.article(source)?.map(|a| first_sentence(&a.summary).to_string());
                format!("I don't know {code} itself. {}", general.unwrap_or_default())
            }
        };
        Ok(Answer::said(text.trim_end(), &[source]))
    }

    fn article(&self, id: &str) -> Result<Option<Article>, KnowledgeError> {
        self.kb.article(id)
    }

    /// The article among those tagged with `intent` whose name or alias the
    /// utterance says word for word; the longest such name wins. Only a
    /// question about a light may leave out "light" ("what's the petrol light"
    /// is "petrol"; "how big is the petrol tank" names no light).
    fn named_article(&self, text: &str, intent: Intent) -> Result<Option<Article>, KnowledgeError> {
        let said = format!(" {} ", normalise(text));
        self.kb
            .best_named(Some(intent.as_str()), &self.vehicle_filter(), |name| {
                let name = name.split(" (").next().unwrap_or(name);
                let core = if intent == Intent::WarningLight {
                    name_core(name)
                } else {
                    normalise(name)
                };
                (core.len() >= 3 && says(&said, &core)).then_some(core.len())
            })
    }

    /// The best article for the utterance among those tagged with `intent`: one
    /// it names exactly, else the closest that clears the calibrated score (with
    /// a pronoun read as the last turn's subject, if need be), else the honest
    /// "not in the manual" (and the dialogue offers the cloud).
    fn best_article(&self, text: &str, intent: Intent) -> Result<Answer, KnowledgeError> {
        if let Some(article) = self.named_article(text, intent)? {
            return Ok(Answer::from_article(article));
        }
        // "How often should they be rotated" after a tyre answer, "where is the
        // switch" after the wipers: the pronoun, or the part named only by
        // "the", is what the last turn was about.
        let title = match self.previous.and_then(|p| p.article.as_deref()) {
            Some(id) => self.article(id)?.map(|a| a.title),
            None => None,
        };
        let resolved = self
            .previous
            .and_then(|p| follow_up::with_subject(text, p.intent, title.as_deref()));
        for asked in resolved.as_deref().into_iter().chain([text]) {
            if let Some(article) = self.search(asked, intent, 1)?.into_iter().next() {
                return Ok(Answer::from_article(article));
            }
        }
        Ok(Answer::said(NOT_IN_THE_MANUAL, &[]))
    }
}

/// Whether `hit` clears one of the calibrated bars (`knowledge.min_score` or
/// `knowledge.min_coverage`) and says every part of the car `text` names.
fn speaks(k: &crate::config::KnowledgeConfig, hit: &Hit, text: &str) -> bool {
    (hit.closeness >= k.min_score || hit.coverage >= k.min_coverage) && mentions_parts_named(&hit.article, text)
}

/// Whether `article` says every part of a car that `text` names, in either
/// market's words, in any form of the word ("light" in "lighting") and by its
/// last word when it has several ("battery" for "hybrid battery"): the child
/// locks article does not answer how to open the bonnet, however close it comes.
pub fn mentions_parts_named(article: &Article, text: &str) -> bool {
    let british = |t: &str| spoken::british_words(&normalise(t));
    let parts = car_words::parts_named(&british(text));
    if parts.is_empty() {
        return true;
    }
    let fields = [
        article.title.as_str(),
        &article.aliases.join(" "),
        &article.keywords.join(" "),
        &article.summary,
        &article.body,
    ];
    let said = format!(" {} ", british(&fields.join(" ")));
    // A part named in several words is mentioned by its last: the high-voltage
    // battery is the "hybrid battery", jump leads are "leads".
    parts.iter().all(|part| {
        let head = part.rsplit(' ').next().unwrap_or(part);
        let stem = head.strip_suffix('s').filter(|s| s.len() >= 3).unwrap_or(head);
        said.contains(&format!(" {stem}"))
    })
}

/// What the knowledge base is filtered by: the live vehicle, else the configured one.
fn vehicle_filter(config: &Config, state: &VehicleState) -> knowledge::VehicleFilter {
    let mut filter = state.filter();
    filter.model.get_or_insert_with(|| config.vehicle.model.clone());
    filter.year.get_or_insert(config.vehicle.year);
    filter.market.get_or_insert_with(|| config.vehicle.market.clone());
    filter
}

/// The article that clearly answers a question the gate called out of scope, or
/// one the articles of its intent do not answer, with the local intent to answer
/// it under. Clearly: it leads the next article by `knowledge.overrule_lead` of
/// fused score, and its closest field comes within `knowledge.overrule_closeness`
/// of the question, or (against a model that was unsure of its intent) it clears
/// both of the bars a turn in scope needs only one of. The model's best in-scope
/// guess is the intent when the article is tagged with it.
///
/// The gate is trained to refuse what is not about the car, and it refuses some
/// plain car questions phrased in ways the corpus lacks ("how do i release the
/// handbrake"); the manual is the second opinion. Measured on real out-of-scope
/// utterances by `kb eval --out-of-scope`. A confident intent ("how do i open
/// the bonnet", a how-to) is not overruled by a look-alike of another intent
/// (the bonnet-open light) on words alone.
pub fn overruling_article(
    config: &Config,
    state: &VehicleState,
    kb: &KnowledgeBase,
    text: &str,
    best_guess: Intent,
    model_was_sure: bool,
) -> Result<Option<(Intent, Article)>, KnowledgeError> {
    let k = &config.knowledge;
    if !k.overrule_model {
        return Ok(None);
    }
    let Some((best, lead)) = closest_in_manual(config, state, kb, text)? else {
        return Ok(None);
    };
    let close = best.closeness >= k.overrule_closeness;
    // Both bars are enough only against a model that was unsure.
    let both_bars = !model_was_sure && best.closeness >= k.min_score && best.coverage >= k.min_coverage;
    tracing::debug!(
        article = %best.article.id,
        closeness = best.closeness,
        coverage = best.coverage,
        lead,
        "the manual's closest article, for overruling the gate or the intent"
    );
    if lead < k.overrule_lead || !(close || both_bars) || !mentions_parts_named(&best.article, text) {
        return Ok(None);
    }
    Ok(local_intent_of(&best.article, best_guess).map(|intent| (intent, best.article)))
}

/// The closest article in the whole manual, and how far its fused score leads
/// the next one's.
fn closest_in_manual(
    config: &Config,
    state: &VehicleState,
    kb: &KnowledgeBase,
    text: &str,
) -> Result<Option<(Hit, f32)>, KnowledgeError> {
    let vehicle = vehicle_filter(config, state);
    let hits = kb.search(&Query {
        text,
        intent: None,
        vehicle: &vehicle,
        limit: 2,
    })?;
    let mut hits = hits.into_iter();
    let Some(best) = hits.next() else { return Ok(None) };
    let lead = best.score - hits.next().map_or(0.0, |next| next.score);
    Ok(Some((best, lead)))
}

/// The how-to that answers a problem the model read as a call for roadside
/// help ("the charging cable is stuck and won't come out"): the closest article
/// in the whole manual is a `feature_howto` one, clears both calibrated bars,
/// and leads the next by `knowledge.overrule_lead`. The dialogue asks this only
/// when the driver asked for no one and no help: a breakdown, a flat tyre or a
/// dead battery has no `feature_howto` article, so it stays with roadside.
pub fn self_help_article(
    config: &Config,
    state: &VehicleState,
    kb: &KnowledgeBase,
    text: &str,
) -> Result<Option<Article>, KnowledgeError> {
    let k = &config.knowledge;
    if !k.overrule_model {
        return Ok(None);
    }
    let Some((best, lead)) = closest_in_manual(config, state, kb, text)? else {
        return Ok(None);
    };
    let how_to = best
        .article
        .intents
        .iter()
        .any(|tag| tag == Intent::FeatureHowto.as_str());
    let clear = best.closeness >= k.min_score && best.coverage >= k.min_coverage && lead >= k.overrule_lead;
    Ok((how_to && clear && mentions_parts_named(&best.article, text)).then_some(best.article))
}

/// The local intent an article answers under: `preferred` when it is tagged
/// with it, else its first local tag.
fn local_intent_of(article: &Article, preferred: Intent) -> Option<Intent> {
    let local: Vec<Intent> = article
        .intents
        .iter()
        .filter_map(|tag| tag.parse::<Intent>().ok())
        .filter(|intent| intent.route() == models::Route::Local)
        .collect();
    if local.contains(&preferred) {
        Some(preferred)
    } else {
        local.first().copied()
    }
}

/// The article that answers a question about a part of the car which the gate
/// called out of scope: the closest in the whole manual, when the question says
/// its title or an alias word for word ("how heavy a trailer can i pull"), or
/// when it clears the calibrated evidence an in-scope question needs and leads
/// the next article by `knowledge.car_part_lead`. A close second means the
/// manual is torn, and the car says it does not have it rather than guess.
pub fn car_part_article(
    config: &Config,
    state: &VehicleState,
    kb: &KnowledgeBase,
    text: &str,
) -> Result<Option<(Intent, Article)>, KnowledgeError> {
    let k = &config.knowledge;
    let Some((best, lead)) = closest_in_manual(config, state, kb, text)? else {
        return Ok(None);
    };
    if !names(&best.article, text) && (!speaks(k, &best, text) || lead < k.car_part_lead) {
        return Ok(None);
    }
    Ok(local_intent_of(&best.article, Intent::FeatureHowto).map(|intent| (intent, best.article)))
}

/// The article, of any intent, whose title or an alias of three words or more
/// the question says word for word, with little else ("what tyres does it
/// take", read by the model as a fuel question): the name is at least 60% of
/// the question's words. Under its local intent (`preferred` when it is tagged
/// with it); the longest such name wins.
pub fn named_anywhere(
    config: &Config,
    state: &VehicleState,
    kb: &KnowledgeBase,
    text: &str,
    preferred: Intent,
) -> Result<Option<(Intent, Article)>, KnowledgeError> {
    let said = format!(" {} ", normalise(text));
    let words_said = said.split_whitespace().count();
    let vehicle = vehicle_filter(config, state);
    let named = kb.best_named(None, &vehicle, |name| {
        let name = normalise(name.split(" (").next().unwrap_or(name));
        let words = name.split(' ').count();
        let most_of_it = words >= 3 && words * 10 >= words_said * 6;
        (most_of_it && says(&said, &name)).then_some(name.len())
    })?;
    Ok(named.and_then(|article| local_intent_of(&article, preferred).map(|intent| (intent, article))))
}

/// Whether `text` says the article's title or one of its aliases word for word.
fn names(article: &Article, text: &str) -> bool {
    let said = format!(" {} ", normalise(text));
    let title = article.title.split(" (").next().unwrap_or(&article.title);
    std::iter::once(title)
        .chain(article.aliases.iter().map(String::as_str))
        .map(normalise)
        .any(|name| name.len() >= 3 && says(&said, &name))
}

/// Whether `said` (normalised, with a space at each end) holds `name` as whole
/// words.
fn says(said: &str, name: &str) -> bool {
    said.contains(&format!(" {name} "))
}

/// What the car says when its manual has no answer; the dialogue adds the offer.
pub(super) const NOT_IN_THE_MANUAL: &str = "I don't have that in the car's manual.";

/// A name as said, without the words every light's name has: "Check engine
/// light" -> "check engine".
fn name_core(name: &str) -> String {
    let n = normalise(name);
    let mut words: Vec<&str> = n.split(' ').collect();
    while words.len() > 1
        && matches!(
            words.last(),
            Some(&("light" | "indicator" | "indicators" | "warning" | "symbol" | "lamp"))
        )
    {
        words.pop();
    }
    words.join(" ")
}

/// Tyre questions that are about a fixed fact (the spare, the tread, the size,
/// rotation), not today's pressures.
fn about_tyre_facts(text: &str) -> bool {
    let t = normalise(text);
    [
        "spare",
        "tread",
        "size",
        "rotat",
        "wear",
        "sensor",
        "reset",
        "recommend",
        "should",
        "supposed",
        "meant to",
        "full load",
        "trailer",
        "right pressure",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The local answer for `intent` (a `local` route other than the dialogue labels).
/// A question about a fixed fact of the car, or how to do something, gets the
/// article, not today's reading.
pub fn local_answer(ctx: &AnswerContext<'_>, intent: Intent, text: &str) -> Result<Answer, KnowledgeError> {
    let fact = ctx.slots.fixed_fact || ctx.slots.explains;
    if let (Some(code), Intent::VehicleHealth | Intent::WarningLight) = (&ctx.slots.code, intent) {
        return ctx.fault_code(code);
    }
    match intent {
        Intent::FuelLevel if !fact => Ok(fuel_level(ctx)),
        Intent::TirePressure if !fact && !about_tyre_facts(text) => Ok(tire_pressure(ctx)),
        Intent::VehicleHealth if !fact => vehicle_health(ctx),
        Intent::LastService if !fact => Ok(last_service(ctx)),
        Intent::OilChangeWhen if !fact => Ok(oil_change_when(ctx)),
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
    let asked = ctx.slots.energy;
    let fuel = match (s.fuel_percent, s.fuel_range_km) {
        _ if asked == Some(Energy::Charge) => None,
        (Some(p), Some(r)) => Some(format!("{} fuel, about {}", percent(p), u.distance(r))),
        (Some(p), None) => Some(format!("{} fuel", percent(p))),
        _ => None,
    };
    let battery = match (s.battery_percent, s.electric_range_km) {
        _ if asked == Some(Energy::Fuel) => None,
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
        (None, Some(b)) => format!("{}{charging}.", capitalise(&b)),
        (None, None) if asked == Some(Energy::Charge) => {
            return Answer::said("I can't read the battery level right now.", &source)
        }
        (None, None) => return Answer::said("I can't read the fuel or battery level right now.", &source),
    };
    let low = asked != Some(Energy::Charge) && s.fuel_percent.is_some_and(|p| p <= ctx.config.vehicle.low_fuel_percent);
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
    let asked = &ctx.slots.wheels;
    if !asked.is_empty() {
        return Answer::said(named_tyres(ctx, &tires, asked), &source);
    }
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
            u.pressure(recommended)
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

/// The pressures of the tyres the driver named ("the back ones", "front right",
/// "all four"), and which of them is low.
fn named_tyres(ctx: &AnswerContext<'_>, tires: &crate::vehicle::TirePressures, asked: &[&str]) -> String {
    let u = ctx.units;
    let recommended = ctx.config.vehicle.recommended_tire_kpa;
    let margin = ctx.config.vehicle.low_tire_margin_kpa;
    let named: Vec<(&str, f64)> = tires.each().into_iter().filter(|(w, _)| asked.contains(w)).collect();
    let numbers: Vec<String> = named.iter().map(|(_, p)| u.pressure_number(*p)).collect();
    let first = if numbers.iter().all(|n| *n == numbers[0]) {
        let verb = if named.len() == 1 { "is" } else { "are" };
        let wheels = join_words(named.iter().map(|(w, _)| w.to_string()).collect());
        let all = if named.len() == WHEELS.len() {
            "All four tyres".to_string()
        } else {
            capitalise(&wheels)
        };
        format!("{all} {verb} at {}.", u.pressure(named[0].1))
    } else {
        let each: Vec<String> = named
            .iter()
            .map(|(w, p)| format!("{w} {}", u.pressure_number(*p)))
            .collect();
        format!("{} {}.", capitalise(&join_words(each)), u.pressure_name())
    };
    let low: Vec<String> = named
        .iter()
        .filter(|(_, p)| *p <= recommended - margin)
        .map(|(w, _)| w.to_string())
        .collect();
    if low.is_empty() {
        format!("{first} The recommended pressure is {}.", u.pressure(recommended))
    } else {
        let verb = if low.len() == 1 { "is" } else { "are" };
        format!(
            "{first} {} {verb} low: top up to {}.",
            capitalise(&join_words(low)),
            u.pressure(recommended)
        )
    }
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

/// "P0420, catalytic converter efficiency low", or the code alone.
fn describe_code(code: &str) -> String {
    match DTC_MEANINGS.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)) {
        Some((c, meaning)) => format!("{c}, {meaning}"),
        None => code.to_string(),
    }
}

fn light_article_id(name: &str) -> String {
    format!("light-{}", name.trim().to_lowercase().replace(['_', ' '], "-"))
}

/// The lights on now, as an answer tells of them.
struct LitLights {
    /// Their spoken names.
    names: Vec<String>,
    /// The health check and each light's article.
    sources: Vec<String>,
    /// The first light's article.
    first: Option<Article>,
}

fn lights_on(ctx: &AnswerContext<'_>) -> Result<LitLights, KnowledgeError> {
    let mut names = Vec::new();
    let mut first: Option<Article> = None;
    let mut sources = vec!["health-check".to_string()];
    for light in &ctx.state.warning_lights {
        match ctx.article(&light_article_id(light))? {
            Some(article) => {
                names.push(short_title(&article.title));
                sources.push(article.id.clone());
                first.get_or_insert(article);
            }
            None => names.push(format!("{} warning", light.replace('_', " "))),
        }
    }
    Ok(LitLights { names, sources, first })
}

fn vehicle_health(ctx: &AnswerContext<'_>) -> Result<Answer, KnowledgeError> {
    let s = ctx.state;
    let LitLights {
        names: lights,
        mut sources,
        first: first_light,
    } = lights_on(ctx)?;
    let codes: Vec<String> = s.dtcs.iter().map(|code| describe_code(code)).collect();
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

fn spoken_date(ctx: &AnswerContext<'_>, date: jiff::civil::Date) -> String {
    super::spoken::date(date, ctx.today, ctx.wording)
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
            spoken_date(ctx, service.date),
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
        Some(spoken::days(days_left))
    } else {
        km_left.filter(|k| *k < 0.0).map(|k| u.distance(-k))
    };
    let sentence = match overdue_by {
        Some(by) => format!("Your service is overdue by {by}, so book one soon."),
        None => {
            let distance = km_left.map(|k| format!(" or {}", u.distance(k))).unwrap_or_default();
            format!(
                "Your next service is due by {} or at {}, whichever comes first: in {}{distance}.",
                spoken_date(ctx, due_date),
                u.distance(due_km),
                spoken::days(days_left)
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

/// Where the car is, by the name a person understands; never coordinates read
/// aloud.
fn current_location(ctx: &AnswerContext<'_>) -> Answer {
    let source = ["location-current"];
    match &ctx.state.location {
        Some(loc) => match loc.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => Answer::said(format!("You're on {name}."), &source),
            None => Answer::said(
                "I can't name this place, but the map on the centre screen shows where you are.",
                &source,
            ),
        },
        None => Answer::said("I can't get a GPS position right now.", &source),
    }
}

fn warning_light(ctx: &AnswerContext<'_>, text: &str) -> Result<Answer, KnowledgeError> {
    if follow_up::asks_which_lights(text) {
        return lit_lights(ctx);
    }
    if let Some(answer) = is_that_light_on(ctx)? {
        return Ok(answer);
    }
    if let Some(answer) = how_serious_is_that_light(ctx, text)? {
        return Ok(answer);
    }
    let active: Vec<String> = ctx.state.warning_lights.iter().map(|n| light_article_id(n)).collect();
    if let Some(named) = ctx.named_article(text, Intent::WarningLight)? {
        return Ok(with_live_light(ctx, named, &active));
    }
    if let Some(lit) = described_lit_light(ctx, &active)? {
        return Ok(with_live_light(ctx, lit, &active));
    }
    // "What does that light mean?" after a turn that described one.
    let described_before = ctx
        .previous
        .filter(|p| is_deictic(text) && !p.slots.shapes.is_empty())
        .map(|p| {
            format!(
                "{} {} light",
                p.slots.colour.unwrap_or_default(),
                p.slots.shapes.join(" ")
            )
        });
    let closest = ctx.closest(described_before.as_deref().unwrap_or(text), Intent::WarningLight, 5)?;
    // An utterance that names nothing ("what's that light?") means the light on now.
    let names_nothing =
        knowledge::fts_query(text).is_none() || closest.first().is_none_or(|top| !top.article.id.starts_with("light-"));
    let asked = described_before.as_deref().unwrap_or(text);
    let confident = closest.iter().find(|h| ctx.speaks(h, asked)).map(|h| h.article.clone());
    if described_before.is_some() {
        return Ok(match confident {
            Some(article) => with_live_light(ctx, article, &active),
            None => Answer::said("I couldn't find that warning in the car's manual.", &[]),
        });
    }
    // A light that is on now, among the close matches and fitting what was
    // described, is the likeliest meaning.
    let choice = closest
        .iter()
        .take(3)
        .map(|h| &h.article)
        .find(|a| active.contains(&a.id) && fits_description(ctx.slots, a))
        .cloned()
        .or_else(|| {
            if names_nothing || is_deictic(text) {
                active.iter().find_map(|id| ctx.article(id).ok().flatten())
            } else {
                None
            }
        })
        .or(confident);
    Ok(match choice {
        Some(article) => with_live_light(ctx, article, &active),
        None => Answer::said("I couldn't find that warning in the car's manual.", &[]),
    })
}

/// Whether a light fits the colour and shapes the driver said (when said).
fn fits_description(slots: &Slots, light: &Article) -> bool {
    let described = described(light);
    let colour_fits = slots.colour.is_none_or(|colour| match colour {
        "yellow" => ["yellow", "amber", "orange"].iter().any(|c| described.contains(c)),
        other => described.contains(other),
    });
    let shapes_fit = slots.shapes.is_empty() || slots.shapes.iter().any(|s| described.contains(s));
    colour_fits && shapes_fit
}

/// Which lights are on now, from the signals, and what the first one means.
fn lit_lights(ctx: &AnswerContext<'_>) -> Result<Answer, KnowledgeError> {
    let LitLights { names, sources, first } = lights_on(ctx)?;
    if names.is_empty() {
        return Ok(Answer {
            text: "No warning lights are on right now.".to_string(),
            sources,
            article: None,
        });
    }
    let verb = if names.len() == 1 { "is" } else { "are" };
    let meaning = first
        .as_ref()
        .map(|a| format!(" {}", first_sentence(&a.summary)))
        .unwrap_or_default();
    Ok(Answer {
        text: format!("The {} {verb} on now.{meaning}", join_words(names)),
        sources,
        article: first,
    })
}

/// "Is it on now?" about the light the last turn explained.
fn is_that_light_on(ctx: &AnswerContext<'_>) -> Result<Option<Answer>, KnowledgeError> {
    let light = ctx
        .previous
        .filter(|_| ctx.slots.now && ctx.slots.shapes.is_empty())
        .and_then(|p| p.article.as_deref())
        .filter(|id| id.starts_with("light-"));
    let Some(id) = light else { return Ok(None) };
    let Some(article) = ctx.article(id)? else {
        return Ok(None);
    };
    let name = short_title(&article.title);
    let lit = ctx.state.warning_lights.iter().any(|l| light_article_id(l) == id);
    let text = if lit {
        format!("Yes, the {name} is on now.")
    } else {
        format!("No, the {name} isn't on now.")
    };
    Ok(Some(Answer::said(text, &[id])))
}

/// "Is that serious?", "can I still drive it?" about the light the last turn
/// explained: the whole of its summary, which says what to do. When none was
/// and the driver describes none, the lights on now and what the first means.
fn how_serious_is_that_light(ctx: &AnswerContext<'_>, text: &str) -> Result<Option<Answer>, KnowledgeError> {
    if !follow_up::asks_how_serious(text) {
        return Ok(None);
    }
    let light = ctx
        .previous
        .and_then(|p| p.article.as_deref())
        .filter(|id| id.starts_with("light-"));
    if let Some(id) = light {
        return Ok(ctx.article(id)?.map(Answer::from_article));
    }
    let describes_none = ctx.slots.shapes.is_empty() && ctx.slots.colour.is_none();
    if describes_none && !ctx.state.warning_lights.is_empty() {
        return lit_lights(ctx).map(Some);
    }
    Ok(None)
}

/// How the manual describes a light, lower case, to match the driver's words.
fn described(light: &Article) -> String {
    format!("{} {} {}", light.title, light.summary, light.keywords.join(" ")).to_lowercase()
}

/// A light that is on now and fits the colour and shapes the driver described:
/// it wins over a look-alike that is off.
fn described_lit_light(ctx: &AnswerContext<'_>, active: &[String]) -> Result<Option<Article>, KnowledgeError> {
    let slots = ctx.slots;
    if slots.shapes.is_empty() {
        return Ok(None);
    }
    let mut best: Option<(usize, Article)> = None;
    for id in active {
        let Some(article) = ctx.article(id)? else { continue };
        let described = described(&article);
        let shapes = slots.shapes.iter().filter(|s| described.contains(*s)).count();
        let colour_fits = slots.colour.is_none_or(|c| described.contains(c) || c == "flashing");
        if shapes > 0 && colour_fits && best.as_ref().is_none_or(|(n, _)| shapes > *n) {
            best = Some((shapes, article));
        }
    }
    Ok(best.map(|(_, article)| article))
}

/// A light's meaning; when it is on now, what the signals say about it.
fn with_live_light(ctx: &AnswerContext<'_>, article: Article, active: &[String]) -> Answer {
    if !active.contains(&article.id) {
        return Answer::from_article(article);
    }
    let live = match article.id.as_str() {
        "light-tire-pressure" => Some(tire_pressure(ctx).text),
        "light-check-engine" if !ctx.state.dtcs.is_empty() => Some(format!(
            "Stored fault code: {}.",
            join_words(ctx.state.dtcs.iter().map(|c| describe_code(c)).collect())
        )),
        _ => None,
    };
    match live {
        Some(live) => Answer {
            text: format!("{} {}", first_sentence(&article.summary), first_sentence(&live)),
            sources: vec![article.id.clone()],
            article: Some(article),
        },
        None => Answer::from_article(article),
    }
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
                | "though"
                | "then"
                | "again"
                | "now"
                | "one"
        )
    });
    !named
}

fn fuel_economy(ctx: &AnswerContext<'_>, text: &str) -> Result<Answer, KnowledgeError> {
    if ctx.slots.fixed_fact || ctx.slots.explains {
        return ctx.best_article(text, Intent::FuelEconomy);
    }
    let best = ctx.search(text, Intent::FuelEconomy, 1)?.into_iter().next();
    // Questions about the figures (rather than tips or modes) get the live ones.
    let about_my_driving = best
        .as_ref()
        .is_none_or(|a| a.id == "fuel-economy-trip" || a.id == "fuel-economy-rated");
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
                    sources: vec![rated.id.clone(), "fuel-economy-trip".to_string()],
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

    fn article(title: &str, summary: &str) -> Article {
        Article {
            id: "a".into(),
            title: title.into(),
            summary: summary.into(),
            body: String::new(),
            intents: vec![],
            aliases: vec![],
            keywords: vec![],
            applies: knowledge::Applicability::default(),
            locale: "en-GB".into(),
            version: 1,
            source: String::new(),
        }
    }

    #[test]
    fn an_article_answers_only_about_the_parts_it_mentions() {
        let locks = article("Child locks", "Turn the slot on the rear door edge.");
        assert!(!mentions_parts_named(&locks, "how do i open the bonnet from inside"));
        assert!(
            mentions_parts_named(&locks, "how do i lock the back doors"),
            "'doors' is 'door'"
        );
        assert!(mentions_parts_named(&locks, "how do i turn them on"), "names no part");
        let bonnet = article("Open the bonnet", "Pull the release under the dashboard.");
        assert!(
            mentions_parts_named(&bonnet, "how do i pop the hood"),
            "either market's word"
        );
        let lights = article("Ambient lighting", "Dim the cabin lighting on the screen.");
        assert!(
            mentions_parts_named(&lights, "can i change the interior lights"),
            "any form of the word"
        );
        assert!(!mentions_parts_named(&lights, "where is the gearbox oil"));
    }
}
