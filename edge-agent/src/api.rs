//! The local HTTP/JSON API (see `edge-agent/openapi.json`): routes, request limits
//! (body size and time, per-client rate), JSON errors, and server-sent events.
//! Connections are accepted in [`crate::listener`].
//!
//! Clients are told apart by what the kernel says, not by what they claim: the
//! peer's uid on the Unix socket (a forked process is the same client), the
//! address on loopback TCP.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ApiConfig;
use crate::engine::{Engine, Event};
use crate::event_log::{Missed, Numbered};

/// Who is asking, as the transport tells it: the peer's uid on the socket,
/// its address on TCP (see [`crate::listener`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(pub String);

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    limiter: Arc<DefaultKeyedRateLimiter<ClientId>>,
    /// Background work started by requests (late answers); shutdown waits for it.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    answer_wait: Duration,
    max_body: usize,
    body_timeout: Duration,
}

/// How often the rate limiter forgets clients that have been quiet.
const RATE_LIMIT_EXPIRY: Duration = Duration::from_secs(60);

/// A JSON error body: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

pub fn router(engine: Arc<Engine>, config: &ApiConfig, tracker: TaskTracker, shutdown: CancellationToken) -> Router {
    let quota = Quota::per_second(NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN));
    let limiter = Arc::new(RateLimiter::keyed(quota));
    tracker.spawn(expire_quiet_clients(limiter.clone(), shutdown.clone()));
    let state = AppState {
        engine,
        limiter,
        tracker,
        shutdown,
        answer_wait: Duration::from_millis(config.answer_wait_ms),
        max_body: config.max_body_bytes,
        body_timeout: Duration::from_millis(config.body_timeout_ms),
    };
    Router::new()
        .route("/v1/ask", post(ask))
        .route("/v1/conversations", axum::routing::delete(forget_everything))
        .route("/v1/conversations/{id}", get(conversation).delete(forget))
        .route("/v1/events", get(events))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see openapi.json") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on this endpoint; see openapi.json"),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_and_count))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Drops the limiter's entries of clients whose quota is full again, so one
/// that comes and goes (or many uids over time) leaves nothing behind.
async fn expire_quiet_clients(limiter: Arc<DefaultKeyedRateLimiter<ClientId>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RATE_LIMIT_EXPIRY) => {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

async fn limit_and_count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let client = request
        .extensions()
        .get::<ConnectInfo<ClientId>>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| ClientId("unknown".to_string()));
    let response = match state.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            state.engine.metrics.rate_limited.inc();
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            tracing::debug!(client = %client.0, "rate limited");
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests from this client; retry in {} ms",
                    wait.as_millis().max(1)
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait.as_secs().max(1)));
            response
        }
    };
    state
        .engine
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            endpoint,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[derive(Debug, Deserialize)]
struct AskRequest {
    text: String,
    #[serde(default)]
    conversation_id: Option<String>,
    /// How long the client will wait for the answer; longer waits are capped by
    /// the config. 0 returns 202 at once and the answer comes on /v1/events.
    #[serde(default)]
    wait_ms: Option<u64>,
}

fn check_conversation_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "conversation_id must be 1 to 128 characters of letters, digits, '-', '_', '.' or ':'",
        ));
    }
    Ok(())
}

/// The request's body, within the size limit and the body timeout.
async fn read_body(state: &AppState, body: axum::body::Body) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, state.max_body));
    match read.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let too_large =
                std::error::Error::source(&error).is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large")
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read: {error}"),
                )
            })
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                state.body_timeout.as_millis()
            ),
        )),
    }
}

async fn ask(State(state): State<AppState>, body: axum::body::Body) -> Result<Response, ApiError> {
    let body = read_body(&state, body).await?;
    let request: AskRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object {{\"text\": string, \"conversation_id\"?: string}}: {e}"),
        )
    })?;
    models::classifier::check_utterance(&request.text)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let conversation_id = match request.conversation_id {
        Some(id) => {
            check_conversation_id(&id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let turn_id = uuid::Uuid::now_v7();
    let wait = request
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(state.answer_wait)
        .min(state.answer_wait);

    let engine = state.engine.clone();
    let (text, conversation) = (request.text, conversation_id.clone());
    let mut work = state
        .tracker
        .spawn_blocking(move || engine.ask(turn_id, &conversation, &text));
    let finished = if wait.is_zero() {
        None
    } else {
        tokio::time::timeout(wait, &mut work).await.ok()
    };
    match finished {
        Some(joined) => {
            let answered = joined.map_err(ApiError::internal)?.map_err(|e| dialogue_error(&e))?;
            Ok(Json(answered).into_response())
        }
        None => {
            // Not ready in time: answer 202 now, deliver the answer as an event.
            let engine = state.engine.clone();
            let conversation = conversation_id.clone();
            state.tracker.spawn(async move {
                let event = match work.await {
                    Ok(Ok(answered)) => {
                        engine.metrics.late_answers.inc();
                        Event::Answer(Box::new(answered))
                    }
                    Ok(Err(e)) => Event::AnswerFailed {
                        turn_id,
                        conversation_id: conversation,
                        error: e.to_string(),
                    },
                    Err(e) => Event::AnswerFailed {
                        turn_id,
                        conversation_id: conversation,
                        error: e.to_string(),
                    },
                };
                engine.publish(event);
            });
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "turn_id": turn_id,
                    "conversation_id": conversation_id,
                    "status": "pending",
                    "events": format!("/v1/events?conversation_id={conversation_id}"),
                })),
            )
                .into_response())
        }
    }
}

