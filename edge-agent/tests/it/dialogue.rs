//! The dialogue on the shipped model and pack: offer the cloud then affirm, offer
//! a human then affirm, cancel, repeat, and urgent before everything.

use std::sync::Arc;

use daemon::locate;
use edge_agent::cli::ModelArgs;
use edge_agent::config::Config;
use edge_agent::dialogue::{Assistant, Handling, PendingQuestion, Session, Turn};
use edge_agent::knowledge_base;
use edge_agent::store::{Priority, Retention, Store};
use edge_agent::vehicle::VehicleState;
use models::{Intent, Route};

struct Car {
    assistant: Assistant,
    store: Store,
    state: VehicleState,
    session: Session,
    _dir: tempfile::TempDir,
}

impl Car {
    fn new() -> Car {
        Car::with_config(Config::embedded())
    }

    fn with_config(config: Config) -> Car {
        let dir = tempfile::tempdir().unwrap();
        let classifier = Arc::new(locate::load_classifier(&ModelArgs::default()).unwrap());
        let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
        let db = dir.path().join("kb.sqlite");
        knowledge_base::build(&locate::find_pack_dir("").unwrap(), &db, embedder.as_ref()).unwrap();
        let kb = Arc::new(knowledge::KnowledgeBase::open(&db, embedder).unwrap());
        let store = Store::in_memory(Retention {
            days: 30,
            max_turns_per_conversation: 100,
        })
        .unwrap();
        Car {
            assistant: Assistant::new(config, classifier, kb),
            store,
            state: VehicleState::demo(),
            session: Session::new("test"),
            _dir: dir,
        }
    }

    fn say(&mut self, text: &str) -> Turn {
        self.assistant
            .respond(&mut self.session, &self.state, &self.store, text)
            .unwrap()
    }

    fn pending(&self) -> Vec<(String, Priority)> {
        self.store
            .pending_escalations()
            .unwrap()
            .into_iter()
            .map(|p| (p.intent, p.priority))
            .collect()
    }
}

const ANGRY_LOCAL: &str = "i hate this car why is the check engine light on again";

#[test]
fn what_the_car_cannot_answer_is_offered_to_the_cloud_and_yes_sends_it() {
    let mut car = Car::new();
    let first = car.say("blah blah wibble");
    assert_eq!(first.understood.intent, Intent::OutOfScope);
    assert_eq!(first.pending_question, Some(PendingQuestion::AskCloud));
    assert!(first.answer.contains("Kestrel Assist"), "{}", first.answer);
    assert!(first.escalation.is_none());
    assert!(first.sources.is_empty(), "never answered from the manual");
    assert!(car.pending().is_empty(), "nothing leaves before the driver agrees");
    let yes = car.say("yes please");
    assert_eq!(yes.handling, Handling::Escalated);
    assert_eq!(yes.understood.route, Route::Cloud);
    assert!(yes.answer.contains("once the car is back online"), "{}", yes.answer);
    assert_eq!(car.pending(), [("out_of_scope".to_string(), Priority::Normal)]);
    let queued = car.store.pending_escalations().unwrap();
    assert_eq!(
        queued[0].payload["utterance"], "blah blah wibble",
        "the question asked, not the yes"
    );
    // Declined, nothing more is queued; an understood turn in between drops the offer.
    car.say("zork");
    assert_eq!(car.say("no").answer, "Okay, I'll leave it.");
    car.say("zork");
    car.say("how much fuel do i have");
    let yes = car.say("yes");
    assert_eq!(yes.handling, Handling::Answered);
    assert_eq!(car.pending().len(), 1);
}

