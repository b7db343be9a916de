//! Webhooks: create, list (paged), read, replace, partial update, delete; their
//! secrets and keys ([`keys`]) and the test call ([`test_call`]).
//!
//! Input accepts the seeds' alternative names (`events`, `enabled`,
//! `max_retries`); output always uses the canonical ones ([`input`],
//! [`output`]). The secret is answered only by create.

mod input;
mod keys;
mod output;
mod preview;
mod stats;
mod test_call;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herald_shared::catalog::CatalogMode;
use herald_shared::db::event_types;
use herald_shared::db::webhooks::{self, Webhook};
use herald_shared::db::{DbError, DbResult};
use herald_shared::models::{EventPattern, EventType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use self::input::{Problems, WebhookInput, merge};
use self::output::WebhookOut;
use crate::announce;
use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use herald_shared::operational;

/// A page of webhooks.
#[derive(Serialize, ToSchema)]
struct WebhookPage {
    data: Vec<WebhookOut>,
    page: i64,
    per_page: i64,
    total: i64,
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(
            get_webhook,
            put_webhook,
            patch_webhook,
            delete_webhook
        ))
        .routes(routes!(keys::rotate_secret))
        .routes(routes!(keys::rotate_signing_key))
        .routes(routes!(test_call::test_webhook))
        .routes(routes!(stats::webhook_stats))
        .routes(routes!(preview::preview))
}

/// The tenant, for a change to webhook `id` this caller may make (a
/// webhook outside a portal session's slice is not found).
fn managed(caller: Caller, id: Uuid) -> ApiResult<Uuid> {
    let scope = caller.scope_on(id)?;
    scope.manages(Some(id))?;
    Ok(scope.tenant)
}

/// Names tried for a webhook named after its URL's host.
const MAX_NAME_TRIES: u32 = 20;

fn conflict(e: DbError) -> ApiError {
    match e {
        DbError::Conflict { .. } => {
            ApiError::Conflict("a webhook with this name already exists".to_owned())
        }
        other => other.into(),
    }
}

/// A webhook's `event_types` against the tenant's event-type catalog: each
/// pattern that matches no catalogued type is a warning, or in `strict`
/// mode a 422 naming it. Nothing while the catalog is empty.
async fn check_subscriptions(
    client: &impl deadpool_postgres::GenericClient,
    tenant: Uuid,
    patterns: &[String],
) -> ApiResult<Vec<FieldError>> {
    let names = event_types::names(client, tenant).await?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let types: Vec<EventType> = names
        .iter()
        .filter_map(|n| EventType::parse(n).ok())
        .collect();
    let found: Vec<FieldError> = patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            EventPattern::parse(p).is_ok_and(|pattern| !types.iter().any(|t| pattern.matches(t)))
        })
        .map(|(i, p)| {
            FieldError::new(
                format!("event_types[{i}]"),
                format!("{p:?} matches no type in the tenant's event-type catalog"),
            )
        })
        .collect();
    let strict = event_types::mode(client, tenant).await? == Some(CatalogMode::Strict);
    if strict && !found.is_empty() {
        return Err(ApiError::Invalid(found));
    }
    Ok(found)
}

/// Creates a webhook; the answer holds its secret, shown only here.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookInput, security(("bearer" = [])),
    responses((status = 201, body = WebhookOut), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    scope.manages(None)?;
    let tenant = scope.tenant;
    let client = state.pool.get().await?;
    // Without a name: the URL's host, numbered while the tenant has it.
    for attempt in 1..=MAX_NAME_TRIES {
        let named = input.named_after_host(attempt);
        let derived = named.is_some();
        let (fields, secret) = merge(&state, named.unwrap_or_else(|| input.clone()), None)?;
        let warnings = check_subscriptions(&client, tenant, &fields.event_types).await?;
        match webhooks::create(&client, tenant, &fields).await {
            Err(DbError::Conflict { .. }) if derived && attempt < MAX_NAME_TRIES => {}
            created => {
                let created = created.map_err(conflict)?;
                announce::webhook(&state, operational::WEBHOOK_CREATED, &created).await;
                let mut out = WebhookOut::from(created);
                out.secret = secret;
                out.warnings = warnings;
                return Ok((StatusCode::CREATED, axum::Json(out)));
            }
        }
    }
    Err(conflict(DbError::Conflict {
        constraint: "webhooks_tenant_id_name_key".to_owned(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    per_page: Option<i64>,
}

/// The tenant's webhooks, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = WebhookPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope()?;
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    let mut p = Problems::default();
    p.range("page", page, 1, 1_000_000);
    p.range("per_page", per_page, 1, 100);
    p.finish()?;
    let client = state.pool.get().await?;
    let (rows, total) =
        webhooks::list(&client, scope.tenant, scope.webhooks(), page, per_page).await?;
    let data: Vec<WebhookOut> = rows.into_iter().map(WebhookOut::from).collect();
    Ok(axum::Json(WebhookPage {
        data,
        page,
        per_page,
        total,
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookOut), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope_on(id)?;
    let client = state.pool.get().await?;
    let webhook = webhooks::get(&client, scope.tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(WebhookOut::from(webhook)))
}

/// Changes the fields given; the rest stay. Checked like create.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), request_body = WebhookInput, security(("bearer" = [])),
    responses((status = 200, body = WebhookOut), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn patch_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = managed(caller, id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let current = webhooks::get(&tx, tenant, id, true)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (fields, _) = merge(&state, input, Some(current.clone().into()))?;
    let warnings = check_subscriptions(&tx, tenant, &fields.event_types).await?;
    let updated: DbResult<Option<Webhook>> = webhooks::update(&tx, tenant, id, &fields).await;
    let webhook = updated.map_err(conflict)?.ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    announce::webhook_updated(&state, &current, &webhook).await;
    let mut out = WebhookOut::from(webhook);
    out.warnings = warnings;
    Ok(axum::Json(out))
}

/// Replaces a webhook: the fields left out take their defaults, as on
/// create, except `name` and the secret and keys, which stay. Checked like
/// create.
#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), request_body = WebhookInput, security(("bearer" = [])),
    responses((status = 200, body = WebhookOut), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn put_webhook(
    state: State<AppState>,
    caller: Caller,
    id: ApiPath<Uuid>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<impl IntoResponse> {
    patch_webhook(state, caller, id, ApiJson(input.replacing()?)).await
}

/// Deletes a webhook and its deliveries; new events stop reaching it
/// within 2 seconds.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = managed(caller, id)?;
    let client = state.pool.get().await?;
    let webhook = webhooks::get(&client, tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    if webhooks::delete(&client, tenant, id).await? {
        announce::webhook(&state, operational::WEBHOOK_DELETED, &webhook).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
