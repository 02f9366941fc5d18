//! Slots: the details of an utterance that its intent does not carry. Which
//! tyres, which light (colour and shape), fuel or charge, the unit asked for, a
//! day and time, a place, whether the driver asks about now or about a fixed fact
//! of the car, and whether they want to hear more.
//!
//! Extraction reads words only; it never decides the intent. The dialogue uses
//! slots to answer more exactly and to resolve follow-ups that leave things out
//! ("and the back ones?", "in bar", "and the charge?").

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::car_words;
use super::spoken::Wording;
use crate::vehicle::{DistanceUnit, EconomyUnit, PressureUnit, Units};

/// A wheel position, as the tyre answers name them.
pub const WHEELS: [&str; 4] = ["front left", "front right", "rear left", "rear right"];

/// Fuel or electric charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Energy {
    Fuel,
    Charge,
}

/// A unit the driver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitAsked {
    Pressure(PressureUnit),
    Distance(DistanceUnit),
    /// Miles per gallon: US or imperial gallons follow the market.
    Mpg,
    Economy(EconomyUnit),
}

/// What an utterance says beyond its intent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Slots {
    /// The tyres asked about, in [`WHEELS`] order; empty when none is named.
    pub wheels: Vec<&'static str>,
    /// A light's colour (amber and orange are yellow), when one is said.
    pub colour: Option<&'static str>,
    /// Shape words that describe a light ("horseshoe", "oil can", "engine").
    pub shapes: Vec<&'static str>,
    pub energy: Option<Energy>,
    pub unit: Option<UnitAsked>,
    /// A day or time, as said ("next friday morning", "tomorrow").
    pub when: Option<String>,
    /// A part of the day ("morning", "afternoon"), also on its own.
    pub part_of_day: Option<&'static str>,
    /// The question is about now ("right now", "is it on", "currently").
    pub now: bool,
    /// The question is about a fixed fact of the car: a size, a capacity, a limit,
    /// a lifetime or an interval, not today's reading.
    pub fixed_fact: bool,
    /// The question asks how to do something, how something works or what to do
    /// ("how do i charge it at home", "what should i do"): the manual answers
    /// it, not today's reading.
    pub explains: bool,
    /// "tell me more", "go on".
    pub more: bool,
    /// Says that what the car suggested did not work ("it's not working",
    /// "that didn't work", "still stuck").
    pub failed: bool,
    /// Asks for someone to come or for help ("can you send someone", "i need
    /// a tow", "i've broken down"), not only for what to do.
    pub asks_for_help: bool,
    /// A fault code said ("P0420"), upper case.
    pub code: Option<String>,
    /// Asks for a booking ("book me in", "make an appointment").
    pub books: bool,
    /// Opens as a question ("why ...", "how ...", "what ..."): never a bare yes
    /// or no ("why not" is a yes).
    pub asks: bool,
    /// Names a part or system of a car ("sunroof", "handbrake", "tow bar"), or
    /// a word that is one only beside "car" ("the car's boot"): the question is
    /// about the car, whatever the gate thinks of it.
    pub car_part: bool,
    /// Names a place or a way to one ("the nearest garage", "how far to the
    /// station", "by car"): what a question about routes, traffic and places
    /// has, and a question about the car itself lacks.
    pub place: bool,
    /// Signs off with what the driver will do now, and thanks ("ok i'll pump
    /// it up thanks"): a goodbye, not a request.
    pub signs_off: bool,
}

impl Slots {
    /// Reads the slots of `text`.
    pub fn of(text: &str) -> Slots {
        let t = normalise(text);
        Slots {
            wheels: wheels(&t),
            colour: colour(&t),
            shapes: SHAPES
                .iter()
                .filter(|(_, re)| re.is_match(&t))
                .map(|(name, _)| *name)
                .collect(),
            energy: energy(&t),
            unit: unit(&t),
            when: when(&t),
            part_of_day: PART_OF_DAY.find(&t).map(|m| part_of_day(m.as_str())),
            now: NOW.is_match(&t),
            fixed_fact: FIXED_FACT.is_match(&t),
            explains: EXPLAINS.is_match(&t),
            more: MORE.is_match(&t),
            failed: FAILED.is_match(&t),
            asks_for_help: ASKS_FOR_HELP.is_match(&t),
            code: CODE.captures(&t).map(|c| c[1].to_uppercase()),
            books: BOOKS.is_match(&t),
            asks: ASKS.is_match(&t) && !t.starts_with("why not"),
            car_part: car_words::names_car_part(&t),
            signs_off: SIGNS_OFF.is_match(&t),
            place: car_words::names_place(&t),
        }
    }