fn dialogue_error(error: &crate::dialogue::DialogueError) -> ApiError {
    match error {
        crate::dialogue::DialogueError::Model(models::ModelError::Input(message)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message.clone())
        }
        other => ApiError::internal(other),
    }
}

async fn conversation(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_conversation_id(&id)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let turns = tokio::task::spawn_blocking(move || engine.conversation(&lookup))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if turns.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no conversation `{id}`")));
    }
    Ok(Json(serde_json::json!({ "conversation_id": id, "turns": turns })).into_response())
}

async fn forget(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_conversation_id(&id)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || engine.forget(&lookup))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !found {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no conversation `{id}`")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn forget_everything(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.forget_everything())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    tracing::info!("all conversations and unsent escalations forgotten");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    conversation_id: Option<String>,
}

/// `/v1/events`: the events of one conversation (or all) and of the whole car,
/// each with an `id:`. A client that reconnects with `Last-Event-ID` first hears
/// what it missed that is still kept (after a `lagged` event when some is not).
async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = &query.conversation_id {
        check_conversation_id(id)?;
    }
    let filter = query.conversation_id;
    let (backlog, receiver) = match headers.get("last-event-id") {
        Some(last) => {
            let resumed = state.engine.resume_events(last.to_str().unwrap_or_default());
            let missed = match resumed.missed {
                Missed::None => None,
                Missed::Count(count) => Some(lagged(Some(count))),
                Missed::Unknown => Some(lagged(None)),
            };
            let mut backlog: std::collections::VecDeque<SseEvent> = missed.into_iter().collect();
            backlog.extend(
                resumed
                    .replay
                    .iter()
                    .filter(|n| for_subscriber(&n.event, filter.as_deref()))
                    .map(sse),
            );
            (backlog, resumed.live)
        }
        None => (std::collections::VecDeque::new(), state.engine.subscribe()),
    };
    let shutdown = state.shutdown.clone();
    // Ends when the daemon shuts down, so graceful shutdown is not held open.
    let stream = futures_util::stream::unfold(
        (backlog, receiver, shutdown, filter),
        |(mut backlog, mut receiver, shutdown, filter)| async move {
            if let Some(event) = backlog.pop_front() {
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (backlog, receiver, shutdown, filter),
                ));
            }
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                let event = match next {
                    Ok(numbered) if for_subscriber(&numbered.event, filter.as_deref()) => sse(&numbered),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => lagged(Some(missed)),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok(event), (backlog, receiver, shutdown, filter)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Whether a subscriber following `filter` gets `event`: its conversation's,
/// and the whole car's.
fn for_subscriber(event: &Event, filter: Option<&str>) -> bool {
    event.conversation_id().is_none_or(|c| filter.is_none_or(|f| f == c))
}

fn sse(numbered: &Numbered<Event>) -> SseEvent {
    SseEvent::default()
        .id(numbered.id.to_string())
        .event(numbered.event.name())
        .json_data(&numbered.event)
        .unwrap_or_else(|_| SseEvent::default().event("error"))
}

/// The `lagged` event: `{"missed": N}`, or `{"missed": null}` when the number is
/// unknown (the client's id is from before a restart).
fn lagged(missed: Option<u64>) -> SseEvent {
    let count = missed.map_or_else(|| "null".to_string(), |n| n.to_string());
    SseEvent::default()
        .event("lagged")
        .data(format!("{{\"missed\": {count}}}"))
}

async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let health = tokio::task::spawn_blocking(move || engine.health())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(health).into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.engine.clone();
    // Refreshes the queue gauge from the store.
    let _ = tokio::task::spawn_blocking(move || engine.health()).await;
    (
        // prometheus-client writes OpenMetrics 1.0 text (with `# EOF`).
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics.render(),
    )
        .into_response()
}
