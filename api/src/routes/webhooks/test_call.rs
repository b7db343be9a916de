//! The test call: a `webhook.test` event delivered now, and the endpoint's
//! answer shown.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::Utc;
use herald_delivery::direct::deliver_now;
use herald_delivery::sender::WebhookConfig;
use herald_shared::catalog::CatalogMode;
use herald_shared::db::deliveries::NewEvent;
use herald_shared::db::{event_types, webhooks};
use herald_shared::models::{DeliveryStatus, EventType, Severity};
use herald_shared::payload::{self, Limits};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::output::TestResult;
use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiPath;
use crate::state::AppState;

/// What to send instead of the `webhook.test` event: a type (with its
/// catalog example for data, unless `data` is given).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TestInput {
    event_type: Option<String>,
    /// Any JSON; defaults to the catalog's first example for the type.
    #[schema(value_type = Option<Object>)]
    data: Option<Box<RawValue>>,
}

/// The test event's type and data: `webhook.test` with a message when the
/// body names no type; else the type given, with the data given or the
/// catalog's first example for it.
async fn test_event(
    state: &AppState,
    tenant: Uuid,
    webhook: Uuid,
    body: &[u8],
) -> ApiResult<(String, Box<RawValue>)> {
    let input: TestInput = if body.iter().all(u8::is_ascii_whitespace) {
        TestInput::default()
    } else {
        crate::extract::parse_json(body)?
    };
    let Some(event_type) = input.event_type else {
        if input.data.is_some() {
            return Err(ApiError::invalid(
                "event_type",
                "is required when data is given",
            ));
        }
        let data = serde_json::value::to_raw_value(&serde_json::json!({
            "message": "A test event from Herald",
            "webhook_id": webhook,
        }))
        .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(("webhook.test".to_owned(), data));
    };
    match EventType::parse(&event_type) {
        Err(e) => return Err(ApiError::invalid("event_type", e.0)),
        Ok(t) if t.is_operational() => {
            return Err(ApiError::invalid(
                "event_type",
                "types under webhook. and delivery. are Herald's own; send no event_type for webhook.test",
            ));
        }
        Ok(_) => {}
    }
    let data = match input.data {
        Some(data) => data,
        None => {
            let client = state.pool.get().await?;
            let example = event_types::get(&client, tenant, &event_type, false)
                .await?
                .and_then(|t| t.examples.into_iter().next())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "data",
                        format!("is required: the catalog has no example for {event_type:?}"),
                    )
                })?;
            serde_json::value::to_raw_value(&example).map_err(|e| ApiError::Internal(e.into()))?
        }
    };
    if data.get().len() > state.settings.api.max_event_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "data is larger than {} bytes",
            state.settings.api.max_event_bytes
        )));
    }
    if let Err(p) = payload::check(data.get(), Limits::DATA) {
        return Err(ApiError::invalid(p.under("data"), p.detail));
    }
    // What ingest would refuse, the test call refuses too.
    let catalog = state.catalogs.get(tenant).await?;
    if catalog.mode == CatalogMode::Strict {
        let findings = catalog.check(&event_type, &data);
        if !findings.is_empty() {
            return Err(ApiError::Invalid(
                findings
                    .into_iter()
                    .map(|f| FieldError::new(f.field, f.detail))
                    .collect(),
            ));
        }
    }
    Ok((event_type, data))
}

/// Delivers an event now — `webhook.test`, or the type the body names with
/// its data or the catalog's example — through the same rendering, signing
/// and HTTP code as every delivery, and answers how it went. The event and
/// its delivery are recorded like any other (not retried).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = Uuid, Path)),
    request_body(content = Option<TestInput>, description = "optional: `{event_type, data?}`"), security(("bearer" = [])),
    responses((status = 200, body = TestResult), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "the tenant has its most test calls in flight")))]
pub(super) async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: axum::body::Bytes,
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
    let (event_type, data) = test_event(&state, tenant, id, &body).await?;
    let config =
        WebhookConfig::open(webhook, &state.sealer).map_err(|e| ApiError::Internal(e.into()))?;
    let now = Utc::now();
    let event_id = format!("test_{}", Uuid::now_v7().simple());
    let event = NewEvent {
        tenant_id: tenant,
        id: &event_id,
        event_type: &event_type,
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