    /// Whether `text` asks for more of the last answer ("tell me more"), as its
    /// `more` slot says before a follow-up sets it.
    pub fn asks_for_more(text: &str) -> bool {
        MORE.is_match(&normalise(text))
    }

    /// The market's units with the one asked for in place.
    pub fn units_in(&self, market: Units, wording: Wording) -> Units {
        let mut units = market;
        match self.unit {
            Some(UnitAsked::Pressure(p)) => units.pressure = p,
            Some(UnitAsked::Distance(d)) => units.distance = d,
            Some(UnitAsked::Economy(e)) => units.economy = e,
            Some(UnitAsked::Mpg) => {
                units.economy = match wording {
                    Wording::American => EconomyUnit::MpgUs,
                    Wording::British => EconomyUnit::MpgUk,
                }
            }
            None => {}
        }
        units
    }

    /// A follow-up keeps what the turn before said and it leaves out: "in bar"
    /// after "the back tyres" is still about the back tyres.
    pub fn inherit(&mut self, before: &Slots) {
        if self.wheels.is_empty() {
            self.wheels = before.wheels.clone();
        }
        if self.energy.is_none() && self.unit.is_none() {
            self.energy = before.energy;
        }
        if self.unit.is_none() {
            self.unit = before.unit;
        }
        if self.when.is_none() {
            self.when = before.when.clone();
        }
    }

    /// Nothing beyond the intent was said.
    pub fn is_empty(&self) -> bool {
        *self == Slots::default()
    }
}

/// Lower case, apostrophes dropped, anything else that is not a letter, digit or
/// `/` turned into a space, and single spaces: "What's the FRONT-left?" ->
/// "whats the front left".
pub fn normalise(text: &str) -> String {
    let mapped: String = text
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| {
            if c.is_alphanumeric() || c == '/' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    mapped
        .split_whitespace()
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A dialogue pattern. The lazy DFA's cache is kept small: every pattern has
/// one per thread that matches it, and the default (2 MiB each) grew the
/// daemon's memory under load by megabytes for no speed that a turn notices.
pub(super) fn re(pattern: &str) -> Regex {
    regex::RegexBuilder::new(pattern)
        .dfa_size_limit(64 * 1024)
        .build()
        .expect("a valid dialogue pattern")
}

static ALL_WHEELS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(all four|all 4|all the (tyres|tires|wheels)|all of them|every (tyre|tire|wheel)|each (tyre|tire|wheel)|all tyres|all tires)\b",
    )
});
static FRONT: LazyLock<Regex> = LazyLock::new(|| re(r"\b(front|fronts)\b"));
static REAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(rear|back|rears)\b"));
static LEFT: LazyLock<Regex> = LazyLock::new(|| re(r"\b(left|nearside)\b"));
static RIGHT: LazyLock<Regex> = LazyLock::new(|| re(r"\b(right|offside)\b"));
/// "right" also means "correct" and "now": "the right pressure", "right now".
static RIGHT_NOT_A_SIDE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(the right (pressure|oil|fuel|way|one|level|size)|right now|right away|all right|that right|is it right|right\?)",
    )
});

