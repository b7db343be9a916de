//! Event ingest. An event is answered 202 only once the broker has
//! confirmed it is stored; the dispatcher takes it from there. A repeated
//! id (body `id` or `Idempotency-Key`) is answered 202 with the same id,
//! and the first payload stands (the dispatcher deduplicates).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Utc};
use futures_util::future::try_join_all;
use herald_shared::amqp::{VIA_HEADER, json_properties};
use herald_shared::catalog::CatalogMode;
use herald_shared::models::{
    EventId, EventMessage, EventType, OCCURRED_YEARS, Severity, check_source,
};
use herald_shared::payload::{self, Limits};
use lapin::types::{AMQPValue, FieldTable};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiJson;
use crate::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(serde::Serialize, ToSchema)]
struct Accepted {
    id: String,
    /// In the tenant's catalog's `warn` mode: what the catalog says is
    /// wrong with the event (it was accepted all the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<FieldError>,
}

#[derive(serde::Serialize, ToSchema)]
struct AcceptedBatch {
    ids: Vec<String>,
    /// As for one event, each field named by the event's place
    /// (`events[3].data/amount`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<FieldError>,
}

/// Checks the events against the tenant's catalog: in `strict` mode what
/// it finds is refused (422, the fields named), in `warn` mode it is
/// answered as warnings; `open` checks nothing. `prefix` names each event's
/// place for its fields.
async fn check_catalog(
    state: &AppState,
    tenant: Uuid,
    messages: &[EventMessage],
    prefix: impl Fn(usize) -> String,
) -> ApiResult<Vec<FieldError>> {
    let catalog = state.catalogs.get(tenant).await?;
    if catalog.mode == CatalogMode::Open {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let findings = catalog.check(&m.event_type, &m.data);
        herald_shared::catalog::count(&state.metrics, catalog.mode, &findings);
        found.extend(
            findings
                .into_iter()
                .map(|f| FieldError::new(format!("{}{}", prefix(i), f.field), f.detail)),
        );
    }
    if catalog.mode == CatalogMode::Strict && !found.is_empty() {
        return Err(ApiError::Invalid(found));
    }
    Ok(found)
}

/// Events in one batch, at most.
const MAX_BATCH: usize = 1000;
/// A batch body may be this many times one event's limit.
const BATCH_BODY_FACTOR: usize = 16;

pub(super) fn router(max_event_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_event))
        .layer(DefaultBodyLimit::max(max_event_bytes))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(create_events))
                .layer(DefaultBodyLimit::max(
                    max_event_bytes.saturating_mul(BATCH_BODY_FACTOR),
                )),
        )
}

/// An event as posted: the AMQP message's fields less `tenant_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EventInput {
    event_type: String,
    /// Any JSON.
    #[schema(value_type = Object)]
    data: Box<RawValue>,
    id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    severity: Option<Severity>,
    source: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchInput {
    events: Vec<EventInput>,
}

/// Checks one event and turns it into the message the dispatcher reads.
/// `prefix` names the event's place in a batch (`events[3].`) for errors.
fn to_message(
    tenant_id: Uuid,
    input: EventInput,
    key: Option<&str>,
    prefix: &str,
    max_bytes: usize,
    problems: &mut Vec<FieldError>,
) -> Result<(EventMessage, String), ApiError> {
    match EventType::parse(&input.event_type) {
        Err(e) => problems.push(FieldError::new(format!("{prefix}event_type"), e.0)),
        Ok(t) if t.is_operational() => problems.push(FieldError::new(
            format!("{prefix}event_type"),
            "types under webhook. and delivery. are reserved for Herald's own events",
        )),
        Ok(_) => {}
    }
    let id = match (input.id.as_deref(), key) {
        (Some(id), Some(key)) if id != key => {
            problems.push(FieldError::new(
                format!("{prefix}id"),
                "differs from the Idempotency-Key header; send one or make them equal",
            ));
            None
        }
        (Some(id), _) | (None, Some(id)) => match EventId::parse(id) {
            Ok(id) => Some(id),
            Err(e) => {
                let field = if input.id.is_some() {
                    "id"
                } else {
                    "Idempotency-Key"
                };
                problems.push(FieldError::new(format!("{prefix}{field}"), e.0));
                None
            }
        },
        (None, None) => Some(EventId::generate()),
    };
    if let Some(source) = &input.source
        && let Err(e) = check_source(source)
    {
        problems.push(FieldError::new(format!("{prefix}source"), e.0));
    }
    if let Some(at) = input.occurred_at
        && !OCCURRED_YEARS.contains(&at.year())
    {
        problems.push(FieldError::new(
            format!("{prefix}occurred_at"),
            "must be between the years 1 and 9999",
        ));
    }
    if input.data.get().len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "{prefix}data is larger than {max_bytes} bytes"
        )));
    }
    // Anything Postgres could not store is refused here, not accepted and
    // then parked.
    if let Err(p) = payload::check(input.data.get(), Limits::DATA) {
        problems.push(FieldError::new(p.under(&format!("{prefix}data")), p.detail));
    }
    let id = id.map(|i| i.as_str().to_owned()).unwrap_or_default();
    Ok((
        EventMessage {
            tenant_id,
            event_type: input.event_type,
            data: input.data,
            id: Some(id.clone()),
            occurred_at: input.occurred_at,
            severity: input.severity,
            source: input.source,
        },
        id,
    ))
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::invalid("Idempotency-Key", "may contain only A-Z a-z 0-9 _ . : -")
        }),
    }
}

