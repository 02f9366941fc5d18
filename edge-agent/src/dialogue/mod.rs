//! The dialogue: one driver turn in, one spoken answer out.
//!
//! It owns routing (the contract's routes and gate), the one pending question a
//! conversation may have (a person, or asking the cloud what the car cannot
//! answer), intents answered in kind, follow-ups, two requests in one line, cancel
//! and repeat, and queueing escalations. An escalation is stored as `pending`
//! until the uplink delivers it, and the driver is told honestly that it will be
//! answered shortly, or once the car is back online.
//!
//! **Invariant:** an `urgent` intent bypasses everything: no gate, no follow-up
//! reading, no pending question. The driver always hears the market's emergency
//! number.

pub mod answer;
mod car_words;
pub mod follow_up;
mod respond;
pub mod retrieval;
pub mod slots;
pub mod spoken;

use std::sync::Arc;

use knowledge::KnowledgeBase;
use models::{Classifier, Intent, Prediction, Route};
use serde::Serialize;

use crate::config::Config;
use crate::privacy::Privacy;
use crate::store::{Priority, Store, TurnRecord};
use crate::vehicle::VehicleState;
use answer::{first_sentence, local_answer, Answer, AnswerContext};
use follow_up::Context;
use slots::Slots;

#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    #[error("cannot understand the utterance: {0}")]
    Model(#[from] models::ModelError),
    #[error(transparent)]
    Knowledge(#[from] knowledge::KnowledgeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A question the assistant asked and is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingQuestion {
    /// "Would you like me to connect you to a person?"
    OfferAgent,
    /// "Would you like me to ask the cloud?": the car could not answer.
    AskCloud,
    /// The cloud's answer asked something ("Friday at 9 at Bayview Motors: shall
    /// I book it?"): the driver's yes or no goes back to it.
    CloudAsked,
}

/// One conversation's dialogue state.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub id: String,
    pub pending: Option<PendingQuestion>,
    /// The question a "yes" to [`PendingQuestion::AskCloud`] sends.
    pub pending_text: Option<String>,
    /// What the cloud's question was about, for [`PendingQuestion::CloudAsked`].
    pub pending_intent: Option<Intent>,
    /// What was said last, for `repeat`.
    pub last_answer: Option<String>,
    /// What the last answer left unsaid, for "tell me more".
    pub more: Option<String>,
    /// What the last answered request was about, for follow-ups.
    pub context: Option<Context>,
    /// The escalation the previous turn queued, which `cancel` may withdraw.
    pub last_escalation: Option<i64>,
}

impl Session {
    pub fn new(id: impl Into<String>) -> Session {
        Session {
            id: id.into(),
            ..Session::default()
        }
    }

    /// The cloud's answer asked the driver something about `intent`: their next
    /// yes or no is the reply.
    pub fn cloud_asked(&mut self, intent: Intent, question: &str) {
        self.pending = Some(PendingQuestion::CloudAsked);
        self.pending_text = Some(question.to_string());
        self.pending_intent = Some(intent);
    }
}

/// What happened to a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Answered in the car.
    Answered,
    /// Below the gate: the driver was asked to say it another way.
    Rephrase,
    /// Queued for the cloud supervisor.
    Escalated,
}

/// The escalation a turn queued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationReceipt {
    pub id: i64,
    pub priority: Priority,
    /// `pending` until the uplink delivers it.
    pub status: &'static str,
}

/// One answered turn.
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    pub conversation_id: String,
    pub text: String,
    pub answer: String,
    /// What the model understood. `route` is where the turn actually went (an
    /// out-of-scope turn escalated, an accepted offer of a human goes to the cloud).
    #[serde(flatten)]
    pub understood: Prediction,
    pub handling: Handling,
    pub sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article: Option<knowledge::Article>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationReceipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_question: Option<PendingQuestion>,
    /// Earlier requests dropped from the outbox to make room for this one; their
    /// drivers are told.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<crate::store::Dropped>,
}

pub struct Assistant {
    config: Config,
    classifier: Arc<Classifier>,
    /// Swapped whole when a fleet update is applied; a turn answers from the
    /// base it loaded at its start.
    kb: crate::fleet::LiveKnowledge,
    privacy: Privacy,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant").field("kb", &self.kb.load()).finish()
    }
}