#[test]
fn strong_frustration_on_a_local_question_is_answered_and_a_human_offered() {
    let mut car = Car::new();
    let offer = car.say(ANGRY_LOCAL);
    assert_eq!(offer.understood.route, Route::Local);
    assert!(
        offer.understood.sentiment_score <= Config::embedded().assistant.offer_human_at_or_below,
        "{}",
        offer.understood.sentiment_score
    );
    // A plain question the sentiment model scores low is not offered one.
    let plain = Car::new().say("any warning lights on");
    assert_ne!(
        plain.pending_question,
        Some(PendingQuestion::OfferAgent),
        "{}",
        plain.answer
    );
    assert!(
        offer.answer.starts_with("The yellow engine outline"),
        "{}",
        offer.answer
    );
    assert!(
        offer.answer.ends_with("connect you to a person at Kestrel Assist?"),
        "{}",
        offer.answer
    );
    assert_eq!(offer.pending_question, Some(PendingQuestion::OfferAgent));
    assert!(
        car.pending().is_empty(),
        "nothing is escalated before the driver agrees"
    );

    let yes = car.say("yes please");
    assert_eq!(yes.understood.intent, Intent::Affirm);
    assert_eq!(yes.handling, Handling::Escalated);
    assert_eq!(yes.understood.route, Route::Cloud);
    assert_eq!(car.pending(), [("talk_to_agent".to_string(), Priority::Normal)]);

    // What the manual lacks (a how-to) or the car cannot answer at all (out of
    // scope), asked in anger, is offered to a person, who gets the question, not
    // the "yes".
    for (angry, read_as) in [
        (
            "this useless car, how the hell do i turn the massage seats on, i'm sick of it",
            Intent::FeatureHowto,
        ),
        (
            "this is ridiculous, what time does the stupid cinema open",
            Intent::OutOfScope,
        ),
    ] {
        let mut car = Car::new();
        let offer = car.say(angry);
        assert_eq!(offer.understood.intent, read_as, "{}", offer.answer);
        assert!(offer.sources.is_empty(), "{:?}", offer.sources);
        assert_eq!(
            offer.pending_question,
            Some(PendingQuestion::OfferAgent),
            "{}",
            offer.answer
        );
        car.say("yes please");
        let sent = car.store.pending_escalations().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].intent.as_str(), &sent[0].payload["utterance"]),
            ("talk_to_agent", &serde_json::json!(angry))
        );
    }

    // Declined, nothing is queued; and without a question, yes is just polite.
    let mut car = Car::new();
    car.say(ANGRY_LOCAL);
    let no = car.say("no thanks");
    assert_eq!(no.understood.intent, Intent::Deny);
    assert!(no.answer.contains("no agent"), "{}", no.answer);
    let yes = car.say("yes");
    assert_eq!(yes.handling, Handling::Answered);
    assert!(car.pending().is_empty());
}

#[test]
fn a_follow_up_continues_the_last_turn_but_a_confident_request_stands() {
    let mut car = Car::new();
    car.say("how much fuel have i got");
    let in_km = car.say("in km");
    assert_eq!(in_km.understood.intent, Intent::FuelLevel, "{}", in_km.answer);
    assert!(in_km.answer.contains("402 km"), "{}", in_km.answer);
    car.say("what are my tyre pressures");
    let blown = car.say("rear tyre blew tow");
    assert_eq!(blown.understood.intent, Intent::RoadsideAssistance, "{}", blown.answer);
    assert_eq!(blown.understood.route, Route::Cloud);
}

#[test]
fn why_right_after_an_article_reads_its_explanation_but_only_about_what_it_said() {
    let mut car = Car::new();
    car.say("how do i open the fuel door");
    let why = car.say("why do i have to wait");
    assert!(why.answer.contains("pressure"), "{}", why.answer);
    assert_eq!(why.sources, ["howto-fuel-filler"]);
    car.say("how do i open the fuel door");
    let other = car.say("why is the sky blue");
    assert!(other.sources.is_empty(), "{}", other.answer);
    assert_eq!(other.understood.intent, Intent::OutOfScope, "{}", other.answer);
}

#[test]
fn a_pronoun_in_a_follow_up_is_what_the_last_turn_was_about() {
    let mut car = Car::new();
    car.say("how much tread should my tires have");
    let rotated = car.say("how often should they be rotated");
    assert_eq!(rotated.sources, ["tire-rotation"], "{}", rotated.answer);
    // Without the turn before, "they" is nobody.
    let mut car = Car::new();
    let alone = car.say("how often should they be rotated");
    assert!(alone.sources.is_empty(), "{}", alone.answer);
}

