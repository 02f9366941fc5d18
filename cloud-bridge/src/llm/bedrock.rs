//! Bedrock Converse through the real SDK client: the grounded system prompt, the
//! alternating turns, the whitelisted tools and the tool-use loop, an optional
//! guardrail, and retries of throttling and 5xx with jittered backoff
//! (`daemon::backoff`) within the request's deadline. The SDK's own retries are off
//! and the loop stays here, because the SDK's retry config can neither stop at this
//! request's deadline (a pause that would pass it gives up at once) nor count each
//! failed attempt by kind in the metrics.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, GuardrailConfiguration, InferenceConfiguration, Message, SpecificToolChoice,
    StopReason, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::Document;
use serde_json::{json, Value};

use super::prompt;
use super::{Context, LlmError, LlmProvider, Reply, Understanding};
use crate::metrics::Metrics;
use crate::store::Usage;
use crate::tools::{ToolName, Toolbox};

/// How the provider talks to Bedrock.
#[derive(Debug, Clone)]
pub struct BedrockSettings {
    pub model_id: String,
    pub max_tokens: i32,
    pub temperature: f32,
    pub guardrail: Option<(String, String)>,
    /// The whole call, retries included.
    pub deadline: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Tool-use rounds before giving up on an answer.
    pub max_tool_rounds: usize,
}

pub struct BedrockProvider {
    client: aws_sdk_bedrockruntime::Client,
    settings: BedrockSettings,
    metrics: Metrics,
}

/// serde_json -> the SDK's document type.
pub fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(aws_smithy_types::Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(aws_smithy_types::Number::NegInt(i))
            } else {
                Document::Number(aws_smithy_types::Number::Float(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect()),
    }
}

/// The SDK's document type -> serde_json.
pub fn from_document(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(n) => match *n {
            aws_smithy_types::Number::PosInt(u) => json!(u),
            aws_smithy_types::Number::NegInt(i) => json!(i),
            aws_smithy_types::Number::Float(f) => json!(f),
        },
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), from_document(v))).collect()),
    }
}

fn tool_spec(name: &str, description: &str, schema: Value) -> Tool {
    Tool::ToolSpec(
        ToolSpecification::builder()
            .name(name)
            .description(description)
            .input_schema(ToolInputSchema::Json(to_document(&schema)))
            .build()
            .expect("name and schema are set"),
    )
}

const UNDERSTANDING_TOOL: &str = "record_understanding";

/// What the model records with [`UNDERSTANDING_TOOL`]; its schema is the tool's.
/// A label outside the contract, or a score out of range, fails to read.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Recorded {
    #[schemars(schema_with = "intent_labels")]
    intent: models::Intent,
    #[schemars(schema_with = "sentiment_labels")]
    sentiment: models::Sentiment,
    #[schemars(range(min = -1.0, max = 1.0))]
    sentiment_score: f64,
    /// Why the reading differs from the car's, when it does
    #[serde(default)]
    reason: Option<String>,
}

impl Recorded {
    /// The schema's range, which the model may still break.
    fn is_valid(&self) -> bool {
        (-1.0..=1.0).contains(&self.sentiment_score)
    }

    /// The understanding the model recorded; a reason only when it corrected
    /// the car's reading, at most 200 characters.
    fn into_understanding(self, edge: &Understanding) -> Understanding {
        let changed = self.intent != edge.intent;
        Understanding {
            reason: changed.then(|| {
                self.reason
                    .as_deref()
                    .unwrap_or("the model read it differently")
                    .chars()
                    .take(200)
                    .collect()
            }),
            intent: self.intent,
            sentiment: self.sentiment,
            sentiment_score: self.sentiment_score as f32,
        }
    }
}

/// The contract's sentiment labels.
fn sentiment_labels(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let labels: Vec<&str> = models::Sentiment::ALL.iter().map(|s| s.as_str()).collect();
    schemars::json_schema!({"type": "string", "enum": labels})
}

/// The contract's intent labels.
fn intent_labels(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let labels: Vec<&str> = models::Intent::ALL.iter().map(|i| i.as_str()).collect();
    schemars::json_schema!({"type": "string", "enum": labels})
}

fn message(role: ConversationRole, content: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .expect("role and content are set")
}

fn classify_error(error: SdkError<ConverseError>) -> LlmError {
    match &error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            if e.is_throttling_exception() || status == 429 {
                LlmError::Throttled
            } else if e.is_internal_server_exception()
                || e.is_service_unavailable_exception()
                || e.is_model_not_ready_exception()
                || e.is_model_timeout_exception()
                || status >= 500
            {
                LlmError::Unavailable(format!("{status}: {}", e.meta().code().unwrap_or("error")))
            } else {
                LlmError::Request(format!(
                    "{status}: {}",
                    e.meta().message().or(e.meta().code()).unwrap_or("error")
                ))
            }
        }
        SdkError::TimeoutError(_) => LlmError::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => LlmError::Unavailable(error.to_string()),
        _ => LlmError::Request(error.to_string()),
    }
}

