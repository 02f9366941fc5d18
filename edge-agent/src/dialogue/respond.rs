//! One request, answered by its intent: an emergency first, then the answers to
//! what the car or the cloud asked ("yes", "no"), "cancel", "repeat", "tell me
//! more", small talk, out of scope, a local answer, or the cloud.

use models::{Intent, Prediction, Route};

use super::answer::{first_sentence, AnswerContext};
use super::follow_up::{self, Context};
use super::slots::Slots;
use super::{
    cloud_opening, goodbye, greeting, no_consent_answer, spoken, Answer, Assistant, DialogueError, Handling, Overruled,
    PendingQuestion, Session, Turn,
};
use crate::store::{Priority, Store};
use crate::vehicle::VehicleState;

/// What one request is answered from.
struct Request<'a> {
    state: &'a VehicleState,
    store: &'a Store,
    text: &'a str,
    slots: Slots,
    now: jiff::Timestamp,
}

/// What the session carried into this turn, taken out of it: an answer puts
/// back what still holds.
struct Carried {
    pending: Option<PendingQuestion>,
    pending_text: Option<String>,
    pending_intent: Option<Intent>,
    last_escalation: Option<i64>,
    more: Option<String>,
    /// The article whose advice the driver says did not work.
    tried: Option<String>,
}

/// Whether an answer is complete (recorded) or goes through the common end.
enum Flow {
    Finished(Turn),
    Answered(Turn),
}

impl Assistant {
    /// Answers one request.
    pub(super) fn respond_one(
        &self,
        session: &mut Session,
        state: &VehicleState,
        store: &Store,
        text: &str,
        prediction: Prediction,
    ) -> Result<Turn, DialogueError> {
        let now = jiff::Timestamp::now();
        let mut slots = Slots::of(text);
        let prediction = self.resolve(session, text, &mut slots, prediction, now);
        let (prediction, overruled) = self.overrule_gate(state, text, &slots, prediction)?;
        let carried = self.take_carried(session, &prediction, &mut slots, now);
        let request = Request {
            state,
            store,
            text,
            slots,
            now,
        };
        let turn = Turn {
            conversation_id: session.id.clone(),
            text: text.to_string(),
            answer: String::new(),
            understood: prediction,
            handling: Handling::Answered,
            sources: Vec::new(),
            article: None,
            escalation: None,
            pending_question: None,
            dropped: Vec::new(),
        };
        let turn = match self.respond_by_intent(session, &request, carried, overruled, turn)? {
            Flow::Finished(turn) => return Ok(turn),
            Flow::Answered(turn) => turn,
        };
        session.last_answer = Some(turn.answer.clone());
        session.last_escalation = turn.escalation.as_ref().map(|e| e.id);
        self.record(store, session, &turn, now);
        Ok(turn)
    }

    /// Takes what the session carried out of it. What the car suggested did not
    /// work ("still stuck"): the rest of the article is the next thing to try, and
    /// after that a person. A request of the cloud's ("it won't start, i need a
    /// tow") stands.
    fn take_carried(
        &self,
        session: &mut Session,
        prediction: &Prediction,
        slots: &mut Slots,
        now: jiff::Timestamp,
    ) -> Carried {
        let asks_cloud = matches!(prediction.intent.route(), Route::Cloud | Route::Urgent)
            && prediction.intent != Intent::OutOfScope;
        let lifetime = self.config.assistant.follow_up_seconds;
        let tried = follow_up::recent_article(session.context.as_ref(), now, lifetime)
            .filter(|_| slots.failed && !asks_cloud)
            .map(str::to_string);
        let more = session.more.take();
        if tried.is_some() && more.is_some() {
            slots.more = true;
        }
        Carried {
            pending: session.pending.take(),
            pending_text: session.pending_text.take(),
            pending_intent: session.pending_intent.take(),
            last_escalation: session.last_escalation.take(),
            more,
            tried,
        }
    }