/// Publishes the messages (pipelined on one channel) and waits for every
/// confirm.
async fn publish(state: &AppState, messages: &[EventMessage]) -> ApiResult<()> {
    let exchange = state.topology.events_exchange();
    let mut via_http = FieldTable::default();
    via_http.insert(VIA_HEADER.into(), AMQPValue::LongString("http".into()));
    let bodies = messages
        .iter()
        .map(|m| serde_json::to_vec(m).map_err(|e| ApiError::Internal(e.into())))
        .collect::<ApiResult<Vec<_>>>()?;
    let now = std::time::Instant::now();
    try_join_all(messages.iter().zip(&bodies).map(|(m, body)| {
        // Within the tenant's share: ahead of other tenants' floods.
        let priority = state.shaper.priority(m.tenant_id, 1, now);
        let props = json_properties()
            .with_priority(priority)
            .with_message_id(m.id.clone().unwrap_or_default().into())
            .with_headers(via_http.clone());
        state
            .publisher
            .publish(&exchange, &m.event_type, body, props)
    }))
    .await?;
    state
        .metrics
        .events_received
        .with_label_values(&["http"])
        .inc_by(messages.len() as u64);
    Ok(())
}

/// One event; answered once the broker has confirmed it. The body `id` or
/// an `Idempotency-Key` header deduplicates.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "the event id, if the body has none")), security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn create_event(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<EventInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let key = idempotency_key(&headers)?;
    let mut problems = Vec::new();
    let (message, id) = to_message(
        tenant,
        input,
        key,
        "",
        state.settings.api.max_event_bytes,
        &mut problems,
    )?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let messages = std::slice::from_ref(&message);
    let warnings = check_catalog(&state, tenant, messages, |_| String::new()).await?;
    publish(&state, messages).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted { id, warnings })))
}

/// Up to 1,000 events, all valid or none published; ids in order.
#[utoipa::path(post, path = "/v1/events/batch", tag = "events", request_body = BatchInput, security(("bearer" = [])),
    responses((status = 202, body = AcceptedBatch), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn create_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(batch): ApiJson<BatchInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    if batch.events.is_empty() {
        return Err(ApiError::invalid("events", "must hold at least one event"));
    }
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!("at most {MAX_BATCH} events per batch"),
        ));
    }
    let mut problems = Vec::new();
    let mut messages = Vec::with_capacity(batch.events.len());
    let mut ids = Vec::with_capacity(batch.events.len());
    for (i, input) in batch.events.into_iter().enumerate() {
        let (m, id) = to_message(
            tenant,
            input,
            None,
            &format!("events[{i}]."),
            state.settings.api.max_event_bytes,
            &mut problems,
        )?;
        messages.push(m);
        ids.push(id);
    }
    // All or none: nothing is published while any event is invalid.
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let warnings = check_catalog(&state, tenant, &messages, |i| format!("events[{i}].")).await?;
    publish(&state, &messages).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(AcceptedBatch { ids, warnings }),
    ))
}
