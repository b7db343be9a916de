//! Bearer tokens: the admin token from configuration, or a tenant token
//! whose SHA-256 is in `api_tokens`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use herald_shared::db::tenants;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(Uuid),
}

impl Caller {
    /// The tenant for tenant-scoped calls; the admin token is not a tenant.
    pub fn tenant(self) -> Result<Uuid, ApiError> {
        match self {
            Self::Tenant(id) => Ok(id),
            Self::Admin => Err(ApiError::Forbidden(
                "this call needs a tenant token; the admin token manages tenants and tokens",
            )),
        }
    }

    pub fn require_admin(self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Tenant(_) => Err(ApiError::Forbidden("this call needs the admin token")),
        }
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

/// Compares digests in constant time, so the time taken says nothing about
/// the token (not even its length).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}
