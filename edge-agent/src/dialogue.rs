//! The dialogue: one driver turn in, one spoken answer out.
//!
//! It owns routing (the contract's routes and gate), the one pending question a
//! conversation may have ("Want me to connect you to an agent?"), rephrase-then-
//! escalate below the gate, cancel and repeat, and queueing escalations. Until the
//! uplink exists an escalation is stored as `pending`, and the driver is told
//! honestly that it will be answered shortly, or once the car is back online.
//!
//! **Invariant:** an `urgent` intent bypasses everything: no gate, no rephrase, no
//! pending question. The driver always hears the market's emergency number.

use std::sync::Arc;

use knowledge::KnowledgeBase;
use models::{Classifier, Intent, Prediction, Route};
use serde::Serialize;

use crate::answer::{first_sentence, local_answer, Answer, AnswerContext};
use crate::config::Config;
use crate::privacy::Privacy;
use crate::store::{Priority, Store, TurnRecord};
use crate::vehicle::VehicleState;

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
}

/// One conversation's dialogue state.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub id: String,
    pub pending: Option<PendingQuestion>,
    /// What was said last, for `repeat`.
    pub last_answer: Option<String>,
    /// The previous turn fell below the gate and the driver was asked to rephrase.
    pub asked_to_rephrase: bool,
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

    /// Answers one turn, records it, and queues what must go to the cloud.
    pub fn respond(
        &self,
        session: &mut Session,
        state: &VehicleState,
        store: &Store,
        text: &str,
    ) -> Result<Turn, DialogueError> {
        let now = jiff::Timestamp::now();
        let prediction = self.classifier.classify(text)?;
        let pending = session.pending.take();
        let (market_name, market) = self.config.market(state.market.as_deref());
        let cloud = &self.config.assistant.cloud_name;
        let mut turn = Turn {
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
        let rephrase_pending = std::mem::take(&mut session.asked_to_rephrase);
        let last_escalation = session.last_escalation.take();

        match prediction.intent {
            Intent::Emergency => {
                // The number comes first, whatever happens to the alert.
                let queued = self.escalate(session, state, store, &prediction, text, Priority::Urgent, now);
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
            Intent::Affirm if pending == Some(PendingQuestion::OfferAgent) && !self.privacy.cloud_consent() => {
                turn.answer = no_consent_answer(cloud);
            }
            Intent::Affirm if pending == Some(PendingQuestion::OfferAgent) => {
                let mut as_agent = prediction;
                as_agent.intent = Intent::TalkToAgent;
                as_agent.route = Route::Cloud;
                let (receipt, dropped) =
                    match self.escalate(session, state, store, &as_agent, text, Priority::Normal, now) {
                        Ok(queued) => queued,
                        Err(error) => return Ok(self.not_queued(store, session, turn, &error, now)),
                    };
                turn.dropped = dropped;
                turn.answer = format!(
                    "Okay, I've asked for a person at {cloud}. They'll pick this up as soon as the car is connected."
                );
                turn.understood.route = Route::Cloud;
                turn.handling = Handling::Escalated;
                turn.escalation = Some(receipt);
            }
            Intent::Deny if pending == Some(PendingQuestion::OfferAgent) => {
                turn.answer = "Okay, no agent. Let me know if there's anything else.".to_string();
            }
            Intent::Affirm => turn.answer = "Okay.".to_string(),
            Intent::Deny => turn.answer = "Alright, no problem.".to_string(),
            Intent::Cancel => {
                let withdrawn = last_escalation.is_some_and(|id| {
                    store.cancel_escalation(id).unwrap_or_else(|error| {
                        tracing::error!(%error, "a request could not be withdrawn");
                        false
                    })
                });
                turn.answer = if withdrawn {
                    format!("Okay, I've withdrawn that request to {cloud}.")
                } else {
                    "Okay, cancelled.".to_string()
                };
            }
            Intent::Repeat => {
                // Repeating changes nothing: the question still pending, the
                // rephrase still expected, and the last answer stays the one to repeat.
                session.pending = pending;
                session.asked_to_rephrase = rephrase_pending;
                session.last_escalation = last_escalation;
                turn.answer = session
                    .last_answer
                    .clone()
                    .unwrap_or_else(|| "I haven't said anything yet. What can I help with?".to_string());
                self.record(store, session, &turn, now);
                return Ok(turn);
            }
            Intent::OutOfScope if !rephrase_pending => {
                session.asked_to_rephrase = true;
                turn.answer = "Sorry, I didn't quite get that. Could you say it another way?".to_string();
                turn.handling = Handling::Rephrase;
            }
            intent if intent.route() == Route::Local => {
                let ctx = AnswerContext {
                    config: &self.config,
                    state,
                    kb: &self.kb.load_full(),
                    units: market.units,
                    today: now.to_zoned_datetime(jiff::tz::TimeZone::system()).date(),
                };
                let Answer {
                    text: answer,
                    sources,
                    article,
                } = local_answer(&ctx, intent, text)?;
                turn.sources = sources;
                turn.article = article;
                if prediction.sentiment_score <= self.config.assistant.offer_human_at_or_below
                    && self.privacy.cloud_consent()
                {
                    turn.answer = format!(
                        "{} Would you like me to connect you to a person at {cloud}?",
                        first_sentence(&answer)
                    );
                    session.pending = Some(PendingQuestion::OfferAgent);
                    turn.pending_question = session.pending;
                } else {
                    turn.answer = answer;
                }
            }
            _ if !self.privacy.cloud_consent() => {
                // Nothing but urgent escalations leaves without consent.
                turn.answer = no_consent_answer(cloud);
                turn.understood.route = Route::Cloud;
            }
            _ => {
                // Cloud routes, and out_of_scope the second time round.
                let mut routed = prediction;
                routed.route = Route::Cloud;
                let (receipt, dropped) =
                    match self.escalate(session, state, store, &routed, text, Priority::Normal, now) {
                        Ok(queued) => queued,
                        Err(error) => return Ok(self.not_queued(store, session, turn, &error, now)),
                    };
                turn.dropped = dropped;
                turn.answer = format!(
                    "{} {cloud} will answer here shortly, or once the car is back online.",
                    cloud_opening(prediction.intent, &market.emergency_number)
                );
                turn.understood.route = Route::Cloud;
                turn.handling = Handling::Escalated;
                turn.escalation = Some(receipt);
            }
        }
        session.last_answer = Some(turn.answer.clone());
        session.last_escalation = turn.escalation.as_ref().map(|e| e.id);
        self.record(store, session, &turn, now);
        Ok(turn)
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
        let recent: Vec<serde_json::Value> = history
            .into_iter()
            .rev()
            .take(if share_history { 5 } else { 0 })
            .rev()
            .map(|t| serde_json::json!({"text": t.text, "answer": t.answer, "intent": t.intent}))
            .collect();
        // An emergency carries the minimum set (as eCall does): where and which car.
        let snapshot = if priority == Priority::Urgent {
            serde_json::json!({"vin": state.vin, "location": state.location, "speed_kph": state.speed_kph})
        } else {
            serde_json::to_value(state).unwrap_or_default()
        };
        let mut payload = serde_json::json!({
            "utterance": text,
            "intent": prediction.intent.as_str(),
            "intent_confidence": prediction.intent_confidence,
            "top_intent": prediction.top_intent.as_str(),
            "sentiment": prediction.sentiment.as_str(),
            "sentiment_score": prediction.sentiment_score,
            "vehicle": snapshot,
            "recent_turns": recent,
            "locale": "en",
            "market": state.market.clone().unwrap_or_else(|| self.config.vehicle.market.clone()),
            "priority": priority,
        });
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

fn no_consent_answer(cloud: &str) -> String {
    format!("Sharing with {cloud} is switched off in the privacy settings, so I can't pass this on. Emergencies still go through.")
}

/// What the car says when it hands a request to the cloud.
fn cloud_opening(intent: Intent, emergency_number: &str) -> String {
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
