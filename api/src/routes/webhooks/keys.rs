//! Secrets and keys: rotating the HMAC secret and the ed25519 key pair,
//! the previous one signing beside the new for an overlap.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_delivery::signing::{SigningKey, WebhookSecret};
use herald_shared::db::DbError;
use herald_shared::db::webhooks;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::output::{RotatedSecret, RotatedSigningKey};
use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, OptionalJson};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateInput {
    /// The new secret; generated when absent.
    secret: Option<String>,
}

/// A new secret, answered once; the previous one keeps signing beside it
/// (both in `webhook-signature`) for `api.secret_rotation_overlap_seconds`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path)),
    request_body(content = RotateInput, description = "optional"), security(("bearer" = [])),
    responses((status = 200, body = RotatedSecret), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    OptionalJson(input): OptionalJson<RotateInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = super::managed(caller, id)?;
    let secret = match input.secret {
        Some(s) => WebhookSecret::parse(s.trim()).map_err(|e| ApiError::invalid("secret", e))?,
        None => WebhookSecret::generate(),
    };
    let client = state.pool.get().await?;
    let expires = webhooks::rotate_secret(
        &client,
        tenant,
        id,
        &state.sealer.seal(secret.expose().as_bytes()),
        overlap_until(&state),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    let event = herald_shared::operational::secret_rotated(tenant, id, expires, Utc::now());
    crate::announce::announce(&state, &event).await;
    Ok(axum::Json(RotatedSecret {
        secret: secret.expose().to_owned(),
        previous_secret_expires_at: expires,
    }))
}

/// When a rotated-out secret or key stops signing.
fn overlap_until(state: &AppState) -> DateTime<Utc> {
    chrono::Duration::from_std(state.settings.api.secret_rotation_overlap_seconds)
        .ok()
        .and_then(|overlap| Utc::now().checked_add_signed(overlap))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A new ed25519 key pair for `v1a` signatures; the previous key keeps
/// signing beside it (two `v1a` in `webhook-signature`) for
/// `api.secret_rotation_overlap_seconds`, so receivers can switch public
/// keys without a gap. Only for webhooks with `signing.ed25519` on.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-signing-key", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RotatedSigningKey), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub(super) async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = super::managed(caller, id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let webhook = webhooks::get(&tx, tenant, id, true)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !webhook.options.signing.ed25519 {
        return Err(ApiError::invalid(
            "signing.ed25519",
            "is off: switch it on (PATCH signing.ed25519) to get a key pair",
        ));
    }
    let (key, seed) = SigningKey::generate().map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let rotated = webhooks::rotate_signing_key(
        &tx,
        tenant,
        id,
        &state.sealer.seal(&seed),
        &key.public_key(),
        overlap_until(&state),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(axum::Json(RotatedSigningKey {
        public_key: rotated.public_key,
        previous_public_key: rotated.previous_public_key,
        previous_public_key_expires_at: rotated.previous_expires_at,
    }))
}
