//! Customer portal sessions: a token `hrlp_` + 43 base64url characters,
//! stored as its SHA-256 like API tokens, that opens the console on one
//! tenant, possibly narrowed to some webhooks or event types and to
//! reading. It expires, and deleting it revokes it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use uuid::Uuid;

use super::DbResult;
use super::tenants::hash_token;

/// What portal session tokens start with.
pub const TOKEN_PREFIX: &str = "hrlp_";

/// A session as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PortalSession {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The webhooks it may reach; `null`: all of the tenant's.
    pub webhook_ids: Option<Vec<Uuid>>,
    /// The event type patterns it may see; `null`: every type.
    pub event_types: Option<Vec<String>>,
    pub read_only: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, webhook_ids, event_types, read_only, created_at, expires_at";

fn from_row(r: &tokio_postgres::Row) -> PortalSession {
    PortalSession {
        id: r.get(0),
        tenant_id: r.get(1),
        webhook_ids: r.get(2),
        event_types: r.get(3),
        read_only: r.get(4),
        created_at: r.get(5),
        expires_at: r.get(6),
    }
}

/// What a new session may reach.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub tenant_id: Uuid,
    pub webhook_ids: Option<&'a [Uuid]>,
    pub event_types: Option<&'a [String]>,
    pub read_only: bool,
    pub expires_at: DateTime<Utc>,
}

/// Creates a session; answers it and its token, shown only now.
///
/// # Errors
/// A database error.
pub async fn create(
    client: &impl GenericClient,
    s: &NewSession<'_>,
) -> DbResult<(PortalSession, String)> {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let row = client
        .query_one(
            &format!(
                "INSERT INTO portal_sessions (id, tenant_id, token_hash, webhook_ids, event_types,
                                              read_only, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &s.tenant_id,
                &hash_token(&token),
                &s.webhook_ids,
                &s.event_types,
                &s.read_only,
                &s.expires_at,
            ],
        )
        .await?;
    Ok((from_row(&row), token))
}

/// The live (unexpired) session a token opens.
///
/// # Errors
/// A database error.
pub async fn by_token_hash(
    client: &impl GenericClient,
    hash: &[u8],
) -> DbResult<Option<PortalSession>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM portal_sessions s
             WHERE token_hash = $1 AND expires_at > now()
               AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = s.tenant_id AND t.deleted_at IS NULL)"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&hash])
        .await?
        .as_ref()
        .map(from_row))
}

/// The tenant's unexpired sessions, newest first.
///
/// # Errors
/// A database error.
pub async fn list(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<Vec<PortalSession>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM portal_sessions WHERE tenant_id = $1 AND expires_at > now()
                 ORDER BY created_at DESC LIMIT 1000"
            ),
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Revokes a session; `false` when the tenant has none with that id.
///
/// # Errors
/// A database error.
pub async fn revoke(client: &impl GenericClient, tenant_id: Uuid, id: Uuid) -> DbResult<bool> {
    Ok(client
        .execute(
            "DELETE FROM portal_sessions WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?
        == 1)
}

/// Deletes sessions that expired more than a day ago; answers how many.
///
/// # Errors
/// A database error.
pub async fn prune_expired(client: &impl GenericClient) -> DbResult<u64> {
    Ok(client
        .execute(
            "DELETE FROM portal_sessions WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await?)
}