#[test]
fn a_question_naming_a_part_of_the_car_is_about_the_car_whatever_the_gate_says() {
    // The gate calls all three out of scope; each names a part of a car.
    let mut car = Car::new();
    let brake = car.say("how do i put the handbrake on in this thing");
    assert_eq!(brake.understood.intent, Intent::FeatureHowto, "{}", brake.answer);
    assert_eq!(brake.sources, ["howto-parking-brake"], "{}", brake.answer);
    // "It" is what the last answer was about.
    let off = car.say("and how do i let it off");
    assert_eq!(off.sources, ["howto-parking-brake"], "{}", off.answer);

    let mut car = Car::new();
    let sunroof = car.say("how do i open the sunroof");
    assert_eq!(sunroof.understood.route, Route::Local);
    assert!(sunroof.sources.is_empty(), "{:?}", sunroof.sources);
    assert!(sunroof.answer.contains("manual"), "{}", sunroof.answer);
    assert_eq!(sunroof.pending_question, Some(PendingQuestion::AskCloud));

    // Without a part of a car, the gate stands.
    let mut car = Car::new();
    let bus = car.say("when is the next bus into town");
    assert_eq!(bus.understood.intent, Intent::OutOfScope, "{}", bus.answer);
}

#[test]
fn short_follow_ups_ask_about_what_was_just_said() {
    // A bare "how much?" is about the oil just named.
    let mut car = Car::new();
    car.say("what oil does it take");
    let much = car.say("how much");
    assert_eq!(much.understood.intent, Intent::OilChangeHow, "{}", much.answer);
    assert!(much.answer.contains("4.4"), "{}", much.answer);
    // The cause of a light is in its article's explanation, and "tell me more"
    // reads on to the end of the article.
    let mut car = Car::new();
    car.say("the engine light came on");
    let cause = car.say("what could it be");
    assert!(cause.answer.contains("fuel cap"), "{}", cause.answer);
    // "The switch" is the one for what was just explained; so is "the
    // release", which the model alone reads as out of scope.
    let mut car = Car::new();
    car.say("how do i turn the auto wipers off");
    let switch = car.say("where is the switch");
    assert_eq!(switch.sources, ["howto-wipers"], "{}", switch.answer);
    let mut car = Car::new();
    car.say("how do i open the fuel door");
    let release = car.say("where's the release");
    assert_eq!(release.sources, ["howto-fuel-filler"], "{}", release.answer);
    // After a low tyre, "can I still drive" is about the tyre, not the range.
    let mut car = Car::new();
    car.say("my tyre light is on");
    let drive = car.say("can i still drive");
    assert_eq!(drive.understood.intent, Intent::TirePressure, "{}", drive.answer);
}

#[test]
fn an_advice_question_after_a_warning_is_about_the_warning_unless_it_names_danger() {
    let mut car = Car::new();
    car.say("theres a red light that looks like a thermometer in water");
    let advice = car.say("should i pull over");
    assert_eq!(advice.understood.intent, Intent::WarningLight, "{}", advice.answer);
    assert!(advice.answer.contains("Pull over"), "{}", advice.answer);
    assert!(car.pending().is_empty(), "no alert for advice");
    // Danger named, or no warning before: the emergency stands.
    let smoke = car.say("should i pull over theres smoke");
    assert_eq!(smoke.understood.intent, Intent::Emergency, "{}", smoke.answer);
    let mut car = Car::new();
    let alone = car.say("should i pull over");
    assert_eq!(alone.understood.intent, Intent::Emergency, "{}", alone.answer);

    // A pronoun question read as routes, right after a how-to, is about it.
    let mut car = Car::new();
    car.say("how do i charge the car");
    let long = car.say("how long will it take");
    assert_eq!(long.understood.route, Route::Local, "{}", long.answer);
    assert!(long.answer.contains("hours"), "{}", long.answer);
    // "It won't open" after a how-to is not a "no".
    let mut car = Car::new();
    car.say("how do i open the fuel door");
    let stuck = car.say("it won't open");
    assert_ne!(stuck.understood.intent, Intent::Deny, "{}", stuck.answer);
}

#[test]
fn an_articles_name_said_word_for_word_outranks_an_unsure_reading() {
    // The model reads it as a fuel question; it is the tyre size's alias.
    let mut car = Car::new();
    let tyres = car.say("what tyres does it take");
    assert_eq!(tyres.sources, ["tire-size"], "{}", tyres.answer);
    // A name that is only part of a longer question does not.
    let mut car = Car::new();
    let light = car.say("fuel warning lamp came on how far can i go");
    assert_ne!(light.sources, ["fuel-range-estimate"], "{}", light.answer);
}

#[test]
fn signing_off_with_thanks_is_a_goodbye() {
    let mut car = Car::new();
    car.say("what pressure should my tyres be");
    let bye = car.say("ok i'll pump it up thanks");
    assert_eq!(bye.understood.intent, Intent::Goodbye, "{}", bye.answer);
    assert!(bye.answer.contains("welcome"), "{}", bye.answer);
}

