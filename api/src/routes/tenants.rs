//! Tenants and API tokens. The admin token creates tenants and their
//! tokens; a tenant token lists and revokes its own tenant's tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herald_shared::db::{DbError, tenants};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::state::AppState;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A list of tokens.
#[derive(Serialize, ToSchema)]
struct TokenList {
    data: Vec<tenants::TokenInfo>,
    next_cursor: Option<String>,
}

/// A page of tenants.
#[derive(Serialize, ToSchema)]
struct TenantPage {
    data: Vec<tenants::Tenant>,
    page: i64,
    per_page: i64,
    total: i64,
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(delete_tenant))
        .routes(routes!(create_token))
        .routes(routes!(list_tokens))
        .routes(routes!(delete_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

#[derive(Serialize, ToSchema)]
struct CreatedTenant {
    id: Uuid,
    name: String,
    /// The tenant's first token, shown only here.
    token: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Creates a tenant and its first token (shown only here). Admin token.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedTenant), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::invalid("name", "must be 1 to 255 characters"));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let tenant = tenants::create_tenant(&tx, name).await?;
    let (_, token) = tenants::create_token(&tx, tenant.id, "default").await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedTenant {
            id: tenant.id,
            name: tenant.name,
            token,
            created_at: tenant.created_at,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// From 1 (default 1).
    page: Option<i64>,
    /// 1 to 100 (default 20).
    per_page: Option<i64>,
}

/// Every tenant, oldest first, a page at a time. Admin token.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = TenantPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    if !(1..=1_000_000).contains(&page) {
        return Err(ApiError::invalid("page", "must be between 1 and 1000000"));
    }
    if !(1..=100).contains(&per_page) {
        return Err(ApiError::invalid("per_page", "must be between 1 and 100"));
    }
    let client = state.pool.get().await?;
    let (data, total) = tenants::list_tenants(&client, page, per_page).await?;
    Ok(axum::Json(TenantPage {
        data,
        page,
        per_page,
        total,
    }))
}

/// A tenant on its way out.
#[derive(Serialize, ToSchema)]
struct DeletedTenant {
    id: Uuid,
    /// When it was deleted; its data is removed in the background.
    deleted_at: chrono::DateTime<chrono::Utc>,
}

/// Deletes a tenant. At once its tokens are revoked and its webhooks stop
/// (within 2 seconds everywhere); its webhooks, events, deliveries and
/// attempts are then removed in small batches in the background, and
/// deliveries still queued are dropped unsent. Admin token.
#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 202, body = DeletedTenant), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let mut client = state.pool.get().await?;
    let deleted_at = tenants::mark_deleted(&mut client, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DeletedTenant { id, deleted_at }),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    info: tenants::TokenInfo,
    /// Shown only here.
    token: String,
}

/// Another token for a tenant (shown only here). Admin token; the body is
/// optional.
#[utoipa::path(post, path = "/v1/tenants/{id}/tokens", tag = "tenants", request_body(content = CreateToken, description = "optional"),
    params(("id" = Uuid, Path, description = "the tenant")), security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<Uuid>,
    // The body is optional: an empty one makes an unnamed token.
    OptionalJson(body): OptionalJson<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let name = body.name.unwrap_or_default();
    if name.len() > 255 {
        return Err(ApiError::invalid("name", "must be at most 255 characters"));
    }
    let client = state.pool.get().await?;
    if !tenants::tenant_exists(&client, tenant_id).await? {
        return Err(ApiError::NotFound);
    }
    let (info, token) = tenants::create_token(&client, tenant_id, &name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken { info, token }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    tenant_id: Option<Uuid>,
}

/// The tenant's tokens (never the tokens themselves). The admin token names
/// the tenant with `tenant_id`.
#[utoipa::path(get, path = "/v1/tokens", tag = "tenants", params(TokenQuery), security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant_id = match caller {
        Caller::Tenant(id) => id,
        Caller::Admin => q.tenant_id.ok_or_else(|| {
            ApiError::invalid("tenant_id", "the admin token must name a tenant_id")
        })?,
        portal @ Caller::Portal(_) => portal.tenant()?,
    };
    let client = state.pool.get().await?;
    let data = tenants::list_tokens(&client, tenant_id).await?;
    Ok(axum::Json(TokenList {
        data,
        next_cursor: None,
    }))
}

/// Revokes a token; refused everywhere within 2 seconds.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tenants", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let client = state.pool.get().await?;
    let tenant = match caller {
        Caller::Tenant(tenant) => Some(tenant),
        Caller::Admin => None,
        portal @ Caller::Portal(_) => Some(portal.tenant()?),
    };
    if tenants::delete_token(&client, tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