impl BedrockProvider {
    /// Runs one tool call: its result, or the refusal (counted in
    /// `invalid_calls`), for the model to read.
    fn run_tool(&self, tools: &Toolbox<'_>, call: &ToolUseBlock, invalid_calls: &mut usize) -> ContentBlock {
        let input = from_document(call.input());
        let (status, content) = match tools.call(call.name(), &input) {
            Ok(value) => (
                ToolResultStatus::Success,
                ToolResultContentBlock::Json(to_document(&value)),
            ),
            Err(error) => {
                *invalid_calls += 1;
                self.metrics.tool_refused(&error);
                tracing::warn!(tool = call.name(), %error, "a tool call was refused");
                (
                    ToolResultStatus::Error,
                    ToolResultContentBlock::Text(format!("refused: {error}")),
                )
            }
        };
        ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(call.tool_use_id())
                .content(content)
                .status(status)
                .build()
                .expect("id and content are set"),
        )
    }

    /// A client from the AWS default chain (region, credentials), with the
    /// endpoint overridden when `endpoint_url` is set.
    pub async fn from_environment(
        settings: BedrockSettings,
        region: Option<String>,
        endpoint_url: Option<String>,
        metrics: Metrics,
    ) -> BedrockProvider {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        let config = aws_sdk_bedrockruntime::config::Builder::from(&shared)
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .build();
        BedrockProvider::with_client(aws_sdk_bedrockruntime::Client::from_conf(config), settings, metrics)
    }

    pub fn with_client(
        client: aws_sdk_bedrockruntime::Client,
        settings: BedrockSettings,
        metrics: Metrics,
    ) -> BedrockProvider {
        BedrockProvider {
            client,
            settings,
            metrics,
        }
    }

    /// One Converse call, retried on throttling and 5xx with jittered exponential
    /// backoff until `deadline`.
    async fn converse(
        &self,
        system: &[String],
        messages: &[Message],
        tools: ToolConfiguration,
        deadline: tokio::time::Instant,
    ) -> Result<ConverseOutput, LlmError> {
        let mut backoff = daemon::backoff::Backoff::new(
            self.settings.retry_initial,
            self.settings.retry_max.max(self.settings.retry_initial),
            rand::random(),
        );
        loop {
            let mut request = self
                .client
                .converse()
                .model_id(&self.settings.model_id)
                .set_system(Some(system.iter().cloned().map(SystemContentBlock::Text).collect()))
                .set_messages(Some(messages.to_vec()))
                .inference_config(
                    InferenceConfiguration::builder()
                        .max_tokens(self.settings.max_tokens)
                        .temperature(self.settings.temperature)
                        .build(),
                )
                .tool_config(tools.clone());
            if let Some((id, version)) = &self.settings.guardrail {
                request = request.guardrail_config(
                    GuardrailConfiguration::builder()
                        .guardrail_identifier(id)
                        .guardrail_version(version)
                        .build(),
                );
            }
            let attempt = tokio::time::timeout_at(deadline, request.send()).await;
            let error = match attempt {
                Err(_) => return Err(LlmError::Timeout),
                Ok(Ok(output)) => return Ok(output),
                Ok(Err(e)) => classify_error(e),
            };
            self.metrics.llm_failure(error.kind());
            if !error.is_retryable() {
                return Err(error);
            }
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "Bedrock call failed; retrying");
            self.metrics.llm_retry();
            tokio::time::sleep(pause).await;
        }
    }

    fn usage(output: &ConverseOutput) -> Usage {
        output
            .usage()
            .map(|u| Usage {
                input_tokens: u.input_tokens().max(0) as u64,
                output_tokens: u.output_tokens().max(0) as u64,
                cost_usd: 0.0,
            })
            .unwrap_or_default()
    }

    fn initial_messages(context: &Context<'_>) -> Vec<Message> {
        prompt::turns(context)
            .into_iter()
            .map(|t| {
                let role = if t.user {
                    ConversationRole::User
                } else {
                    ConversationRole::Assistant
                };
                message(role, vec![ContentBlock::Text(t.text)])
            })
            .collect()
    }
}

fn output_message(output: &ConverseOutput) -> Option<&Message> {
    output.output().and_then(|o| o.as_message().ok())
}

