//! `cloud-bridge agent list | take | reply | close`: a person in the contact
//! centre working the handoff queue. Every command works on the shared store;
//! what the driver should hear is queued there and delivered by whichever
//! service instance leases it.

use std::io::Write;

use protocol::{Handoff as WireHandoff, HandoffStatus, Response};

use crate::service::handoff_message;
use crate::store::{ConversationTurn, Handoff, HandoffState, Role, StoreError, Stores, Usage};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no handoff {0}: `cloud-bridge agent list` shows the open ones")]
    Unknown(String),
    #[error("handoff {id} is {state}; {hint}")]
    WrongState {
        id: String,
        state: &'static str,
        hint: &'static str,
    },
    #[error("the reply is empty")]
    EmptyReply,
    #[error("the reply is {0} characters; keep it under 1000 (it is read aloud)")]
    TooLong(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the list: {0}")]
    Io(#[from] std::io::Error),
}

fn require(stores: &Stores, id: &str) -> Result<Handoff, AgentError> {
    stores
        .handoffs
        .get(id)?
        .ok_or_else(|| AgentError::Unknown(id.to_string()))
}

fn send(
    stores: &Stores,
    handoff: &Handoff,
    text: String,
    status: HandoffStatus,
    agent: Option<&str>,
    more: bool,
) -> Result<(), AgentError> {
    let response = Response {
        in_reply_to: handoff.message_id.parse().unwrap_or_default(),
        text: text.clone(),
        actions: Vec::new(),
        handoff: Some(WireHandoff {
            status,
            agent: agent.map(str::to_string),
            estimated_wait_seconds: None,
        }),
        more_to_come: more,
        answered_by: Some(match agent {
            Some(a) => format!("agent:{a}"),
            None => "supervisor".to_string(),
        }),
    };
    stores
        .handoffs
        .enqueue(&handoff.thing, &handoff.conversation_id, &response)?;
    let role = if agent.is_some() { Role::Agent } else { Role::Assistant };
    stores.conversations.append(
        &handoff.conversation_id,
        &handoff.thing,
        &ConversationTurn {
            role,
            text,
            at: jiff::Timestamp::now(),
        },
        Usage::default(),
    )?;
    Ok(())
}

/// Prints open handoffs (or all), queued first.
pub fn list(stores: &Stores, all: bool, out: &mut dyn Write) -> Result<usize, AgentError> {
    let handoffs = stores.handoffs.list(all)?;
    let now = jiff::Timestamp::now();
    let mut table = daemon::table::new(
        &["handoff", "state", "urgent", "reason", "waiting", "car", "said"],
        &[4],
    );
    for h in &handoffs {
        let waited = h.taken_at.unwrap_or(now).duration_since(h.created_at).as_secs();
        table.add_row(vec![
            h.handoff_id.clone(),
            h.state.as_str().to_string(),
            if h.urgent { "URGENT" } else { "" }.to_string(),
            h.reason.clone(),
            format!("{waited}s"),
            h.thing.clone(),
            format!("{:?}", h.utterance.chars().take(80).collect::<String>()),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(handoffs.len())
}

/// Takes a queued handoff; the driver hears that a person has joined.
pub fn take(stores: &Stores, id: &str, agent: &str) -> Result<Handoff, AgentError> {
    require(stores, id)?;
    let handoff = stores
        .handoffs
        .transition(
            id,
            HandoffState::Queued,
            HandoffState::Assigned,
            Some(agent),
            jiff::Timestamp::now(),
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => AgentError::WrongState {
                id: id.to_string(),
                state: "not queued",
                hint: "another agent may have taken it",
            },
            other => other.into(),
        })?;
    send(
        stores,
        &handoff,
        handoff_message(HandoffState::Assigned, agent),
        HandoffStatus::Assigned,
        Some(agent),
        true,
    )?;
    Ok(handoff)
}

/// Sends the driver one reply on a handoff the agent has taken.
pub fn reply(stores: &Stores, id: &str, agent: &str, text: &str) -> Result<(), AgentError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AgentError::EmptyReply);
    }
    if text.chars().count() > 1000 {
        return Err(AgentError::TooLong(text.chars().count()));
    }
    let handoff = require(stores, id)?;
    if handoff.state != HandoffState::Assigned {
        return Err(AgentError::WrongState {
            id: id.to_string(),
            state: handoff.state.as_str(),
            hint: "take it first (`cloud-bridge agent take`)",
        });
    }
    send(
        stores,
        &handoff,
        text.to_string(),
        HandoffStatus::Assigned,
        Some(agent),
        true,
    )
}

/// Closes a handoff; the driver is told, and no more messages follow.
pub fn close(stores: &Stores, id: &str) -> Result<Handoff, AgentError> {
    let current = require(stores, id)?;
    if current.state == HandoffState::Closed {
        return Err(AgentError::WrongState {
            id: id.to_string(),
            state: "closed",
            hint: "nothing to do",
        });
    }
    let handoff = stores
        .handoffs
        .transition(id, current.state, HandoffState::Closed, None, jiff::Timestamp::now())
        .map_err(|e| match e {
            StoreError::Conflict(_) => AgentError::WrongState {
                id: id.to_string(),
                state: "changing",
                hint: "try again",
            },
            other => other.into(),
        })?;
    send(
        stores,
        &handoff,
        handoff_message(HandoffState::Closed, ""),
        HandoffStatus::Closed,
        None,
        false,
    )?;
    Ok(handoff)
}
