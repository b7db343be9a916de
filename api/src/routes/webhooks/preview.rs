//! `POST /v1/webhooks/preview`: what a body format (or a custom template)
//! makes of a sample event, before a webhook is saved with it, rendered by
//! the same code as every delivery.

use axum::response::IntoResponse;
use chrono::Utc;
use herald_delivery::formats::{CustomBody, EventView, Format, Renderer};
use herald_shared::models::{EventType, Severity};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{Problems, custom_body};
use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

/// A body format and a sample event to render it on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewInput {
    /// As for a webhook: `json`, `splunk_hec`, `datadog`, `elastic` or
    /// `custom` with `template`.
    format: Format,
    template: Option<String>,
    content_type: Option<String>,
    /// The sample event's type (default `order.created`).
    event_type: Option<String>,
    /// The sample event's data (default a small object).
    #[schema(value_type = Option<Object>)]
    data: Option<Box<RawValue>>,
}

/// The request body a delivery of the sample event would carry.
#[derive(Serialize, ToSchema)]
pub(super) struct Preview {
    content_type: String,
    /// The body as text (lossy where it is not UTF-8).
    body: String,
}

/// Renders a format or template on a sample event, as a delivery would.
/// Nothing is stored or sent.
#[utoipa::path(post, path = "/v1/webhooks/preview", tag = "webhooks", request_body = PreviewInput,
    security(("bearer" = [])),
    responses((status = 200, body = Preview), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn preview(
    caller: Caller,
    ApiJson(input): ApiJson<PreviewInput>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let mut p = Problems::default();
    let custom: Option<CustomBody> = custom_body(
        input.format,
        input.template,
        input.content_type,
        None,
        &mut p,
    );
    let event_type = input
        .event_type
        .unwrap_or_else(|| "order.created".to_owned());
    if let Err(e) = EventType::parse(&event_type) {
        p.add("event_type", e.0);
    }
    p.finish()?;
    let data = match input.data {
        Some(d) => d,
        None => serde_json::value::to_raw_value(
            &serde_json::json!({"order_id": "ord_123", "amount": 4200}),
        )
        .map_err(|e| ApiError::Internal(e.into()))?,
    };
    let renderer = Renderer::new(input.format, custom.as_ref())
        .map_err(|e| ApiError::invalid("template", e.to_string()))?;
    let event = EventView {
        id: "evt_preview",
        event_type: &event_type,
        timestamp: Utc::now(),
        tenant_id: scope.tenant,
        webhook_id: Uuid::nil(),
        severity: Some(Severity::Info),
        source: Some("preview"),
        data: &data,
        host: "herald",
    };
    let body = renderer
        .render(&event)
        .map_err(|e| ApiError::invalid("template", e.to_string()))?;
    Ok(axum::Json(Preview {
        content_type: renderer.content_type().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}
