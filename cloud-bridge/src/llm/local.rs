//! The offline provider: no model. It re-checks the edge's label with keyword
//! rules, books with the deterministic parser of `servicing` and the same tools
//! Bedrock would call, and otherwise answers with the best article's summary.
//! What it says is labelled `local` in the response.

use async_trait::async_trait;
use models::Intent;
use serde_json::json;

use super::{Context, LlmError, LlmProvider, Reply, Understanding};
use crate::servicing::{self, PartOfDay};
use crate::store::Usage;
use crate::tools::{ToolCall, Toolbox};

/// Words that settle an intent whatever the edge said; first match wins.
const RULES: &[(Intent, &[&str])] = &[
    (
        Intent::Emergency,
        &[
            "accident",
            "crash",
            "crashed",
            "fire",
            "smoke",
            "injured",
            "bleeding",
            "ambulance",
            "unconscious",
        ],
    ),
    (
        Intent::TalkToAgent,
        &["human", "person", "agent", "representative", "operator", "someone real"],
    ),
    (
        Intent::Complaint,
        &["complain", "complaint", "unacceptable", "ripped off", "worst service"],
    ),
    (Intent::RecallWarranty, &["recall", "recalls", "warranty"]),
    (Intent::BookService, &["book", "schedule", "appointment", "reschedule"]),
];

#[derive(Debug, Default)]
pub struct LocalProvider;

fn words_of(text: &str) -> String {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect();
    format!(" {} ", cleaned.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The intent the keyword rules give, if any.
pub fn rule_intent(text: &str) -> Option<Intent> {
    let words = words_of(text);
    RULES
        .iter()
        .find(|(_, keys)| keys.iter().any(|k| words.contains(&format!(" {k} "))))
        .map(|(intent, _)| *intent)
}

impl LocalProvider {
    fn book(&self, context: &Context<'_>, tools: &Toolbox<'_>) -> Result<String, LlmError> {
        let today = context.now.date();
        let request = servicing::parse_request(context.utterance, today);
        let service = request.service.unwrap_or("annual service");
        let days: Vec<jiff::civil::Date> = match request.date {
            Some(d) => vec![d],
            None => (1..=14)
                .filter_map(|n| today.checked_add(jiff::Span::new().days(n)).ok())
                .collect(),
        };
        // An hour asked for picks its part of the day, so that it is among the slots listed.
        let part = match request.hour {
            Some((h, _)) if h < 12 => PartOfDay::Morning,
            Some((h, _)) if h < 17 => PartOfDay::Afternoon,
            Some(_) => PartOfDay::Evening,
            None => request.part_of_day,
        };
        for date in days {
            let listed = tools.call(
                "list_service_slots",
                &json!({"date": date.to_string(), "part_of_day": part_name(part), "service": service}),
            );
            let listed = match listed {
                Ok(v) => v,
                Err(e) => return Ok(format!("Sorry, I couldn't book that: {e}.")),
            };
            let mut slots: Vec<String> = listed["slots"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["starts_at"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if let Some((h, _)) = request.hour {
                let zone = tools.workshop.zone.clone();
                slots.retain(|s| {
                    s.parse::<jiff::Timestamp>()
                        .is_ok_and(|t| t.to_zoned_datetime(zone.clone()).hour() == h)
                });
            }
            let Some(slot) = slots.first() else { continue };
            let held = tools
                .call("book_service_slot", &json!({"slot": slot, "service": service}))
                .map_err(|e| LlmError::Request(e.to_string()))?;
            let id = held["appointment_id"].as_str().unwrap_or_default().to_string();
            let confirmed = tools
                .run(&ToolCall::ConfirmAppointment { appointment_id: id })
                .map_err(|e| LlmError::Request(e.to_string()))?;
            return Ok(format!(
                "You're booked for a {} at {} on {}.",
                service,
                confirmed["dealer"].as_str().unwrap_or("your dealer"),
                confirmed["local_time"].as_str().unwrap_or_default()
            ));
        }
        Ok(match request.date {
            Some(d) => format!(
                "{} has no free {} slot {} on {}. Would another day suit you?",
                tools.workshop.dealer,
                service,
                part_phrase(part),
                d.strftime("%A %-d %B")
            ),
            None => format!(
                "{} has nothing free in the next two weeks; I'll ask the team to call you.",
                tools.workshop.dealer
            ),
        })
    }

    fn recalls(&self, tools: &Toolbox<'_>) -> Result<String, LlmError> {
        let found = tools
            .run(&ToolCall::LookupRecallsWarranty)
            .map_err(|e| LlmError::Request(e.to_string()))?;
        let warranty = match (
            found["warranty"]["known"].as_bool(),
            found["warranty"]["in_warranty"].as_bool(),
        ) {
            (Some(true), Some(true)) => format!(
                "You're under warranty until {}.",
                found["warranty"]["until"].as_str().unwrap_or_default()
            ),
            (Some(true), _) => "Your warranty has ended.".to_string(),
            _ => "I don't have your warranty on file, so an agent will need to check it.".to_string(),
        };
        let Some(recalls) = found["open_recalls"].as_array() else {
            return Ok(format!(
                "I can't tell which car this is, so I can't check recalls from here. {warranty}"
            ));
        };
        Ok(match recalls.as_slice() {
            [] => format!("There are no open recalls for your car. {warranty}"),
            [one] => format!(
                "There is one open recall: {} {warranty}",
                one["summary"].as_str().unwrap_or_default()
            ),
            many => format!(
                "There are {} open recalls, all fixed free by your dealer. {warranty}",
                many.len()
            ),
        })
    }
}

fn part_name(part: PartOfDay) -> &'static str {
    match part {
        PartOfDay::Morning => "morning",
        PartOfDay::Afternoon => "afternoon",
        PartOfDay::Evening => "evening",
        PartOfDay::Any => "any",
    }
}

fn part_phrase(part: PartOfDay) -> &'static str {
    match part {
        PartOfDay::Morning => "in the morning",
        PartOfDay::Afternoon => "in the afternoon",
        PartOfDay::Evening => "in the evening",
        PartOfDay::Any => "",
    }
}

#[async_trait]
impl LlmProvider for LocalProvider {
    fn label(&self) -> String {
        "local".to_string()
    }

    async fn understand(&self, context: &Context<'_>) -> Result<(Understanding, Usage), LlmError> {
        let mut understanding = context.edge.clone();
        if let Some(intent) = rule_intent(context.utterance) {
            if intent != context.edge.intent {
                understanding.reason = Some(format!("keyword rule: the words name {intent}"));
                understanding.intent = intent;
            }
        }
        Ok((understanding, Usage::default()))
    }

    async fn respond(&self, context: &Context<'_>, tools: &Toolbox<'_>) -> Result<Reply, LlmError> {
        let text = match context.understanding.intent {
            Intent::BookService => self.book(context, tools)?,
            Intent::RecallWarranty => self.recalls(tools)?,
            Intent::Directions | Intent::Distance | Intent::Traffic | Intent::FindPlace => {
                "I can't look up routes, traffic or places right now; the navigation app on the screen can.".to_string()
            }
            _ => match context.articles.first() {
                Some(article) => article.summary.clone(),
                None => {
                    "Sorry, I don't have an answer for that. You can ask me to put you through to a person.".to_string()
                }
            },
        };
        Ok(Reply {
            text,
            usage: Usage::default(),
        })
    }
}
