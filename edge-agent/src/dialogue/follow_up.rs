//! Follow-ups: a turn that leaves things out ("and the back ones?", "in bar",
//! "and the charge?", "tell me more") is read against what the last turn was
//! about, for as long as that is recent.
//!
//! Also the questions about now that the model may send elsewhere ("which lights
//! are on", "how far can i go"): the car answers those from its signals.

use std::sync::LazyLock;

use models::Intent;
use regex::Regex;

use super::slots::{normalise, re, Slots, UnitAsked};

/// What the last answered turn was about.
#[derive(Debug, Clone)]
pub struct Context {
    pub intent: Intent,
    pub slots: Slots,
    /// The article the answer rested on, if one.
    pub article: Option<String>,
    pub at: jiff::Timestamp,
}

impl Context {
    fn fresh(&self, now: jiff::Timestamp, lifetime_secs: u64) -> bool {
        now.duration_since(self.at).as_secs() <= lifetime_secs as i64
    }
}

static ELLIPTICAL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(and|what about|how about|in|just|only|also|same for|give me|now|make it|is it|is that|and what about|what of|then)\b",
    )
});

/// `text` opens like a follow-up: "and ...", "what about ...", "in ...".
pub fn is_elliptical(text: &str) -> bool {
    ELLIPTICAL.is_match(&normalise(text))
}

/// The article the last turn answered from, while it is recent.
pub fn recent_article(context: Option<&Context>, now: jiff::Timestamp, lifetime_secs: u64) -> Option<&str> {
    context
        .filter(|c| c.fresh(now, lifetime_secs))
        .and_then(|c| c.article.as_deref())
}

/// The intent a follow-up continues, when `text` is one. `model_sure`: the model
/// read the line confidently as a request of its own.
pub fn continues(
    text: &str,
    slots: &Slots,
    context: Option<&Context>,
    model_sure: bool,
    now: jiff::Timestamp,
    lifetime_secs: u64,
) -> Option<Intent> {
    let context = context.filter(|c| c.fresh(now, lifetime_secs))?;
    if is_about_a_warning(context.intent) && asks_how_serious(text) {
        return Some(context.intent);
    }
    let t = normalise(text);
    let words = t.split(' ').count();
    let short = words <= 4;
    let opens_like_one = ELLIPTICAL.is_match(&t);
    if !(opens_like_one || short) {
        return None;
    }
    // After the tyre or fuel light, a short question ("which one is low", "what
    // should it be") is about the tyres or the fuel now.
    if let Some(topic) = context.article.as_deref().and_then(live_topic_of_light) {
        if slots.asks && !asks_how_serious(text) && !slots.now {
            return Some(topic);
        }
    }
    // "What should it be?", "which one is it?", "and how do i let it off?": a
    // short question about what the last answer was about.
    let pronoun = t
        .split(' ')
        .any(|w| matches!(w, "it" | "they" | "them" | "that" | "one" | "those"))
        || t.split(' ')
            .zip(t.split(' ').skip(1))
            .any(|(a, b)| a == "the" && is_part_of_anything(b));
    // A longer one only when the model has no confident reading of its own
    // ("and what did they do last time" is about the last service).
    let short_question = short || (opens_like_one && words <= 7 && !model_sure);
    let intent = match context.intent {
        // "and how much is in it now" after the tank's size is about the gauge.
        Intent::FuelType if slots.now || slots.energy.is_some() => Intent::FuelLevel,
        other => other,
    };
    // "How much?", "where?": a bare question word asks about the same thing.
    let bare = words <= 2 && slots.asks;
    let local =
        context.intent.route() == models::Route::Local && !matches!(context.intent, Intent::Greeting | Intent::Goodbye);
    if local && ((short_question && slots.asks && pronoun) || bare) {
        return Some(intent);
    }
    fits(context.intent, slots).then_some(intent)
}

