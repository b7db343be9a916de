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
             ORDER BY created_at, id LIMIT $1 OFFSET $2",
            &[&per_page, &((page - 1) * per_page)],
        )
        .await?;
    let total = match rows.first() {
        Some(row) => row.get(3),
        None => client
            .query_one("SELECT count(*) FROM tenants", &[])
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

/// # Errors
/// A database error.
pub async fn tenant_exists(client: &impl GenericClient, id: Uuid) -> DbResult<bool> {
    let stmt = client
        .prepare_cached("SELECT 1 FROM tenants WHERE id = $1")
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
