//! The supervisor pipeline for one escalation, stage by stage:
//!
//! 1. **profile**: the car's vehicle and owner profile (a default one from the
//!    escalation's market and locale when none is stored);
//! 2. **urgent first**: an emergency follows the emergency protocol and opens an
//!    urgent handoff at once: no model call, no gate, nothing that can hold it;
//! 3. **understanding**: the edge's labels, re-checked by the model when the edge
//!    was unsure, with every correction recorded;
//! 4. **routing**: talk_to_agent and complaint go to the human-agent queue with a
//!    handoff record and an estimated wait; everything else is answered;
//! 5. **retrieval** from the cloud knowledge base, **tools** for servicing and
//!    recalls, and **response generation** by the provider within a deadline,
//!    with an honest fallback when it fails;
//! 6. the conversation, usage and cost, and the outcome are stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use knowledge::{KnowledgeBase, Query, VehicleFilter};
use protocol::{Action, Envelope, Escalation, Handoff as WireHandoff, HandoffStatus, Intent, Priority, Response};

use crate::config::Config;
use crate::llm::{Context, LlmError, LlmProvider, Understanding};
use crate::metrics::Metrics;
use crate::servicing::Workshop;
use crate::store::{ConversationTurn, Handoff, HandoffState, Outcome, Profile, Role, Stores, Usage};
use crate::tools::{Reported, Toolbox};

/// Where an escalation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Urgent,
    Human,
    Answer,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Urgent => "urgent",
            Route::Human => "human",
            Route::Answer => "answer",
        }
    }
}

/// The routing rule of the contract, on the (re-checked) intent: the contract's
/// urgent route, a person for those who ask for one or complain, else an answer.
pub fn route(intent: Intent, priority: Priority) -> Route {
    match intent {
        _ if priority == Priority::Urgent || intent.route() == models::Route::Urgent => Route::Urgent,
        Intent::TalkToAgent | Intent::Complaint => Route::Human,
        _ => Route::Answer,
    }
}

/// What the supervisor concluded: the response for the car and the record.
#[derive(Debug, Clone)]
pub struct Handled {
    pub thing: String,
    pub conversation_id: String,
    pub response: Response,
    pub outcome: Outcome,
    /// The driver's turn and the answer, for the conversation (stored with the
    /// outcome by [`crate::store::DedupeStore::complete`]).
    pub turns: Vec<(ConversationTurn, Usage)>,
}

pub struct Supervisor {
    stores: Stores,
    provider: Arc<dyn LlmProvider>,
    /// Behind a mutex on purpose: a retrieval is ~0.1 ms of CPU on the async
    /// workers, and one at a time leaves the other workers free for the broker
    /// connection under load (measured: p99 doubles without it).
    knowledge: Option<std::sync::Mutex<KnowledgeBase>>,
    config: Arc<Config>,
    metrics: Metrics,
}

/// Said when the model failed: true, short, and with a way forward.
pub const FALLBACK_TEXT: &str =
    "Sorry, I couldn't get you an answer just now. Please ask again in a minute, or ask me for a person.";

/// What one escalation is, for every stage.
struct Job<'a> {
    envelope: &'a Envelope,
    escalation: &'a Escalation,
    conversation_id: String,
    /// The owner's market, else the car's.
    market: String,
    now: jiff::Timestamp,
}

/// What a route says and did.
struct Answer {
    text: String,
    actions: Vec<Action>,
    handoff: Option<WireHandoff>,
    more_to_come: bool,
    answered_by: String,
    articles_used: Vec<String>,
    failure: Option<String>,
}

impl Answer {
    /// The supervisor's own words, nothing done.
    fn said(text: String) -> Answer {
        Answer {
            text,
            actions: Vec::new(),
            handoff: None,
            more_to_come: false,
            answered_by: "supervisor".to_string(),
            articles_used: Vec::new(),
            failure: None,
        }
    }
}

/// A handoff as the car hears of it: queued, with the estimated wait.
fn queued(handoff: &Handoff) -> WireHandoff {
    WireHandoff {
        status: HandoffStatus::Queued,
        agent: None,
        estimated_wait_seconds: Some(handoff.estimated_wait_seconds),
    }
}

/// The car's recent turns as the conversation so far.
fn history(envelope: &Envelope, escalation: &Escalation) -> Vec<ConversationTurn> {
    escalation
        .recent_turns
        .iter()
        .flat_map(|t| {
            [(Role::Driver, &t.text), (Role::Assistant, &t.answer)].map(|(role, text)| ConversationTurn {
                role,
                text: text.clone(),
                at: envelope.sent_at,
            })
        })
        .collect()
}