/// A line the model read as an emergency, or as routes and places, that is
/// plainly a question about what an article just explained: "should i pull
/// over" after the overheating light, "how long will it take" after how to
/// charge. The intent of the last turn, then. An emergency is read so only
/// when the model was unsure of it (below 0.5), the line asks how serious the
/// warning is, and it says nothing of danger; a route only when the line names
/// no place and leans on the last answer with a pronoun.
pub fn misread(
    text: &str,
    read_as: Intent,
    confidence: f32,
    slots: &Slots,
    context: Option<&Context>,
    now: jiff::Timestamp,
    lifetime_secs: u64,
) -> Option<Intent> {
    let context = context.filter(|c| c.fresh(now, lifetime_secs) && c.article.is_some())?;
    let t = normalise(text);
    let words = t.split(' ').count();
    let pronoun = t
        .split(' ')
        .any(|w| matches!(w, "it" | "they" | "them" | "that" | "this"));
    let leans = match read_as {
        Intent::Emergency => {
            confidence < 0.5 && is_about_a_warning(context.intent) && asks_how_serious(text) && !DANGER.is_match(&t)
        }
        Intent::Directions | Intent::Distance | Intent::Traffic | Intent::FindPlace => {
            !slots.place && pronoun && words <= 7
        }
        _ => false,
    };
    (leans && context.intent.route() == models::Route::Local).then_some(context.intent)
}

/// A turn about a warning: a light, the car's health, or a low tyre.
fn is_about_a_warning(intent: Intent) -> bool {
    matches!(
        intent,
        Intent::WarningLight | Intent::VehicleHealth | Intent::TirePressure
    )
}

/// Words of real danger: with any of them, an emergency stays one.
static DANGER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(fire|flames?|smoke|smoking|burning|crash|crashed|accident|hurt|injured|bleeding|unconscious|breathing",
        r"|help|ambulance|police|911|999|112|sos|collapsed|hit|smell|trapped|stuck|emergency)\b",
    ))
});

/// "Why do I have to wait?" right after an answer from an article, about what
/// it said (every word the question brings is in `said`: the last answer and
/// what it left unsaid), or "what could it be?", and not a confident request of
/// its own: the article's explanation, as "tell me more" would read it.
pub fn asks_why(
    text: &str,
    read_as: Intent,
    said: [Option<&str>; 2],
    context: Option<&Context>,
    now: jiff::Timestamp,
    lifetime_secs: u64,
) -> bool {
    let t = normalise(text);
    let why = t == "why" || t.starts_with("why ");
    if !(why || ASKS_CAUSE.is_match(&t)) || t.split(' ').count() > 8 {
        return false;
    }
    let about_last = context
        .filter(|c| c.fresh(now, lifetime_secs) && c.article.is_some())
        .is_some_and(|c| {
            read_as == c.intent || !read_as.is_in_scope() || matches!(read_as, Intent::Affirm | Intent::Deny)
        });
    if !about_last {
        return false;
    }
    if !why {
        return true;
    }
    let known: Vec<String> = said
        .iter()
        .flatten()
        .flat_map(|s| knowledge::content_words(s))
        .collect();
    knowledge::content_words(text).iter().all(|w| known.contains(w))
}

/// "What could it be?", "what's causing that?": the cause of what was just
/// explained, which the article's explanation gives.
static ASKS_CAUSE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(what could (it|that|this) be|what (could|would|might) (cause|be causing) (it|that|this)|what causes (it|that|this)|whats causing (it|that|this)|what is causing (it|that|this))\b",
    )
});
static SERIOUS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(serious|safe|dangerous|bad|urgent|worry|worried|still drive|keep driving|drive it|ok to drive|okay to drive|pull over|stop driving|stop the car)\b",
    )
});

/// "Is that serious?", "can I still drive it?": a question about what a light
/// just explained means for the drive.
pub fn asks_how_serious(text: &str) -> bool {
    let t = normalise(text);
    t.split(' ').count() <= 8 && SERIOUS.is_match(&t)
}

/// Whether what `slots` adds makes sense for a question about `intent`.
fn fits(intent: Intent, slots: &Slots) -> bool {
    if slots.more {
        return intent.route() == models::Route::Local;
    }
    match intent {
        Intent::TirePressure => !slots.wheels.is_empty() || matches!(slots.unit, Some(UnitAsked::Pressure(_))),
        Intent::FuelLevel | Intent::FuelType => {
            slots.energy.is_some() || slots.now || matches!(slots.unit, Some(UnitAsked::Distance(_)))
        }
        Intent::FuelEconomy => matches!(slots.unit, Some(UnitAsked::Mpg | UnitAsked::Economy(_))),
        Intent::BookService => slots.when.is_some() || slots.part_of_day.is_some(),
        Intent::WarningLight | Intent::VehicleHealth => slots.now || !slots.shapes.is_empty(),
        _ => false,
    }
}

