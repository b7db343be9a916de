//! The tenant's event-type catalog (`/v1/event-types`) and what ingest
//! does with events it does not describe (`/v1/catalog`, the mode).
//!
//! A type's `schema` is a JSON Schema (draft 2020-12) for its events'
//! `data`; it must compile (see [`herald_shared::catalog::compile`]) and
//! every example must pass it. A portal session reads the catalog; only a
//! tenant token changes it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herald_shared::catalog::{self, CatalogMode};
use herald_shared::db::DbError;
use herald_shared::db::event_types::{self, EventTypeFields, EventTypeRow};
use herald_shared::models::EventType;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiJson, ApiPath};
use crate::patch::Patch;
use crate::state::AppState;

/// Types in one tenant's catalog, at most.
const MAX_TYPES: i64 = 1000;
/// Examples of one type, at most.
const MAX_EXAMPLES: usize = 10;
/// A description's length in characters, at most.
const MAX_DESCRIPTION: usize = 4096;
/// A group's length in characters, at most.
const MAX_GROUP: usize = 255;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_event_types, create_event_type))
        .routes(routes!(get_event_type, patch_event_type, delete_event_type))
        .routes(routes!(get_catalog, patch_catalog))
}

/// A catalogued event type.
#[derive(Serialize, ToSchema)]
struct EventTypeOut {
    name: String,
    description: String,
    /// JSON Schema (draft 2020-12) for the events' `data`.
    #[schema(value_type = Option<Object>)]
    schema: Option<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    examples: Vec<serde_json::Value>,
    deprecated: bool,
    group: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<EventTypeRow> for EventTypeOut {
    fn from(r: EventTypeRow) -> Self {
        Self {
            name: r.name,
            description: r.description,
            schema: r.schema,
            examples: r.examples,
            deprecated: r.deprecated,
            group: r.group,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct EventTypeList {
    data: Vec<EventTypeOut>,
}

/// A new catalogued type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateEventType {
    /// Dotted (`invoice.paid`) or PascalCase (`InvoicePaid`), as events
    /// name it.
    name: String,
    #[serde(default)]
    description: String,
    #[schema(value_type = Option<Object>)]
    schema: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    examples: Vec<serde_json::Value>,
    #[serde(default)]
    deprecated: bool,
    group: Option<String>,
}

/// A partial update: absent fields stay, `null` removes `schema` or
/// `group`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchEventType {
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schema: Patch<serde_json::Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    examples: Option<Vec<serde_json::Value>>,
    deprecated: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    group: Patch<String>,
}

/// Checks every field; the problems name each one.
fn check(f: &EventTypeFields) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if f.description.chars().count() > MAX_DESCRIPTION {
        problems.push(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if let Some(group) = &f.group
        && (group.is_empty()
            || group.chars().count() > MAX_GROUP
            || group.chars().any(char::is_control))
    {
        problems.push(FieldError::new(
            "group",
            format!("1 to {MAX_GROUP} characters, none of them control characters"),
        ));
    }
    if f.examples.len() > MAX_EXAMPLES {
        problems.push(FieldError::new(
            "examples",
            format!("at most {MAX_EXAMPLES} examples"),
        ));
    }
    for (i, example) in f.examples.iter().enumerate() {
        if let Err(p) = herald_shared::payload::check(
            &example.to_string(),
            herald_shared::payload::Limits::DATA,
        ) {
            problems.push(FieldError::new(
                p.under(&format!("examples[{i}]")),
                p.detail,
            ));
        }
    }
    if let Some(schema) = &f.schema {
        match catalog::compile(schema) {
            Err(e) => problems.push(FieldError::new("schema", e)),
            // Each example must be what it claims to be.
            Ok(compiled) => {
                for (i, example) in f.examples.iter().enumerate().take(MAX_EXAMPLES) {
                    for finding in catalog::check_data(&compiled, example) {
                        let place = finding.field.trim_start_matches("data");
                        problems.push(FieldError::new(
                            format!("examples[{i}]{place}"),
                            format!("does not pass the schema: {}", finding.detail),
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(problems))
    }
}

/// The tenant's catalog, by group then name.
#[utoipa::path(get, path = "/v1/event-types", tag = "events", security(("bearer" = [])),
    responses((status = 200, body = EventTypeList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_event_types(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let client = state.pool.get().await?;
    let data = event_types::list(&client, scope.tenant)
        .await?
        .into_iter()
        .filter(|t| scope.allows_type(&t.name))
        .map(EventTypeOut::from)
        .collect();
    Ok(axum::Json(EventTypeList { data }))
}

/// Adds a type to the catalog.
#[utoipa::path(post, path = "/v1/event-types", tag = "events", request_body = CreateEventType, security(("bearer" = [])),
    responses((status = 201, body = EventTypeOut), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_event_type(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<CreateEventType>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    match EventType::parse(&input.name) {
        Err(e) => return Err(ApiError::invalid("name", e.0)),
        Ok(t) if t.is_operational() => {
            return Err(ApiError::invalid(
                "name",
                "types under webhook. and delivery. are Herald's own",
            ));
        }
        Ok(_) => {}
    }
    let fields = EventTypeFields {
        description: input.description,
        schema: input.schema,
        examples: input.examples,
        deprecated: input.deprecated,
        group: input.group,
    };
    check(&fields)?;
    let client = state.pool.get().await?;
    if event_types::count(&client, tenant).await? >= MAX_TYPES {
        return Err(ApiError::Conflict(format!(
            "the catalog already holds {MAX_TYPES} types, the most a tenant may have"
        )));
    }
    match event_types::create(&client, tenant, &input.name, &fields).await {
        Ok(row) => Ok((StatusCode::CREATED, axum::Json(EventTypeOut::from(row)))),
        Err(DbError::Conflict { .. }) => Err(ApiError::Conflict(format!(
            "the catalog already has {:?}",
            input.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// One catalogued type.
#[utoipa::path(get, path = "/v1/event-types/{name}", tag = "events", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = EventTypeOut), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_event_type(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    if !scope.allows_type(&name) {
        return Err(ApiError::NotFound);
    }
    let client = state.pool.get().await?;
    let row = event_types::get(&client, scope.tenant, &name, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(EventTypeOut::from(row)))
}

/// Changes a catalogued type; the name stays.
#[utoipa::path(patch, path = "/v1/event-types/{name}", tag = "events", params(("name" = String, Path)), request_body = PatchEventType, security(("bearer" = [])),
    responses((status = 200, body = EventTypeOut), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn patch_event_type(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<PatchEventType>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let mut client = state.pool.get().await?;
    // Read and write in one transaction, so that two concurrent edits
    // cannot mix (the row is locked from the read on).
    let tx = client.transaction().await.map_err(DbError::from)?;
    let current = event_types::get(&tx, tenant, &name, true)
        .await?
        .ok_or(ApiError::NotFound)?;
    let fields = EventTypeFields {
        description: input.description.unwrap_or(current.description),
        schema: input.schema.apply(current.schema),
        examples: input.examples.unwrap_or(current.examples),
        deprecated: input.deprecated.unwrap_or(current.deprecated),
        group: input.group.apply(current.group),
    };
    check(&fields)?;
    let row = event_types::update(&tx, tenant, &name, &fields)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(axum::Json(EventTypeOut::from(row)))
}

/// Removes a type from the catalog. Webhooks subscribed to it stay; in
/// `strict` mode its events are refused from then on.
#[utoipa::path(delete, path = "/v1/event-types/{name}", tag = "events", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_event_type(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    if event_types::delete(&client, tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The tenant's catalog mode and size.
#[derive(Serialize, ToSchema)]
struct CatalogOut {
    /// `open` (no check), `warn` (accepted, with warnings), `strict`
    /// (refused).
    #[schema(value_type = String)]
    mode: CatalogMode,
    event_types: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchCatalog {
    #[schema(value_type = String)]
    mode: CatalogMode,
}

/// What ingest does with events the catalog does not describe.
#[utoipa::path(get, path = "/v1/catalog", tag = "events", security(("bearer" = [])),
    responses((status = 200, body = CatalogOut), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn get_catalog(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    let mode = event_types::mode(&client, tenant)
        .await?
        .ok_or(ApiError::NotFound)?;
    let event_types = event_types::count(&client, tenant).await?;
    Ok(axum::Json(CatalogOut { mode, event_types }))
}

/// Sets the catalog mode; every process applies it within 2 seconds.
#[utoipa::path(patch, path = "/v1/catalog", tag = "events", request_body = PatchCatalog, security(("bearer" = [])),
    responses((status = 200, body = CatalogOut), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn patch_catalog(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<PatchCatalog>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    if !event_types::set_mode(&client, tenant, input.mode).await? {
        return Err(ApiError::NotFound);
    }
    let event_types = event_types::count(&client, tenant).await?;
    Ok(axum::Json(CatalogOut {
        mode: input.mode,
        event_types,
    }))
}
