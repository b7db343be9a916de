//! The test call: a `webhook.test` event delivered now, and the endpoint's
//! answer shown.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::Utc;
use herald_delivery::direct::deliver_now;
use herald_delivery::sender::WebhookConfig;
use herald_shared::db::deliveries::NewEvent;
use herald_shared::db::webhooks;
use herald_shared::models::{DeliveryStatus, Severity};
use uuid::Uuid;

use super::output::TestResult;
use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::state::AppState;

/// Delivers a `webhook.test` event now, through the same rendering, signing
/// and HTTP code as every delivery, and answers how it went. The event and
/// its delivery are recorded like any other (not retried).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = TestResult), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem, description = "the tenant has its most test calls in flight")))]
pub(super) async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    // A test call sends a request: not for read-only sessions.
    let scope = caller.scope_on(id)?;
    scope.writable()?;
    let tenant = scope.tenant;
    // The call waits on the tenant's endpoint: a few at a time per tenant.
    let _slot = state
        .test_slots
        .try_take(tenant)
        .ok_or(ApiError::RateLimited(1))?;
    let webhook = webhooks::get(&state.pool.get().await?, tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    let config =
        WebhookConfig::open(webhook, &state.sealer).map_err(|e| ApiError::Internal(e.into()))?;
    let now = Utc::now();
    let event_id = format!("test_{}", Uuid::now_v7().simple());
    let data = serde_json::value::to_raw_value(&serde_json::json!({
        "message": "A test event from Herald",
        "webhook_id": id,
    }))
    .map_err(|e| ApiError::Internal(e.into()))?;
    let event = NewEvent {
        tenant_id: tenant,
        id: &event_id,
        event_type: "webhook.test",
        data: &data,
        severity: Some(Severity::Info),
        source: Some("herald"),
        occurred_at: now,
        received_at: now,
    };
    let done = deliver_now(&state.pool, &state.sender, &config, &event).await?;
    let attempt = done.attempt;
    Ok(axum::Json(TestResult {
        success: done.status == DeliveryStatus::Success,
        status_code: attempt.status_code,
        response: attempt.body,
        error: attempt.error,
        duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
        event_id,
        delivery_id: done.delivery_id.get(),
    }))
}