    fn respond_by_intent(
        &self,
        session: &mut Session,
        request: &Request<'_>,
        carried: Carried,
        overruled: Overruled,
        mut turn: Turn,
    ) -> Result<Flow, DialogueError> {
        let prediction = turn.understood;
        let pending = carried.pending;
        let consent = self.privacy.cloud_consent();
        let cloud = &self.config.assistant.cloud_name;
        match prediction.intent {
            Intent::Emergency => self.answer_emergency(session, request, &mut turn),
            Intent::Affirm | Intent::Deny | Intent::Cancel if pending.is_some() && !consent => {
                if prediction.intent == Intent::Affirm {
                    turn.answer = no_consent_answer(cloud);
                } else {
                    return Ok(self.answer_pending(session, request, carried, turn));
                }
            }
            Intent::Affirm | Intent::Deny | Intent::Cancel if pending.is_some() => {
                return Ok(self.answer_pending(session, request, carried, turn));
            }
            Intent::Affirm => turn.answer = "There's nothing to confirm right now.".to_string(),
            Intent::Deny => turn.answer = "Alright, no problem.".to_string(),
            Intent::Cancel => turn.answer = self.withdraw(request.store, carried.last_escalation),
            Intent::Repeat if !request.slots.more => {
                return Ok(Flow::Finished(self.repeat(session, request, carried, turn)));
            }
            _ if request.slots.more => return Ok(Flow::Finished(self.tell_more(session, request, carried, turn))),
            _ if carried.tried.is_some() && consent => {
                // Nothing more to try: a person can take it from here, with the
                // conversation so far.
                turn.understood.intent = session.context.as_ref().map_or(prediction.intent, |c| c.intent);
                turn.understood.route = turn.understood.intent.route();
                turn.sources = carried.tried.into_iter().collect();
                turn.answer =
                    format!("Sorry that didn't help. Would you like me to connect you to a person at {cloud}?");
                self.ask(session, &mut turn, PendingQuestion::OfferAgent, request.text);
            }
            Intent::Greeting => turn.answer = greeting(request.text, &self.config.assistant.name),
            Intent::Goodbye => turn.answer = goodbye(request.text),
            Intent::OutOfScope if !consent => {
                turn.answer =
                    format!("That's not something I can answer in the car, and sharing with {cloud} is switched off.");
            }
            Intent::OutOfScope => self.offer_the_cloud(session, request, &mut turn),
            intent if intent.route() == Route::Local => self.answer_here(session, request, overruled, &mut turn)?,
            _ if !consent => {
                // Nothing but urgent escalations leaves without consent.
                turn.answer = no_consent_answer(cloud);
                turn.understood.route = Route::Cloud;
            }
            _ => return Ok(self.send_to_cloud(session, request, turn)),
        }
        Ok(Flow::Answered(turn))
    }

    /// The car's question, which the next "yes" answers.
    fn ask(&self, session: &mut Session, turn: &mut Turn, question: PendingQuestion, text: &str) {
        session.pending = Some(question);
        session.pending_text = Some(text.to_string());
        turn.pending_question = session.pending;
    }

    /// The number comes first, whatever happens to the alert.
    fn answer_emergency(&self, session: &mut Session, request: &Request<'_>, turn: &mut Turn) {
        let (market_name, market) = self.config.market(request.state.market.as_deref());
        let cloud = &self.config.assistant.cloud_name;
        let prediction = turn.understood;
        let queued = self.escalate(
            session,
            request.state,
            request.store,
            &prediction,
            request.text,
            Priority::Urgent,
            request.now,
        );
        turn.sources = vec!["emergency-what-to-do".to_string()];
        turn.handling = Handling::Escalated;
        let number = &market.emergency_number;
        match queued {
            Ok((receipt, dropped)) => {
                turn.dropped = dropped;
                turn.escalation = Some(receipt);
                turn.answer = format!(
                    "Call {number} now, or press the SOS button above the mirror. I've queued an alert with your location for {cloud}, and it goes the moment the car is connected."
                );
            }
            Err(error) => {
                tracing::error!(%error, "an emergency alert could not be queued");
                turn.answer = format!(
                    "Call {number} now, or press the SOS button above the mirror. The car could not queue an alert for {cloud}, so please call."
                );
            }
        }
        tracing::warn!(market = market_name, number = %market.emergency_number, "emergency escalated");
    }

    /// A "yes", "no" or "cancel" while the car or the cloud asked something.
    fn answer_pending(&self, session: &mut Session, request: &Request<'_>, carried: Carried, mut turn: Turn) -> Flow {
        let cloud = &self.config.assistant.cloud_name;
        let intent = turn.understood.intent;
        let question = carried.pending_text.unwrap_or_else(|| request.text.to_string());
        let (to, what, answer) = match (intent, carried.pending) {
            (Intent::Affirm, Some(PendingQuestion::OfferAgent)) => (
                // The person gets what the driver asked, not "yes".
                Intent::TalkToAgent,
                question,
                format!(
                    "Okay, I've asked for a person at {cloud}. They'll pick this up as soon as the car is connected."
                ),
            ),
            (Intent::Affirm, Some(PendingQuestion::AskCloud)) => (
                Intent::OutOfScope,
                question,
                format!("Okay, I've asked {cloud}. The answer will come here shortly, or once the car is back online."),
            ),
            // The reply goes back under what the cloud asked about; the cloud
            // reads it with the conversation's recent turns.
            (Intent::Affirm, Some(PendingQuestion::CloudAsked)) => (
                carried.pending_intent.unwrap_or(Intent::OutOfScope),
                request.text.to_string(),
                format!("Okay, I've told {cloud} yes. They'll confirm here shortly, or once the car is back online."),
            ),
            (Intent::Deny, Some(PendingQuestion::CloudAsked)) => (
                carried.pending_intent.unwrap_or(Intent::OutOfScope),
                request.text.to_string(),
                format!("Okay, I've told {cloud} no."),
            ),
            (Intent::Deny, Some(PendingQuestion::OfferAgent)) => {
                turn.answer = "Okay, no agent. Let me know if there's anything else.".to_string();
                return Flow::Answered(turn);
            }
            (Intent::Deny | Intent::Cancel, Some(PendingQuestion::AskCloud)) => {
                turn.answer = "Okay, I'll leave it.".to_string();
                return Flow::Answered(turn);
            }
            (Intent::Cancel, _) => {
                turn.answer = self.withdraw(request.store, carried.last_escalation);
                return Flow::Answered(turn);
            }
            _ => {
                turn.answer = "Alright, no problem.".to_string();
                return Flow::Answered(turn);
            }
        };
        Flow::Finished(self.send_on_yes(
            session,
            request.state,
            request.store,
            turn,
            to,
            &what,
            answer,
            request.now,
        ))
    }

