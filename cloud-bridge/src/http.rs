//! `/health` and `/metrics`, on loopback by default.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::Metrics;
use crate::store::Stores;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    stores: Stores,
    provider: Arc<str>,
}

pub fn router(metrics: Metrics, stores: Stores, provider: String) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(AppState {
            metrics,
            stores,
            provider: provider.into(),
        })
}

/// 200 when connected to the broker, subscribed to the cars' topics, and the
/// store answers; 503 otherwise, with what is wrong.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let connected = state.metrics.connected();
    let subscribed = state.metrics.subscribed();
    let store = state.stores.handoffs.queued().map(|q| q.len());
    let healthy = connected && subscribed && store.is_ok();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "broker_connected": connected,
        "broker_subscribed": subscribed,
        "store": match &store { Ok(_) => "ok".to_string(), Err(e) => e.to_string() },
        "handoffs_queued": store.ok(),
        "provider": state.provider.as_ref(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    // The queue lives in the store, shared by every instance: read it now.
    match state.stores.handoffs.queued() {
        Ok(queued) => state.metrics.set_handoffs_queued(queued.len()),
        Err(error) => tracing::warn!(%error, "cannot read the handoff queue for /metrics"),
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
