//! Bearer tokens: the admin token from configuration, a tenant token
//! whose SHA-256 is in `api_tokens`, or a customer portal session
//! (`hrlp_…`, in `portal_sessions`) that reaches a slice of one tenant.
//!
//! Routes take the tenant with [`Caller::tenant`], which refuses portal
//! sessions, or with [`Caller::scope`], which lets them in narrowed: a
//! route opens itself to the portal only by asking for the scope and
//! applying it, so a session never gets more than its slice.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use herald_shared::db::{portal, tenants};
use herald_shared::models::{EventPattern, EventType};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(Uuid),
    /// A customer portal session.
    Portal(Arc<PortalScope>),
}

/// What a portal session may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalScope {
    pub session_id: Uuid,
    pub tenant: Uuid,
    /// `None`: every webhook of the tenant.
    pub webhooks: Option<Vec<Uuid>>,
    /// `None`: every event type.
    pub event_types: Option<Vec<EventPattern>>,
    pub read_only: bool,
    pub expires_at: DateTime<Utc>,
}

impl PortalScope {
    fn from_session(s: portal::PortalSession) -> Self {
        let event_types = s.event_types.map(|types| {
            types
                .iter()
                .filter_map(|t| EventPattern::parse(t).ok())
                .collect::<Vec<_>>()
        });
        Self {
            session_id: s.id,
            tenant: s.tenant_id,
            webhooks: s.webhook_ids,
            // `*` among them: every type (but Herald's own, as for webhooks).
            event_types,
            read_only: s.read_only,
            expires_at: s.expires_at,
        }
    }
}

impl Caller {
    /// The tenant for calls on a whole tenant; neither the admin token nor
    /// a portal session is one.
    pub fn tenant(self) -> Result<Uuid, ApiError> {
        match self {
            Self::Tenant(id) => Ok(id),
            Self::Admin => Err(ApiError::Forbidden(
                "this call needs a tenant token; the admin token manages tenants and tokens",
            )),
            Self::Portal(_) => Err(ApiError::Forbidden(
                "a portal session cannot make this call",
            )),
        }
    }

    /// The part of a tenant this call may reach: all of it for a tenant
    /// token, the session's slice for a portal session.
    pub fn scope(self) -> Result<Scope, ApiError> {
        match self {
            Self::Tenant(tenant) => Ok(Scope {
                tenant,
                portal: None,
            }),
            Self::Portal(p) => Ok(Scope {
                tenant: p.tenant,
                portal: Some(p),
            }),
            Self::Admin => Err(ApiError::Forbidden(
                "this call needs a tenant token; the admin token manages tenants and tokens",
            )),
        }
    }

    /// The scope, for a call on webhook `id`: a webhook outside a portal
    /// session's slice is not found.
    pub fn scope_on(self, webhook: Uuid) -> Result<Scope, ApiError> {
        let scope = self.scope()?;
        if scope.allows_webhook(webhook) {
            Ok(scope)
        } else {
            Err(ApiError::NotFound)
        }
    }

    pub fn require_admin(self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Tenant(_) | Self::Portal(_) => {
                Err(ApiError::Forbidden("this call needs the admin token"))
            }
        }
    }
}

/// A tenant, or the slice of it a portal session reaches.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: Uuid,
    portal: Option<Arc<PortalScope>>,
}