impl Assistant {
    pub fn new(config: Config, classifier: Arc<Classifier>, kb: Arc<KnowledgeBase>) -> Assistant {
        let privacy = Privacy::new(config.privacy.clone());
        Assistant {
            config,
            classifier,
            kb: Arc::new(arc_swap::ArcSwap::new(kb)),
            privacy,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The knowledge base answering now.
    pub fn knowledge(&self) -> Arc<KnowledgeBase> {
        self.kb.load_full()
    }

    /// The handle a fleet update swaps the knowledge base through.
    pub fn live_knowledge(&self) -> crate::fleet::LiveKnowledge {
        self.kb.clone()
    }

    /// Answers one turn, records it, and queues what must go to the cloud. Two
    /// requests in one line are answered both, the local half first.
    pub fn respond(
        &self,
        session: &mut Session,
        state: &VehicleState,
        store: &Store,
        text: &str,
    ) -> Result<Turn, DialogueError> {
        let prediction = self.classifier.classify(text)?;
        if prediction.intent != Intent::Emergency {
            if let Some((first, second)) = self.two_requests(text)? {
                return self.respond_to_both(session, state, store, text, first, second);
            }
        }
        self.respond_one(session, state, store, text, prediction)
    }

    /// The two halves of `text`, when it joins two confident requests for
    /// different things, one of which the car answers itself.
    fn two_requests(&self, text: &str) -> Result<Option<(Half, Half)>, DialogueError> {
        for joint in [" and also ", " and then ", " and ", " also ", " then "] {
            let Some((a, b)) = text.split_once(joint) else { continue };
            if a.split_whitespace().count() < 3 || b.split_whitespace().count() < 3 {
                continue;
            }
            let (pa, pb) = (self.classifier.classify(a)?, self.classifier.classify(b)?);
            // A complaint is how the driver feels about the other half, not a
            // second request.
            let requests = |p: &Prediction| {
                !matches!(p.intent, Intent::OutOfScope | Intent::Complaint)
                    && p.intent.route() != Route::Urgent
                    && !is_dialogue_label(p.intent)
            };
            let one_local = pa.intent.route() == Route::Local || pb.intent.route() == Route::Local;
            if requests(&pa) && requests(&pb) && pa.intent != pb.intent && one_local {
                return Ok(Some((
                    Half {
                        text: a.trim().to_string(),
                        prediction: pa,
                    },
                    Half {
                        text: b.trim().to_string(),
                        prediction: pb,
                    },
                )));
            }
        }
        Ok(None)
    }

    /// Answers both halves and says both: the turn is reported under the first
    /// half's intent, and goes to the cloud if either half does.
    fn respond_to_both(
        &self,
        session: &mut Session,
        state: &VehicleState,
        store: &Store,
        text: &str,
        first: Half,
        second: Half,
    ) -> Result<Turn, DialogueError> {
        let a = self.respond_one(session, state, store, &first.text, first.prediction)?;
        let b = self.respond_one(session, state, store, &second.text, second.prediction)?;
        let mut turn = a.clone();
        turn.text = text.to_string();
        let (market_name, _) = self.config.market(state.market.as_deref());
        let wording = spoken::Wording::of_market(market_name);
        turn.answer = both_said(&a, &b, &second.text, &self.config.assistant.cloud_name, wording);
        turn.sources.extend(b.sources);
        if b.understood.route != Route::Local {
            turn.understood.route = b.understood.route;
            turn.handling = b.handling;
            turn.escalation = b.escalation.or(turn.escalation);
        }
        turn.dropped.extend(b.dropped);
        // The second half's turn took up any question the first one asked.
        turn.pending_question = session.pending;
        session.last_answer = Some(turn.answer.clone());
        Ok(turn)
    }

    /// The prediction a turn is answered under: a follow-up continues the last
    /// turn's intent (and inherits what it left out), and a question about the
    /// car now goes to the signals. An emergency stands, and so does a confident
    /// request for the cloud that does not open like a follow-up.
    fn resolve(
        &self,
        session: &Session,
        text: &str,
        slots: &mut Slots,
        prediction: Prediction,
        now: jiff::Timestamp,
    ) -> Prediction {
        let context = session.context.as_ref();
        let lifetime = self.config.assistant.follow_up_seconds;
        let (read_as, confidence) = (prediction.intent, prediction.intent_confidence);
        if let Some(intent) = follow_up::misread(text, read_as, confidence, slots, context, now, lifetime) {
            tracing::debug!(from = read_as.as_str(), to = intent.as_str(), "read as a follow-up");
            return Prediction {
                intent,
                route: intent.route(),
                ..prediction
            };
        }
        if prediction.intent == Intent::Emergency {
            return prediction;
        }
        let said = [session.last_answer.as_deref(), session.more.as_deref()];
        if follow_up::asks_why(text, prediction.intent, said, context, now, lifetime) {
            slots.more = true;
        }
        let prediction = settled_by_slots(slots, prediction);
        let mut resolved = prediction;
        // A short line that is a confident request of its own ("front tyre flat
        // help", "check my oil level") stands; only one that opens like a
        // follow-up ("in km", "and the back ones?") is read against the last turn.
        let confident_request = prediction.intent.is_in_scope()
            && !is_dialogue_label(prediction.intent)
            && prediction.intent_confidence >= CONFIDENT
            && !follow_up::is_elliptical(text)
            && !follow_up::asks_how_serious(text);
        let follows = if slots.more || confident_request {
            None
        } else {
            let model_sure = prediction.intent.is_in_scope() && prediction.intent_confidence >= CONFIDENT;
            follow_up::continues(text, slots, context, model_sure, now, lifetime)
        };
        let intent = follows.or_else(|| follow_up::about_now(text));
        if let Some(intent) = intent {
            if intent != resolved.intent {
                tracing::debug!(
                    from = resolved.intent.as_str(),
                    to = intent.as_str(),
                    "read as a follow-up or a question about now"
                );
            }
            resolved.intent = intent;
            resolved.route = intent.route();
        }
        if let (Some(_), Some(context)) = (follows, context) {
            slots.inherit(&context.slots);
        }
        resolved
    }

    /// A turn the gate called out of scope, answered under a local intent after
    /// all when one article of the manual clearly answers it
    /// ([`answer::overruling_article`]); or, when it names a part of a car, read
    /// as a question about the car, which the manual answers
    /// ([`answer::car_part_article`]) or honestly does not. A turn read as
    /// routes, traffic or places that names a part of a car and no place
    /// ("whats the ground clearance", "how many kilos can the roof bars take")
    /// is treated as refused: of 27k real navigation requests, none is that.
    fn overrule_gate(
        &self,
        state: &VehicleState,
        text: &str,
        slots: &Slots,
        prediction: Prediction,
    ) -> Result<(Prediction, Overruled), DialogueError> {
        let navigation = matches!(
            prediction.intent,
            Intent::Directions | Intent::Distance | Intent::Traffic | Intent::FindPlace
        );
        if prediction.intent == Intent::RoadsideAssistance && !slots.asks_for_help {
            if let Some(article) = answer::self_help_article(&self.config, state, &self.kb.load_full(), text)? {
                tracing::debug!(article = %article.id, "a problem the driver can fix: the how-to, not roadside help");
                let intent = Intent::FeatureHowto;
                let prediction = Prediction {
                    intent,
                    route: intent.route(),
                    ..prediction
                };
                return Ok((prediction, Overruled::ByArticle(Box::new(article))));
            }
        }
        let refused = prediction.intent == Intent::OutOfScope || (navigation && slots.car_part && !slots.place);
        if !refused || !self.config.knowledge.overrule_model {
            return Ok((prediction, Overruled::No));
        }
        let kb = self.kb.load_full();
        let guess = prediction.top_intent;
        let mut found = answer::named_anywhere(&self.config, state, &kb, text, guess)?;
        if found.is_none() {
            found = answer::overruling_article(&self.config, state, &kb, text, guess, false)?;
        }
        if found.is_none() && slots.car_part {
            found = answer::car_part_article(&self.config, state, &kb, text)?;
        }
        let (intent, overruled) = match found {
            Some((intent, article)) => (intent, Overruled::ByArticle(Box::new(article))),
            None if slots.car_part => (Intent::FeatureHowto, Overruled::AboutTheCar),
            None => return Ok((prediction, Overruled::No)),
        };
        tracing::debug!(
            to = intent.as_str(),
            "the gate said out of scope; the manual answers it, or it is about the car"
        );
        let prediction = Prediction {
            intent,
            // The model's confidence that the turn is in scope at all.
            intent_confidence: prediction.top_confidence,
            route: intent.route(),
            ..prediction
        };
        Ok((prediction, overruled))
    }

    /// The local answer under `intent`: the article that overruled the gate when
    /// one did; for a question about the car that no one article clearly
    /// answers, "not in the manual". Else, against an unsure reading, the article
    /// the question names ([`answer::named_anywhere`]); else the answer of that
    /// intent, and when its articles have nothing, one article of another local
    /// intent that clearly answers the question ([`answer::overruling_article`]),
    /// under that intent.
    fn answer_locally(
        &self,
        ctx: &AnswerContext<'_>,
        state: &VehicleState,
        prediction: &Prediction,
        text: &str,
        overruled: Overruled,
    ) -> Result<(Intent, Answer), DialogueError> {
        let intent = prediction.intent;
        match overruled {
            Overruled::ByArticle(article) => return Ok((intent, Answer::from_article(*article))),
            Overruled::AboutTheCar => return Ok((intent, Answer::said(answer::NOT_IN_THE_MANUAL, &[]))),
            Overruled::No => {}
        }
        let sure = prediction.intent_confidence >= CONFIDENT;
        // A name of an article said word for word outranks an unsure reading.
        if !sure {
            if let Some((named, article)) = answer::named_anywhere(&self.config, state, ctx.kb, text, intent)? {
                return Ok((named, Answer::from_article(article)));
            }
        }
        let answer = local_answer(ctx, intent, text)?;
        if !answer.sources.is_empty() {
            return Ok((intent, answer));
        }
        match answer::overruling_article(&self.config, state, ctx.kb, text, intent, sure)? {
            Some((other, article)) if other != intent => {
                tracing::debug!(
                    from = intent.as_str(),
                    to = other.as_str(),
                    "another intent's article answers it"
                );
                Ok((other, Answer::from_article(article)))
            }
            _ => Ok((intent, answer)),
        }
    }

    /// A "yes" to the car's offer: queues `what` under `intent` for the cloud and
    /// says `answer`.
    #[allow(clippy::too_many_arguments)]
    fn send_on_yes(
        &self,
        session: &mut Session,
        state: &VehicleState,
        store: &Store,
        mut turn: Turn,
        intent: Intent,
        what: &str,
        answer: String,
        now: jiff::Timestamp,
    ) -> Turn {
        let mut sent = turn.understood;
        sent.intent = intent;
        sent.route = Route::Cloud;
        let (receipt, dropped) = match self.escalate(session, state, store, &sent, what, Priority::Normal, now) {
            Ok(queued) => queued,
            Err(error) => return self.not_queued(store, session, turn, &error, now),
        };
        turn.dropped = dropped;
        turn.answer = answer;
        turn.understood.route = Route::Cloud;
        turn.handling = Handling::Escalated;
        session.last_escalation = Some(receipt.id);
        turn.escalation = Some(receipt);
        session.last_answer = Some(turn.answer.clone());
        self.record(store, session, &turn, now);
        turn
    }

    /// The answer when a request for the cloud could not be queued anywhere.
    fn not_queued(
        &self,
        store: &Store,
        session: &mut Session,
        mut turn: Turn,
        error: &DialogueError,
        now: jiff::Timestamp,
    ) -> Turn {
        let cloud = &self.config.assistant.cloud_name;
        turn.answer = match error {
            DialogueError::Store(crate::store::StoreError::QueueFull { .. }) => format!(
                "The car's queue for {cloud} is full of emergency alerts, so I can't queue this right now. Please try again later."
            ),
            other => {
                tracing::error!(error = %other, "a request for the cloud could not be queued");
                format!("The car can't keep requests for {cloud} right now, so I couldn't pass this on. Please try again later.")
            }
        };
        turn.understood.route = Route::Cloud;
        session.last_answer = Some(turn.answer.clone());
        self.record(store, session, &turn, now);
        turn
    }

    /// Keeps the turn in history; a failure is logged (and shows in health),
    /// never the driver's problem.
    fn record(&self, store: &Store, session: &Session, turn: &Turn, now: jiff::Timestamp) {
        let recorded = store.record_turn(
            &session.id,
            &TurnRecord {
                at: now.to_string(),
                text: turn.text.clone(),
                answer: turn.answer.clone(),
                intent: turn.understood.intent.as_str().to_string(),
                intent_confidence: turn.understood.intent_confidence,
                sentiment: turn.understood.sentiment.as_str().to_string(),
                sentiment_score: turn.understood.sentiment_score,
                route: turn.understood.route.as_str().to_string(),
                sources: turn.sources.clone(),
                escalation_id: turn.escalation.as_ref().map(|e| e.id),
                from_cloud: false,
            },
            now,
        );
        if let Err(error) = recorded {
            tracing::warn!(%error, conversation_id = %session.id, "a turn could not be kept in history");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn escalate(
        &self,
        session: &Session,
        state: &VehicleState,
        store: &Store,
        prediction: &Prediction,
        text: &str,
        priority: Priority,
        now: jiff::Timestamp,
    ) -> Result<(EscalationReceipt, Vec<crate::store::Dropped>), DialogueError> {
        // Without cloud consent only the minimum set of an emergency leaves: no history.
        let share_history = self.privacy.cloud_consent();
        let history = store.turns(&session.id).unwrap_or_else(|error| {
            tracing::warn!(%error, "the escalation goes without its history, which cannot be read");
            Vec::new()
        });
        let recent_turns: Vec<protocol::RecentTurn> = history
            .into_iter()
            .rev()
            .take(if share_history { 5 } else { 0 })
            .rev()
            .map(|t| protocol::RecentTurn {
                text: t.text,
                answer: t.answer,
                intent: t.intent,
            })
            .collect();
        // An emergency carries the minimum set (as eCall does): where and which car.
        let vehicle = if priority == Priority::Urgent {
            serde_json::json!({"vin": state.vin, "location": state.location, "speed_kph": state.speed_kph})
        } else {
            serde_json::to_value(state).unwrap_or_default()
        };
        let escalation = protocol::Escalation {
            utterance: text.to_string(),
            intent: prediction.intent,
            intent_confidence: prediction.intent_confidence,
            top_intent: Some(prediction.top_intent),
            top_confidence: Some(prediction.top_confidence),
            sentiment: prediction.sentiment,
            sentiment_score: prediction.sentiment_score,
            vehicle,
            recent_turns,
            locale: "en".to_string(),
            market: state
                .market
                .clone()
                .unwrap_or_else(|| self.config.vehicle.market.clone()),
            priority,
        };
        let mut payload = serde_json::to_value(&escalation).expect("an escalation is plain JSON");
        // Redacted and coarsened before it is stored: what is queued is what leaves.
        let redactions = self.privacy.scrub(&mut payload);
        if redactions != crate::privacy::Redactions::default() {
            tracing::info!(?redactions, "personal data redacted from an escalation");
        }
        let new = crate::store::NewEscalation {
            conversation_id: &session.id,
            priority,
            intent: prediction.intent.as_str(),
            payload: &payload,
        };
        let queued = store.queue_escalation(&new, now, &self.config.outbox.policy())?;
        tracing::info!(id = queued.id, message_id = %queued.message_id, intent = prediction.intent.as_str(), ?priority, "escalation queued");
        for dropped in &queued.evicted {
            tracing::warn!(id = dropped.id, intent = %dropped.intent, "outbox full: evicted an older request");
        }
        Ok((
            EscalationReceipt {
                id: queued.id,
                priority,
                status: "pending",
            },
            queued.evicted,
        ))
    }
}

/// Both answers within the spoken limit: a cloud half in a few words ("I've
/// also queued your booking request."), the local halves shortened to fit.
fn both_said(a: &Turn, b: &Turn, b_text: &str, cloud: &str, wording: spoken::Wording) -> String {
    let short = |turn: &Turn, text: &str| -> Option<String> {
        (turn.understood.route != Route::Local).then(|| {
            let slots = Slots::of(text);
            let sentence = match (turn.understood.intent, slots.when.as_deref()) {
                (Intent::BookService, Some(when)) => format!("I've also queued your booking request for {when}."),
                (Intent::BookService, None) => "I've also queued your booking request.".to_string(),
                _ => format!("I've also queued the rest for {cloud}."),
            };
            spoken::in_market_words(&sentence, wording)
        })
    };
    let a_short = short(a, &a.text);
    let b_short = short(b, b_text);
    let fixed: usize = [&a_short, &b_short]
        .iter()
        .filter_map(|s| s.as_ref().map(|s| s.split_whitespace().count()))
        .sum();
    let locals = [&a_short, &b_short].iter().filter(|s| s.is_none()).count().max(1);
    let room = spoken::MAX_WORDS.saturating_sub(fixed) / locals;
    // One sentence from each half, so that both fit in two.
    let said = |turn: &Turn, short: Option<String>| {
        short.unwrap_or_else(|| spoken::cap(first_sentence(&turn.answer), room).said)
    };
    format!("{} {}", said(a, a_short), said(b, b_short))
}

/// One half of a line that holds two requests.
struct Half {
    text: String,
    prediction: Prediction,
}

/// What the words settle where the model misread them: a yes that asks for a
/// booking ("book me in then", "yes book it") is a booking; a yes or no that
/// opens as a question ("why do i have to wait") or says something did not work
/// ("it won't open") is not an answer, and is read like a line the gate refused
/// (a follow-up may still take it up); a fault code ("what's code p1234") is
/// about the car's health; "ok i'll pump it up thanks" signs off.
fn settled_by_slots(slots: &Slots, prediction: Prediction) -> Prediction {
    let intent = match prediction.intent {
        Intent::Affirm if slots.books => Intent::BookService,
        Intent::Affirm | Intent::Deny if slots.asks || slots.failed => Intent::OutOfScope,
        Intent::OutOfScope if slots.code.is_some() => Intent::VehicleHealth,
        intent if slots.signs_off && !slots.books && intent != Intent::Emergency => Intent::Goodbye,
        _ => return prediction,
    };
    Prediction {
        intent,
        route: intent.route(),
        ..prediction
    }
}

/// How the manual overruled the gate's "out of scope", if it did.
enum Overruled {
    No,
    /// One article clearly answers the question.
    ByArticle(Box<knowledge::Article>),
    /// The question names a part of the car, and no one article clearly
    /// answers it.
    AboutTheCar,
}

/// The intent confidence at which the model's reading of a request stands
/// against a follow-up reading, or an article of another intent.
const CONFIDENT: f32 = 0.8;

/// Labels that answer the assistant rather than ask for something.
fn is_dialogue_label(intent: Intent) -> bool {
    matches!(
        intent,
        Intent::Greeting | Intent::Goodbye | Intent::Affirm | Intent::Deny | Intent::Cancel | Intent::Repeat
    )
}

/// A greeting in kind: "good morning" gets a good morning.
fn greeting(text: &str, name: &str) -> String {
    let t = slots::normalise(text);
    let part = ["morning", "afternoon", "evening"]
        .into_iter()
        .find(|p| t.contains(&format!("good {p}")));
    match part {
        Some(part) => format!("Good {part}! What can I do for you?"),
        None => format!("Hello, {name} here. What can I do for you?"),
    }
}

/// A farewell in kind: thanks get "you're welcome".
fn goodbye(text: &str) -> String {
    let t = slots::normalise(text);
    if ["thank", "thanks", "cheers", "ta", "appreciate"]
        .iter()
        .any(|w| t.split(' ').any(|x| x.starts_with(w)))
    {
        "You're welcome. Drive safely!".to_string()
    } else {
        "Goodbye, drive safely!".to_string()
    }
}

fn no_consent_answer(cloud: &str) -> String {
    format!("Sharing with {cloud} is switched off in the privacy settings, so I can't pass this on. Emergencies still go through.")
}

/// What the car says when it hands a request to the cloud.
fn cloud_opening(intent: Intent, slots: &Slots, emergency_number: &str) -> String {
    let when = slots
        .when
        .as_deref()
        .or(slots.part_of_day)
        .filter(|_| intent == Intent::BookService);
    if let Some(when) = when {
        let when = when.trim_start_matches("on ").trim_start_matches("in the ");
        return format!("I can't book from the car itself, so I've queued your booking request for {when}.");
    }
    match intent {
        Intent::RoadsideAssistance => format!(
            "I've queued a roadside assistance request with your location; if you're in danger, call {emergency_number}."
        ),
        other => cloud_opening_for(other).to_string(),
    }
}

fn cloud_opening_for(intent: Intent) -> &'static str {
    match intent {
        Intent::BookService => "I can't book appointments from the car itself, so I've queued your booking request.",
        Intent::TalkToAgent => "I've asked for a person to get back to you.",
        Intent::Complaint => "I'm sorry about that; I've passed your complaint on.",
        Intent::RecallWarranty => "Recalls and warranty are checked in the cloud, so I've queued your question.",
        Intent::Directions | Intent::Distance | Intent::Traffic | Intent::FindPlace => {
            "Routes, traffic and places need the online service, so I've queued your request."
        }
        _ => "That's not something I can answer in the car, so I've passed it on.",
    }
}