fn wheels(t: &str) -> Vec<&'static str> {
    if ALL_WHEELS.is_match(t) {
        return WHEELS.to_vec();
    }
    let front = FRONT.is_match(t);
    let rear = REAR.is_match(t);
    let left = LEFT.is_match(t);
    let right = RIGHT.is_match(t) && !RIGHT_NOT_A_SIDE.is_match(t);
    if !(front || rear || left || right) {
        return Vec::new();
    }
    // "back" alone is also "come back", "call me back": a side needs a tyre word
    // or another position word with it.
    let about_wheels = TYRE_WORD.is_match(t) || front || left || right || REAR_ONES.is_match(t);
    if !about_wheels {
        return Vec::new();
    }
    WHEELS
        .iter()
        .copied()
        .filter(|w| {
            let (axle, side) = w.split_once(' ').expect("two words");
            let axle_ok = match (front, rear) {
                (true, false) => axle == "front",
                (false, true) => axle == "rear",
                _ => true,
            };
            let side_ok = match (left, right) {
                (true, false) => side == "left",
                (false, true) => side == "right",
                _ => true,
            };
            axle_ok && side_ok
        })
        .collect()
}

static TYRE_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"\b(tyres?|tires?|wheels?|ones?|pair|psi|pressures?)\b"));
static REAR_ONES: LazyLock<Regex> = LazyLock::new(|| re(r"\b(the back|the rear|back ones|rear ones)\b"));

fn colour(t: &str) -> Option<&'static str> {
    const COLOURS: [(&str, &str); 8] = [
        ("red", "red"),
        ("yellow", "yellow"),
        ("amber", "yellow"),
        ("orange", "yellow"),
        ("green", "green"),
        ("blue", "blue"),
        ("white", "white"),
        ("flashing", "flashing"),
    ];
    t.split(' ')
        .find_map(|w| COLOURS.iter().find(|(word, _)| *word == w).map(|(_, c)| *c))
}

/// Shape words, each with what it is called in the manual's descriptions.
static SHAPES: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("horseshoe", r"\b(horseshoe|horse shoe|u shape|u shaped|bracket)"),
        ("exclamation", r"\b(exclamation|exclaimation|!)"),
        ("engine", r"\bengine\b"),
        ("oil can", r"\b(oil can|oil lamp|genie|oil)\b"),
        ("battery", r"\bbattery\b"),
        ("thermometer", r"\b(thermometer|temperature|temp)\b"),
        ("triangle", r"\btriangle\b"),
        ("circle", r"\bcircle\b"),
        ("key", r"\bkey\b"),
        ("snowflake", r"\b(snowflake|snow flake|star)\b"),
        ("spanner", r"\b(spanner|wrench)\b"),
        ("plug", r"\bplug\b"),
        ("steering", r"\bsteering\b"),
        ("seat belt", r"\b(seat ?belt|belt)\b"),
        ("door", r"\bdoor\b"),
        ("car", r"\bcar (with|skidding|and wavy|with wavy)\b"),
        ("airbag", r"\bairbag"),
        ("abs", r"\babs\b"),
        ("brake", r"\bbrakes?\b"),
        ("fuel pump", r"\b(fuel pump|petrol pump|gas pump)\b"),
        ("lane", r"\blane\b"),
        ("collision", r"\bcollision\b"),
        ("blind spot", r"\bblind ?spot\b"),
        ("cruise", r"\bcruise\b"),
        ("stability", r"\b(stability|traction|skid)"),
    ]
    .into_iter()
    .map(|(name, pattern)| (name, re(pattern)))
    .collect()
});

static CHARGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(charge|charged|battery|electric|electricity|ev|kwh|plug in)\b"));
static FUEL: LazyLock<Regex> = LazyLock::new(|| re(r"\b(fuel|gas|petrol|tank|diesel|gallons?|litres?|liters?)\b"));

fn energy(t: &str) -> Option<Energy> {
    match (CHARGE.is_match(t), FUEL.is_match(t)) {
        (true, false) => Some(Energy::Charge),
        (false, true) => Some(Energy::Fuel),
        _ => None,
    }
}