/// An event-type restriction as SQL can apply it: exact types, and
/// prefixes (`invoice.` for `invoice.*`).
#[derive(Debug, Default)]
pub struct TypeFilter {
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Scope {
    /// The portal session, if this is one.
    pub fn portal(&self) -> Option<&PortalScope> {
        self.portal.as_deref()
    }

    /// The webhooks it is narrowed to (`None`: all).
    pub fn webhooks(&self) -> Option<&[Uuid]> {
        self.portal.as_ref()?.webhooks.as_deref()
    }

    pub fn allows_webhook(&self, id: Uuid) -> bool {
        self.webhooks().is_none_or(|ids| ids.contains(&id))
    }

    /// The event types it is narrowed to (`None`: all).
    pub fn types(&self) -> Option<TypeFilter> {
        let patterns = self.portal.as_ref()?.event_types.as_ref()?;
        let mut f = TypeFilter::default();
        for p in patterns {
            match p {
                EventPattern::All => return None,
                EventPattern::Prefix(stem) => f.prefixes.push(stem.clone()),
                EventPattern::Exact(t) => f.exact.push(t.clone()),
            }
        }
        Some(f)
    }

    /// Whether a delivery (to `webhook`, of `event_type`) is in the scope.
    pub fn allows_delivery(&self, webhook: Uuid, event_type: &str) -> bool {
        self.allows_webhook(webhook) && self.allows_type(event_type)
    }

    pub fn allows_type(&self, event_type: &str) -> bool {
        let Some(patterns) = self.portal.as_ref().and_then(|p| p.event_types.as_ref()) else {
            return true;
        };
        EventType::parse(event_type).is_ok_and(|t| patterns.iter().any(|p| p.matches(&t)))
    }

    /// Refuses a change from a read-only session.
    pub fn writable(&self) -> Result<(), ApiError> {
        if self.portal.as_ref().is_some_and(|p| p.read_only) {
            return Err(ApiError::Forbidden("this portal session is read-only"));
        }
        Ok(())
    }

    /// Refuses a change that could reach past a narrowed session: creating
    /// or reconfiguring webhooks, or recovering a window of deliveries,
    /// is for sessions that see every event type (and, to create, every
    /// webhook).
    pub fn manages(&self, webhook: Option<Uuid>) -> Result<(), ApiError> {
        self.writable()?;
        let Some(p) = self.portal.as_ref() else {
            return Ok(());
        };
        let narrowed_types = self.types().is_some();
        let reaches = match webhook {
            Some(id) => self.allows_webhook(id),
            None => p.webhooks.is_none(),
        };
        if narrowed_types || !reaches {
            return Err(ApiError::Forbidden(
                "this portal session is narrowed to some webhooks or event types and cannot make this change",
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;

        if let Some(admin) = &state.settings.api.admin_token
            && constant_time_eq(token.as_bytes(), admin.expose_secret().as_bytes())
        {
            return Ok(Self::Admin);
        }

        let hash = tenants::hash_token(token);
        if token.starts_with(portal::TOKEN_PREFIX) {
            return portal_caller(state, hash).await;
        }
        state.token_use.saw(&hash);
        let tenant = match state.tokens.lookup(&hash) {
            Ok(tenant) => tenant,
            Err(version) => {
                let client = state.pool.get().await?;
                let tenant = tenants::tenant_of_token(&client, token)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                state.tokens.store(version, hash, tenant);
                tenant
            }
        };
        state
            .tenant_limiter
            .check(tenant, std::time::Instant::now())
            .map_err(|wait| ApiError::RateLimited(wait.as_secs().max(1)))?;
        Ok(Self::Tenant(tenant))
    }
}

/// A portal session's caller: from the cache (dropped when the
/// configuration moves, so a revoked session stops within 2 seconds) or
/// the database; its expiry is checked on every request.
async fn portal_caller(state: &AppState, hash: Vec<u8>) -> Result<Caller, ApiError> {
    let scope = match state.portal_sessions.lookup(&hash) {
        Ok(scope) => scope,
        Err(version) => {
            let client = state.pool.get().await?;
            let session = portal::by_token_hash(&client, &hash)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            let scope = Arc::new(PortalScope::from_session(session));
            state
                .portal_sessions
                .store(version, hash, Arc::clone(&scope));
            scope
        }
    };
    if scope.expires_at <= Utc::now() {
        return Err(ApiError::Unauthorized);
    }
    state
        .tenant_limiter
        .check(scope.tenant, std::time::Instant::now())
        .map_err(|wait| ApiError::RateLimited(wait.as_secs().max(1)))?;
    Ok(Caller::Portal(scope))
}

/// Compares digests in constant time, so the time taken says nothing about
/// the token (not even its length).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}
