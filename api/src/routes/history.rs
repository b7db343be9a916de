//! Reading back events and deliveries: lists newest first with stable
//! cursors (`{data, next_cursor}`), and single items with their deliveries
//! or attempts.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_shared::db::history::{self, Cursor, Filter};
use herald_shared::models::{DeliveryStatus, EventId, EventType};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use herald_shared::db::history::{AttemptRow, DeliveryRow, EventRow};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(serde::Serialize, ToSchema)]
struct EventList {
    data: Vec<EventRow>,
    next_cursor: Option<String>,
}

/// An event with its deliveries.
#[derive(serde::Serialize, ToSchema)]
struct EventDetail {
    #[serde(flatten)]
    event: EventRow,
    deliveries: Vec<DeliveryRow>,
}

#[derive(serde::Serialize, ToSchema)]
struct DeliveryList {
    data: Vec<DeliveryRow>,
    next_cursor: Option<String>,
}

/// A delivery with every attempt.
#[derive(serde::Serialize, ToSchema)]
struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryRow,
    attempts: Vec<AttemptRow>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 250;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    event_type: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// Also accepted as `webhook`.
    #[serde(alias = "webhook")]
    webhook_id: Option<Uuid>,
    status: Option<String>,
    event_type: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Checks the parameters every list shares.
fn common(
    event_type: Option<&str>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> ApiResult<(i64, Option<Cursor>)> {
    if let Some(t) = event_type {
        EventType::parse(t).map_err(|e| ApiError::invalid("event_type", e.0))?;
    }
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let cursor =
        match cursor {
            None => None,
            Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
                ApiError::invalid("cursor", "is not a cursor from a previous page")
            })?),
        };
    Ok((limit, cursor))
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery), security(("bearer" = [])),
    responses((status = 200, body = EventList), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let (limit, cursor) = common(
        q.event_type.as_deref(),
        q.since,
        q.until,
        q.limit,
        q.cursor.as_deref(),
    )?;
    let types = scope.types();
    let filter = Filter {
        event_type: q.event_type.as_deref(),
        since: q.since,
        until: q.until,
        webhook_ids: scope.webhooks(),
        types: types
            .as_ref()
            .map(|t| (t.exact.as_slice(), t.prefixes.as_slice())),
        ..Filter::default()
    };
    let client = state.pool.get().await?;
    let (data, next) =
        history::list_events(&client, scope.tenant, &filter, cursor.as_ref(), limit).await?;
    Ok(axum::Json(EventList {
        data,
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// One event with its deliveries. An event just accepted may take a moment
/// to appear: the dispatcher stores it.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = EventDetail), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let tenant = scope.tenant;
    let id = EventId::parse(&id).map_err(|_| ApiError::NotFound)?;
    let client = state.pool.get().await?;
    let event = history::get_event(&client, tenant, id.as_str())
        .await?
        .filter(|e| scope.allows_type(&e.event_type))
        .ok_or(ApiError::NotFound)?;
    let deliveries: Vec<_> =
        history::deliveries_of_event(&client, tenant, id.as_str(), event.received_at)
            .await?
            .into_iter()
            .filter(|d| scope.allows_webhook(d.webhook_id))
            .collect();
    // A session narrowed to some webhooks sees the events sent to them.
    if scope.webhooks().is_some() && deliveries.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(axum::Json(EventDetail { event, deliveries }))
}

#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries", params(DeliveryQuery), security(("bearer" = [])),
    responses((status = 200, body = DeliveryList), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let (limit, cursor) = common(
        q.event_type.as_deref(),
        q.since,
        q.until,
        q.limit,
        q.cursor.as_deref(),
    )?;
    if let Some(s) = &q.status
        && DeliveryStatus::parse(s).is_none()
    {
        return Err(ApiError::invalid(
            "status",
            "must be pending, retrying, success or failed",
        ));
    }
    let types = scope.types();
    let filter = Filter {
        event_type: q.event_type.as_deref(),
        since: q.since,
        until: q.until,
        webhook_id: q.webhook_id,
        status: q.status.as_deref(),
        webhook_ids: scope.webhooks(),
        types: types
            .as_ref()
            .map(|t| (t.exact.as_slice(), t.prefixes.as_slice())),
    };
    let client = state.pool.get().await?;
    let (data, next) =
        history::list_deliveries(&client, scope.tenant, &filter, cursor.as_ref(), limit).await?;
    Ok(axum::Json(DeliveryList {
        data,
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = DeliveryDetail), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let client = state.pool.get().await?;
    let delivery = history::get_delivery(&client, scope.tenant, id)
        .await?
        .filter(|d| scope.allows_delivery(d.webhook_id, &d.event_type))
        .ok_or(ApiError::NotFound)?;
    let attempts = history::attempts(&client, id).await?;
    Ok(axum::Json(DeliveryDetail { delivery, attempts }))
}
