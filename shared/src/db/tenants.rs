//! Tenants and their API tokens. A token is `hrld_` + 43 base64url
//! characters; only its SHA-256 is stored, so a database leak reveals none.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::DbResult;

const TOKEN_PREFIX: &str = "hrld_";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The SHA-256 a token is stored and looked up by.
#[must_use]
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// # Errors
/// A database error.
pub async fn create_tenant(client: &impl GenericClient, name: &str) -> DbResult<Tenant> {
    let row = client
        .query_one(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
            &[&Uuid::now_v7(), &name],
        )
        .await?;
    Ok(Tenant {
        id: row.get(0),
        name: row.get(1),
        created_at: row.get(2),
    })
}

/// One page of tenants, oldest first, and how many there are.
///
/// # Errors
/// A database error.
pub async fn list_tenants(
    client: &impl GenericClient,
    page: i64,
    per_page: i64,
) -> DbResult<(Vec<Tenant>, i64)> {
    let rows = client
        .query(
            "SELECT id, name, created_at, count(*) OVER () FROM tenants
             WHERE deleted_at IS NULL
             ORDER BY created_at, id LIMIT $1 OFFSET $2",
            &[&per_page, &((page - 1) * per_page)],
        )
        .await?;
    let total = match rows.first() {
        Some(row) => row.get(3),
        None => client
            .query_one("SELECT count(*) FROM tenants WHERE deleted_at IS NULL", &[])
            .await?
            .get(0),
    };
    let tenants = rows
        .iter()
        .map(|row| Tenant {
            id: row.get(0),
            name: row.get(1),
            created_at: row.get(2),
        })
        .collect();
    Ok((tenants, total))
}

/// Marks a tenant deleted: its tokens go and its webhooks stop (each
/// process sees both within 2 seconds); the purger removes the rest.
/// Answers when it was marked, `None` when there is no such tenant.
///
/// # Errors
/// A database error.
pub async fn mark_deleted(
    client: &mut deadpool_postgres::Object,
    id: Uuid,
) -> DbResult<Option<DateTime<Utc>>> {
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "UPDATE tenants SET deleted_at = coalesce(deleted_at, now()) WHERE id = $1
             RETURNING deleted_at",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    tx.execute("DELETE FROM api_tokens WHERE tenant_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM portal_sessions WHERE tenant_id = $1", &[&id])
        .await?;
    tx.execute(
        "UPDATE webhooks SET is_active = false, disabled_reason = 'the tenant is being deleted'
         WHERE tenant_id = $1 AND is_active",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(row.get(0)))
}

/// One step of removing a deleted tenant's data, each a short statement:
/// up to `batch` deliveries (with their attempts), else events, else
/// webhooks, else the tenant itself. Answers the rows this step removed;
/// 0 when no deleted tenant is left.
///
/// # Errors
/// A database error.
pub async fn purge_step(client: &impl GenericClient, batch: i64) -> DbResult<u64> {
    let Some(row) = client
        .query_opt(
            "SELECT id FROM tenants WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT 1",
            &[],
        )
        .await?
    else {
        return Ok(0);
    };
    let tenant: Uuid = row.get(0);
    let steps = [
        // Attempts go with their deliveries: the partitioned tables hold
        // no foreign keys to cascade through.
        "WITH d AS (SELECT id FROM deliveries WHERE tenant_id = $1 LIMIT $2),
              a AS (DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM d))
         DELETE FROM deliveries WHERE id IN (SELECT id FROM d)",
        "DELETE FROM events WHERE (tenant_id, id, received_at) IN (
             SELECT tenant_id, id, received_at FROM events WHERE tenant_id = $1 LIMIT $2)",
        "DELETE FROM webhooks WHERE id IN (
             SELECT id FROM webhooks WHERE tenant_id = $1 LIMIT $2)",
    ];
    for sql in steps {
        let n = client.execute(sql, &[&tenant, &batch]).await?;
        if n > 0 {
            return Ok(n);
        }
    }
    Ok(client
        .execute(
            "DELETE FROM tenants WHERE id = $1 AND deleted_at IS NOT NULL",
            &[&tenant],
        )
        .await?)
}

/// Whether the tenant exists and is not being deleted.
///
/// # Errors
/// A database error.
pub async fn tenant_exists(client: &impl GenericClient, id: Uuid) -> DbResult<bool> {
    let stmt = client
        .prepare_cached("SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL")
        .await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.is_some())
}

/// Creates a token and answers it in clear, the only time it is shown.
///
/// # Errors
/// A database error (a foreign-key error for an unknown tenant).
pub async fn create_token(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
) -> DbResult<(TokenInfo, String)> {
    let id = Uuid::now_v7();
    let token = generate_token();
    let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let row = client
        .query_one(
            "INSERT INTO api_tokens (id, tenant_id, name, token_hash, prefix)
             VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
            &[&id, &tenant_id, &name, &hash_token(&token), &prefix],
        )
        .await?;
    let info = TokenInfo {
        id,
        tenant_id,
        name: name.to_owned(),
        prefix,
        created_at: row.get(0),
        last_used_at: None,
    };
    Ok((info, token))
}

/// The tenant a token belongs to.
///
/// # Errors
/// A database error.
pub async fn tenant_of_token(client: &impl GenericClient, token: &str) -> DbResult<Option<Uuid>> {
    let stmt = client
        .prepare_cached("SELECT tenant_id FROM api_tokens WHERE token_hash = $1")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&hash_token(token)])
        .await?
        .map(|r| r.get(0)))
}

/// # Errors
/// A database error.
pub async fn list_tokens(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<Vec<TokenInfo>> {
    let rows = client
        .query(
            "SELECT id, tenant_id, name, prefix, created_at, last_used_at FROM api_tokens
             WHERE tenant_id = $1 ORDER BY created_at, id",
            &[&tenant_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            tenant_id: r.get(1),
            name: r.get(2),
            prefix: r.get(3),
            created_at: r.get(4),
            last_used_at: r.get(5),
        })
        .collect())
}

/// Revokes a token (of the tenant, when one is given); false when there
/// was none.
///
/// # Errors
/// A database error.
pub async fn delete_token(
    client: &impl GenericClient,
    tenant_id: Option<Uuid>,
    id: Uuid,
) -> DbResult<bool> {
    let n = client
        .execute(
            "DELETE FROM api_tokens WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
            &[&id, &tenant_id],
        )
        .await?;
    Ok(n > 0)
}

/// Marks tokens (by hash) as used now. The api gathers the tokens it saw
/// and calls this once a minute, not once a request.
///
/// # Errors
/// A database error.
pub async fn touch_tokens(client: &impl GenericClient, hashes: &[Vec<u8>]) -> DbResult<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = ANY($1)",
            &[&hashes],
        )
        .await?;
    Ok(())
}
