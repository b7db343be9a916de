//! Sending deliveries again: one now (`retry`), or every failed one of a
//! webhook in a time window (`recover`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_shared::amqp::fairness;
use herald_shared::db::deliveries::{self, RecoverWindow};
use herald_shared::db::{history, webhooks};
use herald_shared::models::EventType;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(serde::Serialize, ToSchema)]
struct Queued {
    id: Uuid,
    queued: bool,
}

#[derive(serde::Serialize, ToSchema)]
struct Recovered {
    recovered: u64,
}

#[derive(serde::Serialize, ToSchema)]
struct RecoverCount {
    count: i64,
    dry_run: bool,
}

/// Deliveries reopened and published per round of a recovery.
const RECOVER_BATCH: i64 = 500;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry_delivery))
        .routes(routes!(recover_webhook))
}

/// Sends one delivery again now, whatever its status; a failed one is
/// reopened, and a resend of a success is a new attempt.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 202, body = Queued), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let tenant = scope.tenant;
    let client = state.pool.get().await?;
    // A delivery outside a portal session's slice is not found.
    let visible = history::get_delivery(&client, tenant, id)
        .await?
        .is_some_and(|d| scope.allows_delivery(d.webhook_id, &d.event_type));
    if !visible {
        return Err(ApiError::NotFound);
    }
    scope.writable()?;
    let Some(was_failed) = deliveries::reopen(&client, tenant, id).await? else {
        return Err(ApiError::NotFound);
    };
    let mut messages = deliveries::messages_for(&client, &[id], true).await?;
    for m in &mut messages {
        m.reopened = was_failed;
    }
    // Someone is waiting for this one.
    state
        .publisher
        .publish_deliveries(&state.topology, &messages, fairness::INTERACTIVE)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Queued { id, queued: true }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverInput {
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    event_type: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Requeues every failed delivery of the webhook created in the window, in
/// bounded batches. Safe to repeat: a second call finds them no longer
/// failed. `dry_run` only counts them.
#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", tag = "deliveries", params(("id" = Uuid, Path)),
    request_body = RecoverInput, security(("bearer" = [])),
    responses((status = 202, body = Recovered, description = "requeued"), (status = 200, body = RecoverCount, description = "dry run"),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn recover_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope_on(id)?;
    scope.manages(Some(id))?;
    let tenant = scope.tenant;
    if let Some(until) = input.until
        && until <= input.since
    {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    if let Some(t) = &input.event_type {
        EventType::parse(t).map_err(|e| ApiError::invalid("event_type", e.0))?;
    }
    let client = state.pool.get().await?;
    if webhooks::get(&client, tenant, id, false).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let mut window = RecoverWindow {
        webhook_id: id,
        since: input.since,
        until: input.until,
        event_type: input.event_type.as_deref(),
    };
    if input.dry_run {
        let count = deliveries::count_failed(&client, &window).await?;
        return Ok((
            StatusCode::OK,
            axum::Json(RecoverCount {
                count,
                dry_run: true,
            }),
        )
            .into_response());
    }
    let mut recovered = 0u64;
    loop {
        let (ids, last) = deliveries::reopen_failed_batch(&client, &window, RECOVER_BATCH).await?;
        let Some(last) = last else {
            break;
        };
        window.since = last;
        // Reopened rows whose messages do not go out (the broker fails
        // here) are `retrying` and due: the dispatcher's sweeper sends them.
        let mut messages = deliveries::messages_for(&client, &ids, false).await?;
        for m in &mut messages {
            m.reopened = true;
        }
        // A recovery may requeue thousands: behind everyone's live traffic.
        state
            .publisher
            .publish_deliveries(&state.topology, &messages, fairness::BULK)
            .await?;
        recovered += ids.len() as u64;
    }
    Ok((StatusCode::ACCEPTED, axum::Json(Recovered { recovered })).into_response())
}