static ANY_LIGHT_ON: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(any|which|what) (warning |dash |dashboard )?lights? (is |are )?(on|lit)|\blights? (is |are )?(on|lit) (now|right now|at the moment)|\b(is|are) (there )?any (warning )?lights? on",
    )
});
static HOW_FAR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(how far can i (go|get|drive)|how many miles can i (go|do|drive)|whats my range|what is my range|how much range)\b",
    )
});
/// A part that anything can have ("the switch", "the release"): said with
/// "the" right after an answer, it is the part of what the answer was about.
fn is_part_of_anything(word: &str) -> bool {
    matches!(
        word,
        "switch"
            | "button"
            | "buttons"
            | "setting"
            | "settings"
            | "menu"
            | "lever"
            | "stalk"
            | "control"
            | "controls"
            | "release"
    )
}

/// What a pronoun in a follow-up stands for after a turn about `intent`, whose
/// answer came from the article titled `title`: "how often should they be
/// rotated" after a tyre answer is about the tyres; "how do i let it off" after
/// the article "Electric parking brake" is about the electric parking brake.
/// A bare "how much?" is about the subject too. `None` when the line has no
/// pronoun or the turn no one subject.
pub fn with_subject(text: &str, intent: Intent, title: Option<&str>) -> Option<String> {
    let titled = title.map(|title| format!("the {}", normalise(title.split(" (").next().unwrap_or(title))));
    let subject = match intent {
        Intent::TirePressure | Intent::TireChange => "the tyres",
        Intent::OilChangeHow | Intent::OilChangeWhen => "the oil",
        Intent::FuelLevel | Intent::FuelType => "the fuel",
        Intent::JumpStart => "the battery",
        Intent::WarningLight => "the light",
        _ => titled.as_deref()?,
    };
    let t = normalise(text);
    let mut replaced = false;
    let mut words: Vec<&str> = Vec::new();
    let mut previous = "";
    for w in t.split(' ') {
        match w {
            "they" | "them" | "it" | "those" | "these" if !replaced => {
                replaced = true;
                words.push(subject);
            }
            // "the switch" is the switch for the subject.
            part if !replaced && previous == "the" && is_part_of_anything(part) => {
                replaced = true;
                words.extend([part, "for", subject]);
            }
            other => words.push(other),
        }
        previous = w;
    }
    // "How much?" names nothing: it is about the subject too.
    if !replaced && words.len() <= 2 {
        return Some(format!("{t} {subject}"));
    }
    replaced.then(|| words.join(" "))
}

/// The live reading a light is about, when it is about one.
fn live_topic_of_light(article: &str) -> Option<Intent> {
    match article {
        "light-tire-pressure" => Some(Intent::TirePressure),
        "light-low-fuel" => Some(Intent::FuelLevel),
        _ => None,
    }
}

/// "How far can I go on the space saver" is about the spare, not the tank.
static ON_A_SPARE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(spare|space saver|flat|puncture|punctured|tyre|tire|tyres|tires)\b"));

/// "What's the car battery at": the whole line asks for the level (a phone's
/// battery says "phone" and does not match).
static CHARGE_NOW: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(whats|what is|hows|how is) (the |my )?(cars? )?(battery|charge|battery level|charge level)( at| now| at now)?$",
    )
});
static WHICH_TYRE_LOW: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(which|what) (tyre|tire|wheel)s? (is|are) (low|flat|soft)|\bis (one of )?(my )?(tyres?|tires?) (low|flat)")
});

/// The live-state intent of a question about the car now, whatever the model
/// made of it: "are any lights on", "how far can i go", "which tyre is low".
pub fn about_now(text: &str) -> Option<Intent> {
    let t = normalise(text);
    if ANY_LIGHT_ON.is_match(&t) {
        Some(Intent::WarningLight)
    } else if (HOW_FAR.is_match(&t) && !ON_A_SPARE.is_match(&t)) || CHARGE_NOW.is_match(&t) {
        Some(Intent::FuelLevel)
    } else if WHICH_TYRE_LOW.is_match(&t) {
        Some(Intent::TirePressure)
    } else {
        None
    }
}

