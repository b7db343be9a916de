//! Sending stored events again: one event (`POST /v1/events/{id}/resend`),
//! to every webhook that matches it now (webhooks created after it
//! included) or to the ones named; or a window of events to one webhook
//! (`POST /v1/webhooks/{id}/replay`), run by the dispatchers at a bounded
//! rate (`dispatcher/src/replayer.rs`), its progress at
//! `GET /v1/replays/{id}`. Each is a new delivery of the event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_shared::amqp::fairness;
use herald_shared::db::replays::{self, Replay, Taker, Window};
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
use crate::extract::{ApiJson, ApiPath, parse_json};
use crate::state::AppState;

/// Webhooks one resend may name, at most.
const MAX_NAMED: usize = 100;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(resend_event))
        .routes(routes!(replay_webhook))
        .routes(routes!(get_replay))
        .routes(routes!(cancel_replay))
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
    let rows: Vec<deliveries::Redelivery<'_>> = targets
        .iter()
        .map(|w| deliveries::Redelivery {
            event_id: &event.id,
            event_received_at: event.received_at,
            event_type: &event.event_type,
            webhook_id: *w,
        })
        .collect();
    let ids = deliveries::insert_redeliveries(&client, tenant, &rows).await?;
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

/// Replays one tenant may have running at once.
const MAX_RUNNING_REPLAYS: i64 = 5;

/// Events a dry run looks at, at most.
const DRY_RUN_LIMIT: usize = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayInput {
    since: DateTime<Utc>,
    /// Default: now.
    until: Option<DateTime<Utc>>,
    /// Narrows the webhook's own types (patterns as webhooks take them).
    event_types: Option<Vec<String>>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReplayCount {
    dry_run: bool,
    /// Events in the window.
    total: i64,
    /// Of those looked at, the ones a replay would deliver.
    count: usize,
    /// False when the window held more than 100,000 events: `count` is
    /// for the first 100,000.
    complete: bool,
}

/// Delivers again every stored event in the window that the webhook
/// matches now (its types, narrowed by `event_types`, and its filter) and
/// has no successful or pending delivery of. Runs in the background at up
/// to 500 events a second, behind live traffic; answers the replay to
/// follow at `GET /v1/replays/{id}`. `dry_run` counts instead.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "deliveries", params(("id" = Uuid, Path)),
    request_body = ReplayInput, security(("bearer" = [])),
    responses((status = 202, body = Replay, description = "started"), (status = 200, body = ReplayCount, description = "dry run"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the tenant has 5 replays running"), (status = 422, body = Problem)))]
async fn replay_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<ReplayInput>,
) -> ApiResult<axum::response::Response> {
    let tenant = caller.tenant()?;
    let until = input.until.unwrap_or_else(Utc::now);
    if until <= input.since {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    if let Some(types) = &input.event_types {
        let bad: Vec<FieldError> = types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                EventPattern::parse(t)
                    .err()
                    .map(|e| FieldError::new(format!("event_types[{i}]"), e.0))
            })
            .collect();
        if !bad.is_empty() || types.is_empty() || types.len() > 100 {
            return Err(if bad.is_empty() {
                ApiError::invalid("event_types", "1 to 100 patterns")
            } else {
                ApiError::Invalid(bad)
            });
        }
    }
    let client = state.pool.get().await?;
    let webhook = webhooks::get(&client, tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    let window = Window {
        tenant_id: tenant,
        webhook_id: id,
        since: input.since,
        until,
        event_types: input.event_types,
    };
    let total = replays::count_window(&client, tenant, window.since, window.until).await?;
    if input.dry_run {
        let taker = Taker::new(
            &webhook.event_types,
            window.event_types.as_deref(),
            webhook.filter.as_deref(),
        );
        let (mut count, mut scanned, mut cursor, mut complete) = (0, 0, None, true);
        while let Some(taker) = &taker {
            let batch = replays::next_batch(&client, &window, cursor.as_ref(), taker, 1000).await?;
            count += batch.to_send.len();
            scanned += batch.scanned;
            cursor = batch.cursor;
            if batch.finished {
                break;
            }
            if scanned >= DRY_RUN_LIMIT {
                complete = false;
                break;
            }
        }
        return Ok((
            StatusCode::OK,
            axum::Json(ReplayCount {
                dry_run: true,
                total,
                count,
                complete,
            }),
        )
            .into_response());
    }
    // Each running replay costs the database a batch a second: a tenant
    // gets a few at a time, not as many as it can start.
    if replays::running(&client, tenant).await? >= MAX_RUNNING_REPLAYS {
        return Err(ApiError::Conflict(format!(
            "{MAX_RUNNING_REPLAYS} replays of this tenant are running; wait for one to finish or cancel one"
        )));
    }
    let replay = replays::create(&client, &window, total).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(replay)).into_response())
}

/// A replay's progress: `state` (`running`, `done`, `cancelled`),
/// `total` events in the window, `processed` so far, `queued` deliveries.
#[utoipa::path(get, path = "/v1/replays/{id}", tag = "deliveries", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Replay), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    let replay = replays::get(&client, tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(replay))
}

/// Stops a running replay: the deliveries it made stay; no more are made.
/// A finished replay is answered as it is.
#[utoipa::path(post, path = "/v1/replays/{id}/cancel", tag = "deliveries", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Replay), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn cancel_replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    let replay = replays::cancel(&client, tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(replay))
}