#[test]
fn what_did_not_work_gets_the_next_step_then_a_person_but_a_tow_stands() {
    let mut car = Car::new();
    let how = car.say("how do i connect my phone");
    assert_eq!(how.sources, ["howto-pair-phone"]);
    let next = car.say("it's not working");
    assert!(next.answer.contains("If pairing fails"), "{}", next.answer);
    let person = car.say("it's still not working");
    assert_eq!(
        person.pending_question,
        Some(PendingQuestion::OfferAgent),
        "{}",
        person.answer
    );
    car.say("yes");
    assert_eq!(car.pending(), [("talk_to_agent".to_string(), Priority::Normal)]);

    let mut car = Car::new();
    car.say("how do i jump start the car");
    let tow = car.say("it still won't start i need a tow");
    assert_eq!(tow.understood.intent, Intent::RoadsideAssistance, "{}", tow.answer);
    assert_eq!(tow.handling, Handling::Escalated);
}

#[test]
fn a_problem_the_driver_can_fix_gets_the_how_to_but_a_call_for_help_is_roadside() {
    let mut car = Car::new();
    let stuck = car.say("the charging cable is stuck and won't come out of the car");
    assert_eq!(stuck.sources, ["howto-release-charge-cable"], "{}", stuck.answer);
    assert_eq!(stuck.understood.route, Route::Local);
    assert!(car.pending().is_empty(), "nothing is queued for a how-to");

    let mut car = Car::new();
    let help = car.say("my charging cable is stuck can you send someone to help");
    assert_eq!(help.understood.intent, Intent::RoadsideAssistance, "{}", help.answer);
    assert_eq!(help.handling, Handling::Escalated);
}

#[test]
fn a_fault_code_read_out_is_explained_and_checked_against_the_car() {
    let mut car = Car::new();
    let known = car.say("what does P0420 mean");
    assert!(
        known.answer.starts_with("P0420 means catalytic converter"),
        "{}",
        known.answer
    );
    assert_eq!(known.sources, ["health-fault-codes"]);
    let unknown = car.say("what's code p1234");
    assert_eq!(unknown.understood.intent, Intent::VehicleHealth, "{}", unknown.answer);
    assert!(
        unknown.answer.starts_with("I don't know P1234 itself."),
        "{}",
        unknown.answer
    );
}

#[test]
fn a_yes_that_asks_for_a_booking_books() {
    let mut car = Car::new();
    car.say(ANGRY_LOCAL);
    let book = car.say("book me in then");
    assert_eq!(book.understood.intent, Intent::BookService, "{}", book.answer);
    assert_eq!(car.pending(), [("book_service".to_string(), Priority::Normal)]);
}

#[test]
fn only_a_question_about_a_light_may_name_it_without_saying_light() {
    let mut car = Car::new();
    let tank = car.say("how big is the petrol tank");
    assert_eq!(tank.sources, ["fuel-tank-capacity"], "{}", tank.answer);
    let light = car.say("what does the petrol light mean");
    assert_eq!(
        light.sources.first().map(String::as_str),
        Some("light-low-fuel"),
        "{}",
        light.answer
    );
}

#[test]
fn cancel_withdraws_the_request_just_made_but_never_an_emergency() {
    let mut car = Car::new();
    car.say("book a service for friday");
    assert_eq!(car.pending().len(), 1);
    let cancel = car.say("cancel that");
    assert_eq!(cancel.understood.intent, Intent::Cancel);
    assert!(cancel.answer.contains("withdrawn"), "{}", cancel.answer);
    assert!(car.pending().is_empty());

    // Cancel acts on the last turn only.
    car.say("book a service for friday");
    car.say("how much fuel do i have");
    assert!(!car.say("cancel that").answer.contains("withdrawn"));
    assert_eq!(car.pending().len(), 1);

    let emergency = car.say("there's smoke and fire coming from the engine");
    assert_eq!(emergency.understood.intent, Intent::Emergency);
    car.say("cancel that");
    assert!(car.pending().contains(&("emergency".to_string(), Priority::Urgent)));
}