impl Supervisor {
    pub fn new(
        stores: Stores,
        provider: Arc<dyn LlmProvider>,
        knowledge: Option<KnowledgeBase>,
        config: Arc<Config>,
        metrics: Metrics,
    ) -> Supervisor {
        Supervisor {
            stores,
            provider,
            knowledge: knowledge.map(std::sync::Mutex::new),
            config,
            metrics,
        }
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    pub fn provider_label(&self) -> String {
        self.provider.label()
    }

    /// The owner's profile, or `None`: a car without one is unknown, never a
    /// made-up default.
    fn profile(&self, thing: &str) -> Option<Profile> {
        self.stores.profiles.get(thing).unwrap_or_else(|error| {
            self.metrics.failure("store");
            tracing::error!(%error, thing, "cannot read the profile; the car is treated as unknown");
            None
        })
    }

    /// Where bookings go and whose clock they use: the profile's, else the
    /// configured defaults.
    fn workshop(&self, profile: Option<&Profile>) -> Workshop {
        let (dealer, zone) = match profile {
            Some(p) => (p.preferred_dealer.clone(), p.time_zone.as_str()),
            None => (
                self.config.defaults.dealer.clone(),
                self.config.defaults.time_zone.as_str(),
            ),
        };
        Workshop {
            dealer,
            zone: jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC),
        }
    }

    fn retrieve(&self, escalation: &Escalation, intent: Intent, profile: Option<&Profile>) -> Vec<knowledge::Article> {
        let Some(kb) = &self.knowledge else {
            return Vec::new();
        };
        let reported = Reported::from_snapshot(&escalation.vehicle);
        let vehicle = VehicleFilter {
            model: profile.map(|p| p.model.clone()).or(reported.model),
            year: profile.map(|p| p.model_year).or(reported.year),
            trim: None,
            market: Some(profile.map_or(&escalation.market, |p| &p.market).clone()),
        };
        let query = Query {
            text: &escalation.utterance,
            intent: Some(intent.as_str()),
            vehicle: &vehicle,
            limit: self.config.knowledge.articles_per_answer,
        };
        match kb.lock().expect("knowledge mutex").search(&query) {
            Ok(hits) => hits
                .into_iter()
                .filter(|h| h.score >= self.config.knowledge.min_score)
                .map(|h| h.article)
                .collect(),
            Err(error) => {
                self.metrics.failure("knowledge");
                tracing::error!(%error, "knowledge search failed; answering without articles");
                Vec::new()
            }
        }
    }

    fn cost(&self, mut usage: Usage) -> Usage {
        usage.cost_usd = usage.input_tokens as f64 / 1000.0 * self.config.llm.input_price_per_1k
            + usage.output_tokens as f64 / 1000.0 * self.config.llm.output_price_per_1k;
        usage
    }

    /// Handles one escalation to the end, through the stages of the module's
    /// list; never fails (a failing stage degrades to an honest answer and is
    /// counted).
    pub async fn handle(&self, envelope: &Envelope, escalation: &Escalation) -> Handled {
        let started = Instant::now();
        // 1. profile
        let profile = self.profile(&envelope.thing_name);
        let workshop = self.workshop(profile.as_ref());
        let job = Job {
            envelope,
            escalation,
            conversation_id: envelope
                .conversation_id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", envelope.thing_name, envelope.message_id)),
            market: profile.as_ref().map_or(&escalation.market, |p| &p.market).clone(),
            now: jiff::Timestamp::now(),
        };
        let edge = Understanding {
            intent: escalation.intent,
            sentiment: escalation.sentiment,
            sentiment_score: escalation.sentiment_score.clamp(-1.0, 1.0),
            reason: None,
        };
        let history = history(envelope, escalation);
        let mut context = Context {
            utterance: &escalation.utterance,
            edge: edge.clone(),
            edge_confidence: escalation.intent_confidence,
            understanding: edge,
            articles: Vec::new(),
            profile: profile.as_ref(),
            reported: Reported::from_snapshot(&escalation.vehicle),
            history: &history,
            now: job.now.to_zoned_datetime(workshop.zone.clone()),
        };
        let mut usage = Usage::default();
        let deadline = self.deadline();
        // 2.-4. urgent first, understanding, routing
        let route = self.understand(&mut context, escalation, deadline, &mut usage).await;
        // 5. the answer of the route
        let answer = match route {
            Route::Urgent => self.answer_urgent(&job),
            Route::Human => self.hand_to_person(&job, context.understanding.intent),
            Route::Answer => self.answer(&job, &mut context, workshop, deadline, &mut usage).await,
        };
        // 6. what is stored
        let handled = self.record(&job, &context, route, answer, self.cost(usage));
        self.metrics.handled(
            route.as_str(),
            &handled.outcome.provider,
            started.elapsed().as_secs_f64(),
        );
        handled
    }