static UNITS: LazyLock<Vec<(UnitAsked, Regex)>> = LazyLock::new(|| {
    [
        (
            UnitAsked::Economy(EconomyUnit::LPer100km),
            r"\b(l/100|l/100km|litres per (100|hundred)|liters per (100|hundred)|per 100 ?km|per hundred)",
        ),
        (UnitAsked::Mpg, r"\b(mpg|miles per gallon|miles to the gallon)\b"),
        (UnitAsked::Pressure(PressureUnit::Bar), r"\bbars?\b"),
        (UnitAsked::Pressure(PressureUnit::Kpa), r"\b(kpa|kilopascals?)\b"),
        (UnitAsked::Pressure(PressureUnit::Psi), r"\bpsi\b"),
        (
            UnitAsked::Distance(DistanceUnit::Km),
            r"\b(km|kms|kilometres?|kilometers?|klicks)\b",
        ),
        (UnitAsked::Distance(DistanceUnit::Mi), r"\b(in miles|miles)\b"),
    ]
    .into_iter()
    .map(|(unit, pattern)| (unit, re(pattern)))
    .collect()
});

fn unit(t: &str) -> Option<UnitAsked> {
    UNITS.iter().find(|(_, re)| re.is_match(t)).map(|(unit, _)| *unit)
}

static DAY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b((next|this|on|coming) )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tonight|tomorrow|weekend|week)( (morning|afternoon|evening|night))?\b",
    )
});
static CLOCK: LazyLock<Regex> = LazyLock::new(|| re(r"\b(at )?\d{1,2}(:\d{2})? ?(am|pm|oclock)\b"));
static PART_ALONE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(in the )?(morning|afternoon|evening)\b"));

/// A day (with its part of the day), else a clock time, else a part of the day.
fn when(t: &str) -> Option<String> {
    [&*DAY, &*CLOCK, &*PART_ALONE]
        .iter()
        .find_map(|re| re.find(t))
        .map(|m| m.as_str().trim().to_string())
}
static PART_OF_DAY: LazyLock<Regex> = LazyLock::new(|| re(r"\b(morning|afternoon|evening|tonight|night)\b"));

fn part_of_day(word: &str) -> &'static str {
    match word {
        "morning" => "morning",
        "afternoon" => "afternoon",
        "evening" => "evening",
        _ => "night",
    }
}

static NOW: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(right now|now|currently|at the moment|at present|today|is (it|that|one|any|anything) (on|lit)|are (any|there any) .*\bon\b|lit up|which lights? (is|are) on|(is|are) on)\b",
    )
});
static FIXED_FACT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(how big|size|capacity|does (it|the car|this car|my car) (have|come with)|how much (does|can) (the|it|my) \w* ?(hold|take|tow|pull)|hold|holds|tow|towing|trailer|tread|how many years|how long (will|does|do|should) .* last|lifespan|life of|how often|interval|full tank|full battery|full charge|fully charged)\b",
    )
});
static EXPLAINS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(how (do|can|should|would) (i|you|we)|how to|how does|how do (they|you|the)|how long (does it|will it|to)|what (should|do) i do|should i|is it (bad|ok|okay) to|bad for|why (is|does|do|won't|wont|isn't|isnt)|(won't|wont|will not|doesn't|doesnt|isn't|isnt|not) (charge|charging|start|starting|open|come out))\b",
    )
});
static MORE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(tell me more|more|go on|more please|more detail|more details|carry on|keep going|and then|what else|continue)\b|\b(tell me more|more about (that|it)|more detail)\b",
    )
});
static FAILED: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(not working|doesnt work|didnt work|wont work|does not work|did not work|still stuck|still wont|still doesnt|still not",
        r"|(ive|i have|i already|ive already|i) tried (that|it|this|all that)",
        r"|(it|that|this|they) (wont|doesnt|didnt|will not|does not|did not|isnt) (open|close|work|start|unlock|lock|come out",
        r"|come off|turn on|turn off|release|budge|move|connect|pair|charge))\b",
    ))
});
static CODE: LazyLock<Regex> = LazyLock::new(|| re(r"\b([pbcu][0-3][0-9a-f]{3})\b"));
static ASKS_FOR_HELP: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(help|someone|somebody|anyone|send|tow|towed|towing|recovery|rescue|assistance|mechanic|stranded",
        r"|breakdown|broke down|broken down|come out to|come and)\b",
    ))
});
static BOOKS: LazyLock<Regex> = LazyLock::new(|| re(r"\b(book|booking|appointment)\b"));
static ASKS: LazyLock<Regex> =
    LazyLock::new(|| re(r"^((and|so|then|but|ok|okay) )?(why|how|hows|what|whats|when|where|wheres|which|who|whos)\b"));