#[test]
fn repeat_says_the_last_answer_again_and_keeps_the_question_open() {
    let mut car = Car::new();
    let first = car.say("say that again");
    assert!(first.answer.contains("haven't said anything"), "{}", first.answer);
    let offer = car.say(ANGRY_LOCAL);
    let again = car.say("sorry what did you say");
    assert_eq!(again.understood.intent, Intent::Repeat);
    assert_eq!(again.answer, offer.answer);
    let again = car.say("say that again");
    assert_eq!(again.answer, offer.answer, "a repeat is not a new answer to repeat");
    assert_eq!(
        car.say("yes").handling,
        Handling::Escalated,
        "the offer survived the repeats"
    );
}

#[test]
fn an_emergency_bypasses_a_pending_question_and_the_gate() {
    let mut car = Car::new();
    car.say(ANGRY_LOCAL);
    car.say("blah blah wibble");
    let turn = car.say("help we just had an accident and someone is hurt");
    assert_eq!(turn.understood.intent, Intent::Emergency);
    assert_eq!(turn.understood.route, Route::Urgent);
    assert!(turn.answer.starts_with("Call 911 now"), "{}", turn.answer);
    let queued = car.store.pending_escalations().unwrap();
    assert_eq!(queued[0].priority, Priority::Urgent);
    assert!(
        queued[0].payload["vehicle"]["location"]["latitude"].is_number(),
        "the location goes with it"
    );
    assert!(
        queued[0].payload["vehicle"].get("fuel_percent").is_none(),
        "only the minimum set"
    );
}

/// A car with much to say: warnings, codes, low fuel and tyres, an overdue service.
fn troubled(market: &str) -> VehicleState {
    let mut state = VehicleState::demo();
    state
        .apply(
            &serde_json::json!({
                "market": market,
                "fuel_percent": 8, "fuel_range_km": 55,
                "warning_lights": ["check_engine", "oil_pressure", "no_such_light"],
                "dtcs": ["P0420", "P1234"],
                "tire_pressure_kpa": {"front_left": 150, "front_right": 241, "rear_left": 170, "rear_right": 241},
                "last_service": {"date": "2024-01-10", "odometer_km": 1000.0},
                "charging": "charging",
            }),
            "test",
        )
        .unwrap();
    state
}

#[test]
fn every_answer_is_at_most_two_whole_sentences_and_local_answers_cite_articles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/eval");
    let mut texts = Vec::new();
    for name in ["dev.jsonl", "dev2.jsonl", "real_car.jsonl", "assistant.jsonl"] {
        texts.extend(
            models::corpus::load_jsonl(&root.join(name))
                .unwrap()
                .into_iter()
                .map(|e| e.text),
        );
    }
    let mut car = Car::new();
    for state in [VehicleState::demo(), troubled("UK"), troubled("DE")] {
        car.state = state;
        for (i, text) in texts.iter().enumerate() {
            car.session = Session::new(format!("s{i}"));
            let turn = car.say(text);
            let sentences = knowledge::pack::count_sentences(&turn.answer);
            assert!(sentences <= 2, "{text:?} -> {sentences} sentences: {}", turn.answer);
            assert!(
                turn.answer.ends_with(['.', '?', '!']),
                "{text:?} -> cut off: {}",
                turn.answer
            );
            let dialogue_label = matches!(
                turn.understood.intent,
                Intent::Affirm | Intent::Deny | Intent::Cancel | Intent::Repeat | Intent::Greeting | Intent::Goodbye
            );
            let words = turn.answer.split_whitespace().count();
            assert!(words <= 30, "{text:?} -> {words} words: {}", turn.answer);
            // A local answer cites its articles, or says honestly the manual has
            // none and offers the cloud (or, to an upset driver, a person).
            if turn.handling == Handling::Answered && turn.understood.route == Route::Local && !dialogue_label {
                assert!(
                    !turn.sources.is_empty() || turn.pending_question.is_some(),
                    "{text:?} cites nothing and offers nothing: {}",
                    turn.answer
                );
            }
            if turn.understood.intent == Intent::Emergency {
                let number = if car.state.market.as_deref() == Some("UK") {
                    "999"
                } else if car.state.market.as_deref() == Some("DE") {
                    "112"
                } else {
                    "911"
                };
                assert!(
                    turn.answer.starts_with(&format!("Call {number} now")),
                    "{}",
                    turn.answer
                );
            }
        }
    }
}