/// The question asks which lights are on, rather than what one means.
pub fn asks_which_lights(text: &str) -> bool {
    ANY_LIGHT_ON.is_match(&normalise(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(intent: Intent) -> Context {
        Context {
            intent,
            slots: Slots::default(),
            article: None,
            at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    fn follows(text: &str, after: Intent, seconds_later: i64) -> Option<Intent> {
        let now = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(seconds_later);
        continues(text, &Slots::of(text), Some(&context(after)), false, now, 120)
    }

    #[test]
    fn follow_ups_continue_the_last_intent_while_it_is_recent() {
        assert_eq!(
            follows("and the back ones", Intent::TirePressure, 5),
            Some(Intent::TirePressure)
        );
        assert_eq!(follows("in bar", Intent::TirePressure, 5), Some(Intent::TirePressure));
        assert_eq!(
            follows("and the charge?", Intent::FuelLevel, 5),
            Some(Intent::FuelLevel)
        );
        assert_eq!(follows("in km", Intent::FuelLevel, 5), Some(Intent::FuelLevel));
        assert_eq!(
            follows("in litres per hundred", Intent::FuelEconomy, 5),
            Some(Intent::FuelEconomy)
        );
        assert_eq!(
            follows("make it the afternoon instead", Intent::BookService, 5),
            Some(Intent::BookService)
        );
        assert_eq!(
            follows("is it on right now", Intent::WarningLight, 5),
            Some(Intent::WarningLight)
        );
        assert_eq!(follows("tell me more", Intent::TireChange, 5), Some(Intent::TireChange));
        assert_eq!(
            follows("is that serious", Intent::WarningLight, 5),
            Some(Intent::WarningLight)
        );
        assert_eq!(
            follows("can i still drive it", Intent::WarningLight, 5),
            Some(Intent::WarningLight)
        );
        assert_eq!(
            follows("and how much is in it now", Intent::FuelType, 5),
            Some(Intent::FuelLevel)
        );
        // Too late, or nothing that fits.
        assert_eq!(follows("and the back ones", Intent::TirePressure, 121), None);
        assert_eq!(follows("in bar", Intent::FuelLevel, 5), None);
        assert_eq!(follows("tell me more", Intent::BookService, 5), None);
        assert_eq!(
            follows("how do i pair my phone with the car please", Intent::TirePressure, 5),
            None
        );
        assert_eq!(
            continues(
                "in bar",
                &Slots::of("in bar"),
                None,
                false,
                jiff::Timestamp::UNIX_EPOCH,
                120
            ),
            None
        );
    }

    #[test]
    fn a_short_question_after_the_tyre_light_is_about_the_tyres() {
        let mut after_light = context(Intent::WarningLight);
        after_light.article = Some("light-tire-pressure".to_string());
        let now = jiff::Timestamp::UNIX_EPOCH;
        let follows = |text: &str| continues(text, &Slots::of(text), Some(&after_light), false, now, 60);
        assert_eq!(follows("which one is low"), Some(Intent::TirePressure));
        assert_eq!(follows("what should it be"), Some(Intent::TirePressure));
        assert_eq!(follows("ok thanks"), None);
        assert_eq!(follows("is that serious"), Some(Intent::WarningLight));
        let after_pressures = context(Intent::TirePressure);
        let asked = "what should it be";
        assert_eq!(
            continues(asked, &Slots::of(asked), Some(&after_pressures), false, now, 60),
            Some(Intent::TirePressure)
        );
        let unrelated = "what is the capital of peru";
        assert_eq!(
            continues(unrelated, &Slots::of(unrelated), Some(&after_pressures), false, now, 60),
            None
        );
    }

    #[test]
    fn questions_about_now_are_found() {
        assert_eq!(
            about_now("are there any warning lights on right now"),
            Some(Intent::WarningLight)
        );
        assert_eq!(about_now("which lights are on then"), Some(Intent::WarningLight));
        assert_eq!(about_now("how far can i go"), Some(Intent::FuelLevel));
        assert_eq!(about_now("whats the car battery at"), Some(Intent::FuelLevel));
        assert_eq!(about_now("how far can i go on the space saver"), None);
        assert_eq!(
            with_subject("how often should they be rotated", Intent::TirePressure, None).as_deref(),
            Some("how often should the tyres be rotated")
        );
        assert_eq!(
            with_subject("how often should the tyres be rotated", Intent::TirePressure, None),
            None
        );
        assert_eq!(with_subject("how do i use it", Intent::FeatureHowto, None), None);
        assert_eq!(
            with_subject("where is the switch", Intent::FeatureHowto, Some("Automatic wipers")).as_deref(),
            Some("where is the switch for the automatic wipers")
        );
        assert_eq!(
            with_subject(
                "and how do i let it off",
                Intent::FeatureHowto,
                Some("Electric parking brake")
            )
            .as_deref(),
            Some("and how do i let the electric parking brake off")
        );
        assert_eq!(about_now("what's my phone battery at"), None);
        assert_eq!(about_now("which tire is low"), Some(Intent::TirePressure));
        assert_eq!(about_now("what does the oil light mean"), None);
        assert_eq!(about_now("how far is denver"), None);
    }
}
