//! The `/v1` routes, one module per resource, plus health and metrics.

mod deliveries;
mod events;
mod history;
mod tenants;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use herald_shared::health::{database_ready, metrics_response};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let max_event = state.settings.api.max_event_bytes;
    Router::new()
        .merge(tenants::router())
        .merge(deliveries::router())
        .merge(history::router())
        .merge(webhooks::router())
        .merge(events::router(max_event))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(s): State<AppState>| async move { metrics_response(&s.metrics) }))
        // Bodies of every other route are small; event routes set their own.
        .layer(DefaultBodyLimit::max(max_event.max(64 * 1024)))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let db = database_ready(&s.pool).await;
    let broker = tokio::time::timeout(Duration::from_secs(2), s.publisher.channel())
        .await
        .is_ok_and(|r| r.is_ok());
    let status = if db && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "database": db, "broker": broker })),
    )
}