    /// "Cancel": the request the previous turn queued is withdrawn, if it can be.
    fn withdraw(&self, store: &Store, last_escalation: Option<i64>) -> String {
        let withdrawn = last_escalation.is_some_and(|id| {
            store.cancel_escalation(id).unwrap_or_else(|error| {
                tracing::error!(%error, "a request could not be withdrawn");
                false
            })
        });
        if withdrawn {
            format!(
                "Okay, I've withdrawn that request to {}.",
                self.config.assistant.cloud_name
            )
        } else {
            "Okay, cancelled.".to_string()
        }
    }

    /// Repeating changes nothing: the question still pending, the last answer and
    /// what it left unsaid stay.
    fn repeat(&self, session: &mut Session, request: &Request<'_>, carried: Carried, mut turn: Turn) -> Turn {
        session.pending = carried.pending;
        session.pending_text = carried.pending_text;
        session.pending_intent = carried.pending_intent;
        session.last_escalation = carried.last_escalation;
        session.more = carried.more;
        turn.answer = session
            .last_answer
            .clone()
            .unwrap_or_else(|| "I haven't said anything yet. What can I help with?".to_string());
        self.record(request.store, session, &turn, request.now);
        turn
    }

    /// "Tell me more", or what to try next after "it didn't work".
    fn tell_more(&self, session: &mut Session, request: &Request<'_>, carried: Carried, mut turn: Turn) -> Turn {
        let context = session.context.as_ref();
        turn.understood.intent = context.map_or(turn.understood.intent, |c| c.intent);
        turn.understood.route = turn.understood.intent.route();
        if carried.more.is_some() {
            turn.sources = context.and_then(|c| c.article.clone()).into_iter().collect();
        }
        let rest = carried.more.unwrap_or_else(|| "That's all I have on that.".to_string());
        // After "it didn't work", the article's remedies are the next thing to
        // try and its facts are not: once the remedies are said, a person is
        // offered.
        let rest = if request.slots.failed {
            spoken::remedies(&rest).unwrap_or(rest)
        } else {
            rest
        };
        // "Tell me more" is heard at length; the next thing to try, or a "why"
        // about it, as briefly as any answer.
        let limit = if Slots::asks_for_more(request.text) {
            spoken::MAX_WORDS * 3
        } else {
            spoken::MAX_WORDS
        };
        let capped = spoken::cap(&rest, limit);
        session.more = capped.rest;
        turn.answer = capped.said;
        session.last_answer = Some(turn.answer.clone());
        self.record(request.store, session, &turn, request.now);
        turn
    }

    /// Out of scope: offered to the cloud (or, upset, to a person); torn between
    /// an in-scope intent and the gate, maybe misheard.
    fn offer_the_cloud(&self, session: &mut Session, request: &Request<'_>, turn: &mut Turn) {
        let cloud = &self.config.assistant.cloud_name;
        let prediction = turn.understood;
        // Only when the model leaned in scope at least even (at 0.3, a plain
        // out-of-scope question such as a bus time was met with "say it another
        // way").
        let below_gate = prediction.top_confidence >= 0.5;
        // An upset driver is offered a person, as with a local answer.
        let upset = prediction.sentiment_score <= self.config.assistant.offer_human_at_or_below;
        turn.answer = if upset {
            format!("That's not something I can answer in the car. Would you like me to connect you to a person at {cloud}?")
        } else if below_gate {
            format!("I'm not sure I understood. Say it another way, or say yes and I'll ask {cloud}.")
        } else {
            format!("That's not something I can answer in the car. Would you like me to ask {cloud}?")
        };
        if below_gate && !upset {
            turn.handling = Handling::Rephrase;
        }
        let question = if upset {
            PendingQuestion::OfferAgent
        } else {
            PendingQuestion::AskCloud
        };
        self.ask(session, turn, question, request.text);
    }

