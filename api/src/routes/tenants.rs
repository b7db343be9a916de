//! Tenants and API tokens. The admin token creates tenants and their
//! tokens; a tenant token lists and revokes its own tenant's tokens.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use herald_shared::db::{DbError, tenants};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/tenants/{id}/tokens", post(create_token))
        .route("/v1/tokens", get(list_tokens))
        .route("/v1/tokens/{id}", delete(delete_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

#[derive(Serialize)]
struct CreatedTenant {
    id: Uuid,
    name: String,
    /// The tenant's first token, shown only here.
    token: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: tenants::TokenInfo,
    /// Shown only here.
    token: String,
}

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    // The body is optional: an empty one makes an unnamed token.
    let body: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        parse_json(&body)?
    };
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    tenant_id: Option<Uuid>,
}

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
    };
    let client = state.pool.get().await?;
    let data = tenants::list_tokens(&client, tenant_id).await?;
    Ok(axum::Json(
        serde_json::json!({ "data": data, "next_cursor": null }),
    ))
}

async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let client = state.pool.get().await?;
    let tenant = match caller {
        Caller::Tenant(tenant) => Some(tenant),
        Caller::Admin => None,
    };
    if tenants::delete_token(&client, tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