#[test]
fn live_answers_speak_the_markets_units() {
    let mut car = Car::new();
    car.state = troubled("UK");
    let fuel = car.say("how much fuel have i got");
    assert!(
        fuel.answer.contains("8% fuel, about 34 miles") && fuel.answer.contains("Fuel is low"),
        "{}",
        fuel.answer
    );
    let tyres = car.say("what are my tyre pressures");
    assert!(
        tyres
            .answer
            .starts_with("Front left and rear left are low, at 22 and 25 psi"),
        "{}",
        tyres.answer
    );
    let health = car.say("is there anything wrong with the car");
    assert!(
        health.answer.contains("check engine light") && health.answer.contains("P0420, catalytic"),
        "{}",
        health.answer
    );
    let oil = car.say("when is my next oil change");
    assert!(oil.answer.starts_with("Your service is overdue by"), "{}", oil.answer);
    car.state = troubled("DE");
    let tyres = car.say("what are my tyre pressures");
    assert!(
        tyres.answer.contains("1.5 and 1.7 bar against the recommended 2.4"),
        "{}",
        tyres.answer
    );
}

#[test]
fn personal_data_is_redacted_and_location_coarsened_before_an_escalation_is_queued() {
    let mut car = Car::new();
    car.say("please schedule a service appointment and text me on 07700 900123 or jo@example.com");
    car.say("my car broke down please send a tow truck, my card is 4111 1111 1111 1111");
    let queued = car.store.pending_escalations().unwrap();
    assert_eq!(queued.len(), 2);
    let booking = &queued
        .iter()
        .find(|q| q.intent == "book_service")
        .expect("booking queued")
        .payload;
    let roadside = &queued.iter().find(|q| q.intent != "book_service").unwrap().payload;
    let text = booking["utterance"].as_str().unwrap();
    assert!(
        text.contains("[phone]") && text.contains("[email]") && !text.contains("900123"),
        "{text}"
    );
    assert_eq!(
        booking["vehicle"]["location"]["latitude"], 37.78,
        "coarse for a booking"
    );
    assert_eq!(booking["vehicle"]["location"]["name"], "San Francisco");
    assert!(roadside["utterance"].as_str().unwrap().contains("[card]"));
    assert_eq!(
        roadside["vehicle"]["location"]["latitude"], 37.7793,
        "precise for roadside help"
    );
    assert!(
        roadside["recent_turns"][0]["text"]
            .as_str()
            .unwrap()
            .contains("[phone]"),
        "recent turns are redacted too: {}",
        roadside["recent_turns"]
    );
    // The car's own history keeps what the driver said.
    let history = car.store.turns("test").unwrap();
    assert!(history[0].text.contains("07700 900123"));
}

#[test]
fn with_cloud_consent_off_only_an_emergency_leaves() {
    let mut config = Config::embedded();
    config.privacy.cloud_consent = false;
    let mut car = Car::with_config(config);
    let booking = car.say("book a service for friday");
    assert!(booking.escalation.is_none());
    assert!(
        booking.answer.contains("switched off in the privacy settings"),
        "{}",
        booking.answer
    );
    let angry = car.say(ANGRY_LOCAL);
    assert!(
        angry.pending_question.is_none(),
        "no human is offered who cannot be reached"
    );
    let unknown = car.say("blah blah wibble");
    assert!(
        unknown.pending_question.is_none(),
        "no cloud is offered that cannot be reached"
    );
    assert!(unknown.answer.contains("switched off"), "{}", unknown.answer);
    car.say("yes");
    assert!(car.pending().is_empty());
    let emergency = car.say("there's been a crash and someone is badly hurt");
    assert_eq!(emergency.understood.intent, Intent::Emergency);
    assert_eq!(car.pending(), [("emergency".to_string(), Priority::Urgent)]);
}

#[test]
fn a_full_outbox_drops_the_oldest_request_and_says_so() {
    let mut config = Config::embedded();
    config.outbox.max_queued = 2;
    let mut car = Car::with_config(config);
    car.say("book a service for friday");
    car.say("i want to make a complaint about the dealer");
    let third = car.say("is there traffic on the way to work");
    assert_eq!(third.handling, Handling::Escalated);
    assert_eq!(third.dropped.len(), 1, "{:?}", third.dropped);
    assert_eq!(third.dropped[0].intent, "book_service");
    let queued: Vec<String> = car.pending().into_iter().map(|(i, _)| i).collect();
    assert_eq!(queued, ["complaint", "traffic"]);
    let emergency = car.say("we crashed and my daughter is hurt");
    assert_eq!(emergency.dropped.len(), 1);
    assert_eq!(car.pending()[0], ("emergency".to_string(), Priority::Urgent));
}
