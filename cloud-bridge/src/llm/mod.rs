//! The seam to a language model: what the supervisor asks of one (re-read the
//! edge's understanding; write the answer, using the whitelisted tools), with two
//! implementations: Bedrock Converse, and a local provider that composes answers
//! from retrieval and the tools without a model.

pub mod bedrock;
pub mod local;
pub mod prompt;

use async_trait::async_trait;

use crate::store::{ConversationTurn, Profile, Usage};
use crate::tools::Toolbox;

/// What the supervisor knows when it asks a model.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The driver's words: only ever placed in a user turn.
    pub utterance: &'a str,
    pub edge: Understanding,
    /// The edge model's confidence in its intent.
    pub edge_confidence: f32,
    /// After the re-check.
    pub understanding: Understanding,
    pub articles: Vec<knowledge::Article>,
    /// The owner's profile; `None` when none is on file.
    pub profile: Option<&'a Profile>,
    /// What the car reported of itself (model, year), for a car without one.
    pub reported: crate::tools::Reported,
    /// Earlier turns of the conversation, oldest first.
    pub history: &'a [ConversationTurn],
    /// Now, in the owner's zone.
    pub now: jiff::ZonedDateTime,
}

/// An intent (one of the contract's labels) and sentiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Understanding {
    pub intent: models::Intent,
    pub sentiment: models::Sentiment,
    pub sentiment_score: f32,
    /// Why it differs from the edge's, when it does.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model is throttling requests")]
    Throttled,
    #[error("the model service is unavailable: {0}")]
    Unavailable(String),
    #[error("no answer within the deadline")]
    Timeout,
    #[error("the model kept making invalid tool calls: {0}")]
    InvalidToolUse(String),
    #[error("the model's answer was blocked ({0})")]
    Blocked(String),
    #[error("the model request failed: {0}")]
    Request(String),
}

impl LlmError {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Throttled => "throttled",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Timeout => "timeout",
            LlmError::InvalidToolUse(_) => "invalid_tool_use",
            LlmError::Blocked(_) => "blocked",
            LlmError::Request(_) => "request",
        }
    }

    /// Worth another attempt (throttling, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Throttled | LlmError::Unavailable(_))
    }
}

#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// How responses are labelled (`bedrock:<model>`, `local`).
    fn label(&self) -> String;
    /// Re-reads the edge's labels; returns the (possibly corrected) understanding.
    async fn understand(&self, context: &Context<'_>) -> Result<(Understanding, Usage), LlmError>;
    /// Writes the spoken answer, calling tools through `tools`.
    async fn respond(&self, context: &Context<'_>, tools: &Toolbox<'_>) -> Result<Reply, LlmError>;
}