    /// A local intent: the signals' or the manual's answer, in spoken style; what
    /// the manual lacks is offered to the cloud, and an upset driver a person.
    fn answer_here(
        &self,
        session: &mut Session,
        request: &Request<'_>,
        overruled: Overruled,
        turn: &mut Turn,
    ) -> Result<(), DialogueError> {
        let (market_name, market) = self.config.market(request.state.market.as_deref());
        let wording = spoken::Wording::of_market(market_name);
        let prediction = turn.understood;
        let ctx = AnswerContext {
            config: &self.config,
            state: request.state,
            kb: &self.kb.load_full(),
            units: request.slots.units_in(market.units, wording),
            wording,
            today: request.now.to_zoned_datetime(jiff::tz::TimeZone::system()).date(),
            slots: &request.slots,
            previous: session.context.as_ref(),
        };
        let (intent, answer) = self.answer_locally(&ctx, request.state, &prediction, request.text, overruled)?;
        turn.understood.intent = intent;
        let Answer {
            text: answer,
            sources,
            article,
        } = answer;
        let capped = spoken::cap(&spoken::in_market_words(&answer, wording), spoken::MAX_WORDS);
        // "Tell me more" reads what the summary left unsaid, then the article's
        // body.
        let unsaid = capped.rest.into_iter().chain(article.as_ref().map(|a| a.body.clone()));
        let unsaid: Vec<String> = unsaid.filter(|part| !part.trim().is_empty()).collect();
        session.more = (!unsaid.is_empty()).then(|| spoken::in_market_words(&unsaid.join(" "), wording));
        turn.sources = sources;
        turn.article = article;
        self.offer_after_local_answer(session, request, capped.said, turn);
        session.context = Some(Context {
            intent,
            slots: request.slots.clone(),
            article: turn.sources.first().cloned(),
            at: request.now,
        });
        Ok(())
    }

    /// An upset driver is offered a person, whether or not the manual had the
    /// answer; otherwise what it lacks is offered to the cloud.
    fn offer_after_local_answer(&self, session: &mut Session, request: &Request<'_>, answer: String, turn: &mut Turn) {
        let cloud = &self.config.assistant.cloud_name;
        let in_manual = !turn.sources.is_empty();
        let upset = turn.understood.sentiment_score <= self.config.assistant.offer_human_at_or_below;
        if upset && self.privacy.cloud_consent() {
            let offer = format!("Would you like me to connect you to a person at {cloud}?");
            let room = spoken::MAX_WORDS.saturating_sub(offer.split_whitespace().count());
            let lead = first_sentence(&answer);
            let first = spoken::cap(lead, room);
            turn.answer = format!("{} {offer}", first.said);
            // What the offer left no room for is still there to hear.
            let unsaid = [
                first.rest,
                Some(answer[lead.len()..].trim().to_string()),
                session.more.take(),
            ];
            let unsaid: Vec<String> = unsaid.into_iter().flatten().filter(|p| !p.is_empty()).collect();
            session.more = (!unsaid.is_empty()).then(|| unsaid.join(" "));
            self.ask(session, turn, PendingQuestion::OfferAgent, request.text);
        } else if !in_manual && self.privacy.cloud_consent() {
            self.ask(session, turn, PendingQuestion::AskCloud, request.text);
            turn.answer = format!("{answer} Would you like me to ask {cloud}?");
        } else {
            turn.answer = answer;
        }
    }

    /// The cloud's routes: queued, with what the cloud will do.
    fn send_to_cloud(&self, session: &mut Session, request: &Request<'_>, mut turn: Turn) -> Flow {
        let (_, market) = self.config.market(request.state.market.as_deref());
        let prediction = turn.understood;
        let mut routed = prediction;
        routed.route = Route::Cloud;
        let queued = self.escalate(
            session,
            request.state,
            request.store,
            &routed,
            request.text,
            Priority::Normal,
            request.now,
        );
        let (receipt, dropped) = match queued {
            Ok(queued) => queued,
            Err(error) => return Flow::Finished(self.not_queued(request.store, session, turn, &error, request.now)),
        };
        turn.dropped = dropped;
        turn.answer = format!(
            "{} {} will answer here shortly, or once the car is back online.",
            cloud_opening(prediction.intent, &request.slots, &market.emergency_number),
            self.config.assistant.cloud_name
        );
        turn.understood.route = Route::Cloud;
        turn.handling = Handling::Escalated;
        turn.escalation = Some(receipt);
        session.context = Some(Context {
            intent: prediction.intent,
            slots: request.slots.clone(),
            article: None,
            at: request.now,
        });
        Flow::Answered(turn)
    }
}
