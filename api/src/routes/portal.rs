//! Customer portal sessions: the product asks for one with its tenant
//! token and puts the answered URL in an iframe or a link; the console
//! opens on that tenant, narrowed as asked, until the session expires or
//! is revoked. A session never reaches more than the token that made it:
//! only a tenant token makes one, and only for its own webhooks.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_shared::db::{portal, webhooks};
use herald_shared::models::EventPattern;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiPath, OptionalJson};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions, create_session))
        .routes(routes!(current_session))
        .routes(routes!(revoke_session))
}

/// At most this many webhooks or event types narrow one session.
const MAX_ITEMS: usize = 100;

/// What the session may reach; every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSession {
    /// Lifetime in seconds, 60 to 604,800 (default
    /// `api.portal_session_ttl_seconds`, one hour).
    expires_in_seconds: Option<i64>,
    /// Only these webhooks (the tenant's own); absent: all of them.
    webhook_ids: Option<Vec<Uuid>>,
    /// Only events and deliveries of these types or patterns
    /// (`invoice.*`); absent: every type.
    event_types: Option<Vec<String>>,
    /// Reading only: no test calls, retries or changes.
    #[serde(default)]
    read_only: bool,
}

/// A new session and its token, shown only here.
#[derive(Serialize, ToSchema)]
struct CreatedSession {
    #[serde(flatten)]
    session: portal::PortalSession,
    /// `hrlp_…`: the bearer token the console uses.
    token: String,
    /// Where the portal opens, relative to the api's address: the token is
    /// in the fragment, which browsers never send to a server, and the
    /// console removes it from the address bar on load.
    url: String,
}

/// The tenant's live sessions (never their tokens).
#[derive(Serialize, ToSchema)]
struct SessionList {
    data: Vec<portal::PortalSession>,
}

/// Opens a customer portal session on the caller's tenant, optionally
/// narrowed to some webhooks or event types and to reading. Tenant token.
#[utoipa::path(post, path = "/v1/portal-sessions", tag = "portal", request_body(content = NewSession, description = "optional"),
    security(("bearer" = [])),
    responses((status = 201, body = CreatedSession), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(input): OptionalJson<NewSession>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let mut problems = Vec::new();
    let default_ttl =
        i64::try_from(state.settings.api.portal_session_ttl_seconds.as_secs()).unwrap_or(3600);
    let ttl = input.expires_in_seconds.unwrap_or(default_ttl);
    if !(60..=604_800).contains(&ttl) {
        problems.push(FieldError::new(
            "expires_in_seconds",
            "must be between 60 and 604800",
        ));
    }
    if let Some(types) = &input.event_types {
        if types.is_empty() || types.len() > MAX_ITEMS {
            problems.push(FieldError::new(
                "event_types",
                format!("must name 1 to {MAX_ITEMS} types or patterns"),
            ));
        }
        for (i, t) in types.iter().enumerate() {
            if let Err(e) = EventPattern::parse(t) {
                problems.push(FieldError::new(format!("event_types[{i}]"), e.0));
            }
        }
    }
    let client = state.pool.get().await?;
    if let Some(ids) = &input.webhook_ids {
        if ids.is_empty() || ids.len() > MAX_ITEMS {
            problems.push(FieldError::new(
                "webhook_ids",
                format!("must name 1 to {MAX_ITEMS} webhooks"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            if seen.insert(*id) && webhooks::get(&client, tenant, *id, false).await?.is_none() {
                problems.push(FieldError::new(
                    format!("webhook_ids[{i}]"),
                    "is not one of this tenant's webhooks",
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let mut webhook_ids = input.webhook_ids;
    if let Some(ids) = &mut webhook_ids {
        ids.sort_unstable();
        ids.dedup();
    }
    let expires_at: DateTime<Utc> = Utc::now() + chrono::Duration::seconds(ttl);
    let (session, token) = portal::create(
        &client,
        &portal::NewSession {
            tenant_id: tenant,
            webhook_ids: webhook_ids.as_deref(),
            event_types: input.event_types.as_deref(),
            read_only: input.read_only,
            expires_at,
        },
    )
    .await?;
    let url = format!("/console/#portal={token}");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedSession {
            session,
            token,
            url,
        }),
    ))
}

/// The tenant's sessions that have not expired, newest first. Tenant token.
#[utoipa::path(get, path = "/v1/portal-sessions", tag = "portal", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    Ok(axum::Json(SessionList {
        data: portal::list(&client, tenant).await?,
    }))
}

/// What the calling portal session reaches (for the console).
#[derive(Serialize, ToSchema)]
struct CurrentSession {
    id: Uuid,
    tenant_id: Uuid,
    webhook_ids: Option<Vec<Uuid>>,
    event_types: Option<Vec<String>>,
    read_only: bool,
    expires_at: DateTime<Utc>,
}

/// The calling portal session. Portal session token.
#[utoipa::path(get, path = "/v1/portal-sessions/current", tag = "portal", security(("bearer" = [])),
    responses((status = 200, body = CurrentSession), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn current_session(caller: Caller) -> ApiResult<impl IntoResponse> {
    let Caller::Portal(p) = caller else {
        return Err(ApiError::Forbidden(
            "this call needs a portal session token",
        ));
    };
    Ok(axum::Json(CurrentSession {
        id: p.session_id,
        tenant_id: p.tenant,
        webhook_ids: p.webhooks.clone(),
        event_types: p.event_types.as_ref().map(|types| {
            types
                .iter()
                .map(|t| match t {
                    EventPattern::All => "*".to_owned(),
                    EventPattern::Prefix(stem) => format!("{stem}*"),
                    EventPattern::Exact(t) => t.clone(),
                })
                .collect()
        }),
        read_only: p.read_only,
        expires_at: p.expires_at,
    }))
}

/// Revokes a session: refused everywhere within 2 seconds. Tenant token.
#[utoipa::path(delete, path = "/v1/portal-sessions/{id}", tag = "portal", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    if portal::revoke(&client, tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