fn text_of(message: &Message) -> String {
    message
        .content()
        .iter()
        .filter_map(|c| c.as_text().ok())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// The one tool the understanding call must use.
fn understanding_tools() -> ToolConfiguration {
    let schema = crate::tools::arguments_schema::<Recorded>();
    ToolConfiguration::builder()
        .tools(tool_spec(
            UNDERSTANDING_TOOL,
            "Record what the driver wants (one label) and how they feel.",
            schema,
        ))
        .tool_choice(ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(UNDERSTANDING_TOOL)
                .build()
                .expect("name is set"),
        ))
        .build()
        .expect("tools are set")
}

#[async_trait]
impl LlmProvider for BedrockProvider {
    fn label(&self) -> String {
        format!("bedrock:{}", self.settings.model_id)
    }

    async fn understand(&self, context: &Context<'_>) -> Result<(Understanding, Usage), LlmError> {
        let deadline = tokio::time::Instant::now() + self.settings.deadline;
        let tools = understanding_tools();
        let mut system = prompt::system_blocks(context);
        system.push(format!(
            "Task: classify the driver's last message with {UNDERSTANDING_TOOL}. The car's own reading is `{}` \
             ({:.2} confident), sentiment {} ({:+.2}); correct it only if it is wrong, and say why in `reason`.",
            context.edge.intent, context.edge_confidence, context.edge.sentiment, context.edge.sentiment_score
        ));
        let output = self
            .converse(&system, &Self::initial_messages(context), tools, deadline)
            .await?;
        let usage = Self::usage(&output);
        let call = output_message(&output).and_then(|m| {
            m.content()
                .iter()
                .filter_map(|c| c.as_tool_use().ok())
                .find(|t| t.name() == UNDERSTANDING_TOOL)
                .map(|t| from_document(t.input()))
        });
        let Some(call) = call else {
            self.metrics.llm_failure("no_understanding");
            return Ok((context.edge.clone(), usage));
        };
        let Some(recorded) = serde_json::from_value::<Recorded>(call).ok().filter(Recorded::is_valid) else {
            self.metrics.llm_failure("invalid_understanding");
            return Ok((context.edge.clone(), usage));
        };
        Ok((recorded.into_understanding(&context.edge), usage))
    }

    async fn respond(&self, context: &Context<'_>, tools: &Toolbox<'_>) -> Result<Reply, LlmError> {
        let deadline = tokio::time::Instant::now() + self.settings.deadline;
        let config = {
            let mut builder = ToolConfiguration::builder();
            for tool in ToolName::ALL {
                builder = builder.tools(tool_spec(tool.as_str(), tool.description(), tool.schema()));
            }
            builder.build().expect("tools are set")
        };
        let system = prompt::system_blocks(context);
        let mut messages = Self::initial_messages(context);
        let mut usage = Usage::default();
        let mut invalid_calls = 0usize;
        for _round in 0..=self.settings.max_tool_rounds {
            let output = self.converse(&system, &messages, config.clone(), deadline).await?;
            usage.add(Self::usage(&output));
            let reply = output_message(&output).cloned();
            match output.stop_reason() {
                StopReason::ToolUse => {
                    let Some(reply) = reply else {
                        return Err(LlmError::InvalidToolUse("tool_use with no message".into()));
                    };
                    let uses: Vec<ToolUseBlock> = reply
                        .content()
                        .iter()
                        .filter_map(|c| c.as_tool_use().ok().cloned())
                        .collect();
                    if uses.is_empty() {
                        return Err(LlmError::InvalidToolUse("tool_use with no tool call".into()));
                    }
                    let results: Vec<ContentBlock> = uses
                        .iter()
                        .map(|call| self.run_tool(tools, call, &mut invalid_calls))
                        .collect();
                    messages.push(reply);
                    messages.push(message(ConversationRole::User, results));
                    if invalid_calls > self.settings.max_tool_rounds {
                        return Err(LlmError::InvalidToolUse(format!("{invalid_calls} refused calls")));
                    }
                }
                StopReason::MalformedToolUse | StopReason::MalformedModelOutput => {
                    invalid_calls += 1;
                    self.metrics.llm_failure("malformed_tool_use");
                    if invalid_calls > 1 {
                        return Err(LlmError::InvalidToolUse(
                            "the model's tool call was malformed twice".into(),
                        ));
                    }
                    // Ask again: the same conversation, once.
                }
                StopReason::GuardrailIntervened | StopReason::ContentFiltered => {
                    return Err(LlmError::Blocked(output.stop_reason().as_str().to_string()));
                }
                _ => {
                    let text = reply.as_ref().map(text_of).unwrap_or_default();
                    if text.is_empty() {
                        return Err(LlmError::Request("the model returned no text".into()));
                    }
                    return Ok(Reply { text, usage });
                }
            }
        }
        Err(LlmError::InvalidToolUse(format!(
            "no answer after {} tool rounds",
            self.settings.max_tool_rounds
        )))
    }
}