    /// Stages 2 to 4: an urgent escalation is routed at once; otherwise the
    /// edge's labels are re-checked when it was unsure (each correction counted)
    /// and the route is taken from the understanding.
    async fn understand(
        &self,
        context: &mut Context<'_>,
        escalation: &Escalation,
        deadline: tokio::time::Instant,
        usage: &mut Usage,
    ) -> Route {
        let route = route(context.edge.intent, escalation.priority);
        if route == Route::Urgent || !self.should_recheck(escalation) {
            return route;
        }
        match tokio::time::timeout_at(deadline, self.provider.understand(context)).await {
            Ok(Ok((understood, spent))) => {
                usage.add(spent);
                context.understanding = understood;
            }
            Ok(Err(error)) => {
                self.metrics.llm_failure(error.kind());
                tracing::warn!(%error, "the intent re-check failed; keeping the edge's labels");
            }
            Err(_) => self.metrics.llm_failure("timeout"),
        }
        let (edge, understood) = (context.edge.intent, context.understanding.intent);
        if understood != edge {
            self.metrics.corrected(edge.as_str(), understood.as_str());
            tracing::info!(
                from = %edge,
                to = %understood,
                reason = context.understanding.reason.as_deref().unwrap_or(""),
                "the supervisor corrected the edge's intent"
            );
        }
        self::route(understood, escalation.priority)
    }

    /// The urgent route: the emergency protocol's words and an urgent handoff,
    /// with no model call.
    fn answer_urgent(&self, job: &Job<'_>) -> Answer {
        let handoff = self.open_handoff(job, "emergency", true);
        Answer {
            more_to_come: handoff.is_some(),
            handoff: handoff.map(|h| queued(&h)),
            ..Answer::said(format!(
                "Call {} now if anyone is hurt or in danger. I've alerted our emergency team with your location, and a person will join you right away.",
                self.config.emergency_number(&job.market)
            ))
        }
    }

    /// The human route: a queued handoff with its estimated wait.
    fn hand_to_person(&self, job: &Job<'_>, intent: Intent) -> Answer {
        let Some(handoff) = self.open_handoff(job, intent.as_str(), false) else {
            return Answer {
                failure: Some("handoff could not be stored".to_string()),
                ..Answer::said("Sorry, I couldn't reach our team just now. Please try again in a minute.".to_string())
            };
        };
        let wait = wait_phrase(handoff.estimated_wait_seconds);
        let text = if intent == Intent::Complaint {
            format!("I'm sorry about that. I've passed this to our customer care team, and someone will be with you {wait}.")
        } else {
            format!("I'm putting you through to a person; someone will be with you {wait}.")
        };
        Answer {
            more_to_come: true,
            handoff: Some(queued(&handoff)),
            ..Answer::said(text)
        }
    }

