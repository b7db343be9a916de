//! Sending a stored event again: `POST /v1/events/{id}/resend`, to every
//! webhook that matches it now (webhooks created after it included) or to
//! the ones named. Each resend is a new delivery of the event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herald_shared::amqp::fairness;
use herald_shared::db::{deliveries, history, webhooks};
use herald_shared::filter::{Filter, wrap};
use herald_shared::models::{EventPattern, EventType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiPath, parse_json};
use crate::state::AppState;

/// Webhooks one resend may name, at most.
const MAX_NAMED: usize = 100;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resend_event))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResendInput {
    /// Only these webhooks (active ones of the tenant), whether or not they
    /// subscribe to the event; absent: every webhook that matches it now.
    webhook_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Resent {
    event_id: String,
    /// The new deliveries, one per webhook.
    deliveries: Vec<ResentDelivery>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ResentDelivery {
    id: Uuid,
    webhook_id: Uuid,
}

/// The tenant's active webhooks that match the event now: its type against
/// their patterns, its data against their filters.
async fn matching_now(
    client: &impl deadpool_postgres::GenericClient,
    tenant: Uuid,
    event: &history::EventRow,
) -> ApiResult<Vec<Uuid>> {
    let Ok(event_type) = EventType::parse(&event.event_type) else {
        return Ok(Vec::new());
    };
    let data = serde_json::from_str(event.data.get()).map(wrap).ok();
    Ok(webhooks::active_subscriptions(client, tenant)
        .await?
        .into_iter()
        .filter(|s| {
            s.event_types
                .iter()
                .filter_map(|p| EventPattern::parse(p).ok())
                .any(|p| p.matches(&event_type))
        })
        .filter(|s| match &s.filter {
            None => true,
            Some(f) => Filter::compile(f)
                .ok()
                .zip(data.as_ref())
                .is_some_and(|(f, d)| f.matches(d)),
        })
        .map(|s| s.webhook_id)
        .collect())
}

/// Delivers a stored event again: to every webhook that matches it now, or
/// to the webhooks named. Each is a new delivery, answered with its id;
/// the event's earlier deliveries stay as they are.
#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "events", params(("id" = String, Path)),
    request_body(content = Option<ResendInput>, description = "optional: `{webhook_ids}`"), security(("bearer" = [])),
    responses((status = 202, body = Resent), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn resend_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let input: ResendInput = if body.iter().all(u8::is_ascii_whitespace) {
        ResendInput::default()
    } else {
        parse_json(&body)?
    };
    let client = state.pool.get().await?;
    let event = history::get_event(&client, tenant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if herald_shared::models::is_operational(&event.event_type) {
        return Err(ApiError::invalid(
            "id",
            "Herald's own events (webhook.*, delivery.*) are not sent again",
        ));
    }
    let targets = match input.webhook_ids {
        None => matching_now(&client, tenant, &event).await?,
        Some(named) => {
            if named.is_empty() || named.len() > MAX_NAMED {
                return Err(ApiError::invalid(
                    "webhook_ids",
                    format!("1 to {MAX_NAMED} webhook ids"),
                ));
            }
            let active: Vec<Uuid> = webhooks::active_subscriptions(&client, tenant)
                .await?
                .into_iter()
                .map(|s| s.webhook_id)
                .collect();
            let unknown: Vec<FieldError> = named
                .iter()
                .enumerate()
                .filter(|(_, w)| !active.contains(w))
                .map(|(i, _)| {
                    FieldError::new(
                        format!("webhook_ids[{i}]"),
                        "is not an active webhook of this tenant",
                    )
                })
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::Invalid(unknown));
            }
            let mut named = named;
            named.sort_unstable();
            named.dedup();
            named
        }
    };
    let ids = deliveries::insert_resends(
        &client,
        tenant,
        &event.id,
        event.received_at,
        &event.event_type,
        &targets,
    )
    .await?;
    // Rows whose messages do not go out (the broker fails here) are
    // `retrying` and due: the dispatcher's sweeper sends them.
    let messages = deliveries::messages_for(&client, &ids, true).await?;
    state
        .publisher
        .publish_deliveries(&state.topology, &messages, fairness::INTERACTIVE)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Resent {
            event_id: event.id,
            deliveries: ids
                .into_iter()
                .zip(targets)
                .map(|(id, webhook_id)| ResentDelivery { id, webhook_id })
                .collect(),
        }),
    ))
}