static SIGNS_OFF: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(ok|okay|alright|right|great|cool|perfect|fine|got it|sounds good)( then)? i ?(ll|will) .*\b(thanks|thank you|cheers)$",
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tyres_are_found_by_position_pair_and_all() {
        assert_eq!(Slots::of("and the back ones?").wheels, ["rear left", "rear right"]);
        assert_eq!(Slots::of("what about the front right").wheels, ["front right"]);
        assert_eq!(Slots::of("just the rear left").wheels, ["rear left"]);
        assert_eq!(Slots::of("give me all four").wheels, WHEELS);
        assert_eq!(Slots::of("the front tyres").wheels, ["front left", "front right"]);
        assert_eq!(Slots::of("left side tyres").wheels, ["front left", "rear left"]);
        assert!(Slots::of("what's the right pressure").wheels.is_empty());
        assert!(Slots::of("call me back").wheels.is_empty());
        assert!(Slots::of("is it on right now").wheels.is_empty());
    }

    #[test]
    fn what_did_not_work() {
        assert!(Slots::of("it's not working").failed);
        assert!(Slots::of("that didn't work").failed);
        assert!(Slots::of("i unlocked it and it's still stuck").failed);
        assert!(!Slots::of("how does it work").failed);
        assert!(Slots::of("it won't open").failed);
        assert!(Slots::of("i've tried that").failed);
        assert!(!Slots::of("i did it thanks").failed, "it worked");
        assert!(!Slots::of("my car won't start").failed, "not about what the car said");
        assert!(!Slots::of("is the charger working").failed);
    }

    #[test]
    fn parts_of_a_car() {
        for said in [
            "how do i open the sunroof",
            "how do i put the handbrake on in this thing",
            "how heavy a trailer can i pull with this",
            "do i need to change any settings for towing",
            "how often does this car need servicing",
            "the charging cable is stuck",
            "how do i turn on the massage function in my seat",
            "how many litres is the boot of the car",
        ] {
            assert!(Slots::of(said).car_part, "{said}");
        }
        for said in [
            "i need a window seat please",
            "the kettle has stopped working",
            "who won the golden boot",
            "turn the lights off in the kitchen",
            "my phone battery is dying",
            "book a car rental for friday",
            "is there a map",
        ] {
            assert!(!Slots::of(said).car_part, "{said}");
        }
    }

    #[test]
    fn places() {
        assert!(Slots::of("how far is the nearest tyre shop").place);
        assert!(Slots::of("how far is key west by car").place);
        assert!(Slots::of("is there traffic on the way home").place);
        assert!(!Slots::of("whats the ground clearance").place);
        assert!(!Slots::of("does the car have rear cross traffic alert").place);
    }

    #[test]
    fn signing_off() {
        assert!(Slots::of("ok i'll pump it up thanks").signs_off);
        assert!(Slots::of("great, I'll check it tomorrow. Thank you!").signs_off);
        assert!(!Slots::of("ok can you book me in thanks").signs_off);
        assert!(!Slots::of("ok i'll need a tow").signs_off);
    }

    #[test]
    fn fault_codes() {
        assert_eq!(Slots::of("what does P0420 mean").code.as_deref(), Some("P0420"));
        assert_eq!(Slots::of("i got a p0a80 code").code.as_deref(), Some("P0A80"));
        assert_eq!(Slots::of("is p5 ok").code, None);
        assert_eq!(Slots::of("call 1234").code, None);
    }

    #[test]
    fn bookings_and_questions() {
        assert!(Slots::of("book me in then").books);
        assert!(Slots::of("can i get an appointment").books);
        assert!(!Slots::of("yes please").books);
        assert!(Slots::of("why do i have to wait").asks);
        assert!(Slots::of("What's that light").asks);
        assert!(!Slots::of("yes why not").asks);
        assert!(!Slots::of("why not").asks, "a yes");
        assert!(!Slots::of("no thanks").asks);
    }

    #[test]
    fn units_fuel_and_charge() {
        assert_eq!(Slots::of("in bar").unit, Some(UnitAsked::Pressure(PressureUnit::Bar)));
        assert_eq!(
            Slots::of("and in kPa").unit,
            Some(UnitAsked::Pressure(PressureUnit::Kpa))
        );
        assert_eq!(Slots::of("in km").unit, Some(UnitAsked::Distance(DistanceUnit::Km)));
        assert_eq!(
            Slots::of("what about the range in kilometres").unit,
            Some(UnitAsked::Distance(DistanceUnit::Km))
        );
        assert_eq!(
            Slots::of("in litres per hundred").unit,
            Some(UnitAsked::Economy(EconomyUnit::LPer100km))
        );
        assert_eq!(Slots::of("how many miles per gallon").unit, Some(UnitAsked::Mpg));
        assert_eq!(Slots::of("and the charge?").energy, Some(Energy::Charge));
        assert_eq!(Slots::of("how much gas is left").energy, Some(Energy::Fuel));
        assert_eq!(Slots::of("fuel and battery").energy, None);
    }

    #[test]
    fn lights_are_described_by_colour_and_shape() {
        let s = Slots::of("there's an orange horseshoe looking thing with an exclamation in it");
        assert_eq!(s.colour, Some("yellow"));
        assert_eq!(s.shapes, ["horseshoe", "exclamation"]);
        let s = Slots::of("what does the red oil can symbol mean");
        assert_eq!(s.colour, Some("red"));
        assert_eq!(s.shapes, ["oil can"]);
    }

    #[test]
    fn days_times_now_facts_and_more() {
        assert_eq!(
            Slots::of("book a service for next friday morning").when.as_deref(),
            Some("next friday morning")
        );
        assert_eq!(
            Slots::of("can i bring it in tomorrow").when.as_deref(),
            Some("tomorrow")
        );
        assert_eq!(
            Slots::of("the light came on this morning can i bring it in tomorrow")
                .when
                .as_deref(),
            Some("tomorrow")
        );
        assert_eq!(
            Slots::of("make it the afternoon instead").part_of_day,
            Some("afternoon")
        );
        assert_eq!(Slots::of("at 3pm").when.as_deref(), Some("at 3pm"));
        assert!(Slots::of("is it on right now").now);
        assert!(Slots::of("are there any warning lights on").now);
        assert!(!Slots::of("what does the oil light mean").now);
        assert!(Slots::of("how big is the fuel tank").fixed_fact);
        assert!(Slots::of("how many gallons does the tank hold").fixed_fact);
        assert!(Slots::of("how heavy a trailer can i pull").fixed_fact);
        assert!(Slots::of("how many years will the hybrid battery last").fixed_fact);
        assert!(!Slots::of("how much fuel do i have").fixed_fact);
        assert!(Slots::of("how do i charge it at home").explains);
        assert!(Slots::of("i'm nearly out of petrol what should i do").explains);
        assert!(Slots::of("how long does it take to charge").explains);
        assert!(!Slots::of("how much fuel do i have").explains);
        assert!(!Slots::of("can i make it to the next town").explains);
        assert!(!Slots::of("how far can i go").explains);
        assert!(Slots::of("the car won't charge").explains);
        assert!(Slots::of("is charging to 100 percent bad for the battery").explains);
        assert!(Slots::of("what's the fuel tank size").fixed_fact);
        assert!(Slots::of("does the car have wifi").fixed_fact);
        assert!(Slots::of("tell me more").more);
        assert!(Slots::of("tell me more about that").more);
        assert!(!Slots::of("i need more fuel").more);
        assert!(!Slots::of("check the rest of the tyres").more);
        assert!(Slots::of("").is_empty());
    }

    #[test]
    fn a_problem_is_told_apart_from_a_call_for_help() {
        for said in [
            "my tyre is flat can you send someone",
            "i've broken down on the motorway",
            "i need a tow",
            "the car won't start please help",
            "can a mechanic come out to me",
        ] {
            assert!(Slots::of(said).asks_for_help, "{said}");
        }
        for said in [
            "the charging cable is stuck and won't come out of the car",
            "the fuel flap won't open",
            "how do i release the handbrake",
        ] {
            assert!(!Slots::of(said).asks_for_help, "{said}");
        }
    }
}