    /// The answer route: retrieval, the tools, and the provider's reply within
    /// the deadline, with the honest fallback when it fails.
    async fn answer(
        &self,
        job: &Job<'_>,
        context: &mut Context<'_>,
        workshop: Workshop,
        deadline: tokio::time::Instant,
        usage: &mut Usage,
    ) -> Answer {
        let articles = self.retrieve(job.escalation, context.understanding.intent, context.profile);
        let articles_used = articles.iter().map(|a| a.id.clone()).collect();
        context.articles = articles;
        let known = (context.profile, context.reported.clone());
        let thing = &job.envelope.thing_name;
        let tools = Toolbox::new(self.stores.appointments.as_ref(), thing, known, workshop, job.now);
        let result = match tokio::time::timeout_at(deadline, self.provider.respond(context, &tools)).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout),
        };
        let actions: Vec<Action> = tools
            .confirmed()
            .into_iter()
            .map(|appointment| Action::BookingConfirmed {
                appointment_id: appointment.appointment_id,
                dealer: appointment.dealer,
                starts_at: appointment.starts_at,
                service: appointment.service,
            })
            .collect();
        let answer = match result {
            Ok(reply) => {
                usage.add(reply.usage);
                Answer {
                    answered_by: self.provider.label(),
                    ..Answer::said(reply.text)
                }
            }
            Err(error) => {
                self.metrics.llm_failure(error.kind());
                tracing::warn!(%error, "no answer from the provider; the driver gets the fallback");
                let text = if actions.is_empty() {
                    FALLBACK_TEXT
                } else {
                    // The booking went through even though the model did not finish.
                    "Your booking is confirmed; the details are on the screen."
                };
                Answer {
                    failure: Some(error.to_string()),
                    ..Answer::said(text.to_string())
                }
            }
        };
        Answer {
            actions,
            articles_used,
            ..answer
        }
    }

    /// Stage 6: the response for the car, the conversation's two turns and the
    /// outcome record.
    fn record(&self, job: &Job<'_>, context: &Context<'_>, route: Route, answer: Answer, usage: Usage) -> Handled {
        let (envelope, now) = (job.envelope, job.now);
        let response = Response {
            in_reply_to: envelope.message_id,
            text: answer.text,
            actions: answer.actions,
            handoff: answer.handoff,
            more_to_come: answer.more_to_come,
            answered_by: Some(answer.answered_by.clone()),
        };
        let turn = |role, text: &str| ConversationTurn {
            role,
            text: text.to_string(),
            at: now,
        };
        let turns = vec![
            (turn(Role::Driver, &job.escalation.utterance), Usage::default()),
            (turn(Role::Assistant, &response.text), usage),
        ];
        let (edge, understood) = (&context.edge, &context.understanding);
        let outcome = Outcome {
            message_id: envelope.message_id.to_string(),
            thing: envelope.thing_name.clone(),
            conversation_id: job.conversation_id.clone(),
            edge_intent: edge.intent.to_string(),
            intent: understood.intent.to_string(),
            correction: understood.reason.clone().filter(|_| understood.intent != edge.intent),
            sentiment: understood.sentiment.to_string(),
            sentiment_score: understood.sentiment_score,
            route: route.as_str().to_string(),
            provider: answer.answered_by,
            articles: answer.articles_used,
            usage,
            failure: answer.failure,
            handled_at: jiff::Timestamp::now(),
        };
        Handled {
            thing: envelope.thing_name.clone(),
            conversation_id: job.conversation_id.clone(),
            response,
            outcome,
            turns,
        }
    }

    /// One deadline for every model call of an escalation (the re-check and the
    /// answer together). The provider also retries within its own deadline per
    /// call; this one bounds the whole, and a provider that never returns.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(self.config.llm.deadline_ms + 500)
    }

    fn should_recheck(&self, escalation: &Escalation) -> bool {
        escalation.intent == Intent::OutOfScope
            || escalation.intent_confidence < self.config.llm.recheck_below_confidence
    }

    /// Opens a handoff with an estimated wait: the queue ahead of it (urgent ones
    /// go first) times the mean handling time, over the agents on shift.
    fn open_handoff(&self, job: &Job<'_>, reason: &str, urgent: bool) -> Option<Handoff> {
        let ahead = match self.stores.handoffs.queued() {
            Ok(queue) => queue.iter().filter(|h| h.urgent || !urgent).count(),
            Err(error) => {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot read the handoff queue");
                0
            }
        };
        let handoff = Handoff {
            handoff_id: format!("h-{}", &uuid::Uuid::now_v7().simple().to_string()[16..]),
            message_id: job.envelope.message_id.to_string(),
            thing: job.envelope.thing_name.clone(),
            conversation_id: job.conversation_id.clone(),
            reason: reason.to_string(),
            urgent,
            state: HandoffState::Queued,
            agent: None,
            created_at: job.now,
            taken_at: None,
            closed_at: None,
            estimated_wait_seconds: estimated_wait_seconds(ahead, urgent, &self.config),
            utterance: job.escalation.utterance.clone(),
        };
        match self.stores.handoffs.open(&handoff) {
            Ok(()) => Some(handoff),
            Err(error) => {
                self.metrics.failure("store");
                tracing::error!(%error, "cannot store the handoff");
                None
            }
        }
    }
}

/// Seconds until an agent is free for the next in line after `ahead` others.
pub fn estimated_wait_seconds(ahead: usize, urgent: bool, config: &Config) -> u32 {
    if urgent && ahead == 0 {
        return 0;
    }
    let per_agent = config.handoff.mean_handle_minutes * 60.0 / f64::from(config.handoff.agents_on_shift);
    (((ahead + 1) as f64) * per_agent).round() as u32
}

/// "in about 6 minutes", "in a moment".
pub fn wait_phrase(seconds: u32) -> String {
    match seconds {
        0..=59 => "in a moment".to_string(),
        60..=119 => "in about a minute".to_string(),
        s => format!("in about {} minutes", (s + 30) / 60),
    }
}
