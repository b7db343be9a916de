//! Webhooks: a tenant's endpoints and what they subscribe to.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::DbResult;
use crate::delivery::options::{
    AuthKind, ClientCertificate, CustomBody, Format, RetrySpacing, SigningOptions,
};

/// Custom headers a webhook sends with every request.
pub type Headers = std::collections::BTreeMap<String, String>;

/// A header value as the API shows it: never the value itself, at most its
/// last four characters when it is long enough for those to give nothing
/// away.
#[must_use]
pub fn mask_header_value(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 16 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("****{tail}")
    } else {
        "****".to_owned()
    }
}

/// Every value masked (see [`mask_header_value`]).
#[must_use]
pub fn mask_headers(headers: &Headers) -> Headers {
    headers
        .iter()
        .map(|(name, value)| (name.clone(), mask_header_value(value)))
        .collect()
}

/// The masked headers to store beside the sealed JSON of the values.
#[must_use]
pub fn seal_headers(
    sealer: &crate::crypto::Sealer,
    headers: &Headers,
) -> (Headers, Option<Vec<u8>>) {
    if headers.is_empty() {
        return (Headers::new(), None);
    }
    // A map of strings always serializes.
    let json = serde_json::to_vec(headers).unwrap_or_default();
    (mask_headers(headers), Some(sealer.seal(&json)))
}

/// A webhook's header values in clear: opened from `headers_sealed`, or as
/// stored by a Herald from before sealing.
///
/// # Errors
/// Sealed under another key, or damaged.
pub fn open_headers(
    sealer: &crate::crypto::Sealer,
    headers: &Headers,
    sealed: Option<&[u8]>,
) -> Result<Headers, String> {
    match sealed {
        None => Ok(headers.clone()),
        Some(sealed) => {
            let json = sealer.open(sealed).map_err(|e| e.to_string())?;
            serde_json::from_slice(&json).map_err(|e| format!("headers: {e}"))
        }
    }
}

/// A webhook's delivery options that are not secret (the `options`
/// column): body format, signature schemes, which kind of outbound
/// authentication is set, how retries are spaced.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WebhookOptions {
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomBody>,
    pub signing: SigningOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthKind>,
    /// `None` for a webhook stored before spacing was chosen: doubling
    /// from `retry_backoff_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpacing>,
    /// Which TLS client certificate it presents, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// A webhook as stored (the secret sealed).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret_sealed: Vec<u8>,
    /// Header names with masked values (see [`seal_headers`]); the values
    /// themselves for a row from before sealing (`headers_sealed` empty).
    pub headers: Headers,
    /// The header values, sealed JSON.
    pub headers_sealed: Option<Vec<u8>>,
    pub timeout_seconds: i32,
    pub retry_attempts: i32,
    pub retry_backoff_seconds: i32,
    pub verify_ssl: bool,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub delivery_success_count: i64,
    pub delivery_failure_count: i64,
    /// Deliveries per second across all workers; `None`: no limit.
    pub rate_limit: Option<i32>,
    /// The secret before the last rotation, still signing until it expires.
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub options: WebhookOptions,
    /// The outbound credentials, sealed JSON.
    pub auth_sealed: Option<Vec<u8>>,
    /// The ed25519 seed, sealed.
    pub signing_key_sealed: Option<Vec<u8>>,
    /// `whpk_…`, when an ed25519 key exists.
    pub public_key: Option<String>,
    /// The ed25519 key before the last rotation, still signing until it
    /// expires, and its public key.
    pub previous_signing_key_sealed: Option<Vec<u8>>,
    pub previous_signing_key_expires_at: Option<DateTime<Utc>>,
    pub previous_public_key: Option<String>,
    /// The TLS client certificate and key, sealed JSON.
    pub client_cert_sealed: Option<Vec<u8>>,
    /// The payload filter (see [`crate::filter`]).
    pub filter: Option<String>,
}

impl Webhook {
    /// How its retries are spaced (doubling from `retry_backoff_seconds`
    /// for a webhook stored before spacing was chosen).
    #[must_use]
    pub fn retry_spacing(&self) -> RetrySpacing {
        self.options.retry.clone().unwrap_or_else(|| {
            RetrySpacing::doubling(u64::try_from(self.retry_backoff_seconds).unwrap_or(60))
        })
    }
}

/// A webhook's columns, and its delivery counters from `webhook_stats`
/// (subqueries, so that the list serves in `RETURNING` too; a webhook no
/// delivery has reached yet has no stats row).
const COLUMNS: &str = "id, tenant_id, name, description, url, event_types, secret_sealed, headers,
    timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, disabled_reason,
    created_at, updated_at,
    (SELECT s.last_triggered_at FROM webhook_stats s WHERE s.webhook_id = webhooks.id),
    coalesce((SELECT s.delivery_success_count FROM webhook_stats s WHERE s.webhook_id = webhooks.id), 0),
    coalesce((SELECT s.delivery_failure_count FROM webhook_stats s WHERE s.webhook_id = webhooks.id), 0),
    rate_limit, previous_secret_sealed, previous_secret_expires_at, options, auth_sealed,
    signing_key_sealed, public_key, previous_signing_key_sealed, previous_signing_key_expires_at,
    previous_public_key, headers_sealed, client_cert_sealed, filter";

impl Webhook {
    fn from_row(r: &Row) -> Self {
        let Json(headers): Json<Headers> = r.get(7);
        let Json(options): Json<WebhookOptions> = r.get(22);
        Self {
            id: r.get(0),
            tenant_id: r.get(1),
            name: r.get(2),
            description: r.get(3),
            url: r.get(4),
            event_types: r.get(5),
            secret_sealed: r.get(6),
            headers,
            headers_sealed: r.get(29),
            timeout_seconds: r.get(8),
            retry_attempts: r.get(9),
            retry_backoff_seconds: r.get(10),
            verify_ssl: r.get(11),
            is_active: r.get(12),
            disabled_reason: r.get(13),
            created_at: r.get(14),
            updated_at: r.get(15),
            last_triggered_at: r.get(16),
            delivery_success_count: r.get(17),
            delivery_failure_count: r.get(18),
            rate_limit: r.get(19),
            previous_secret_sealed: r.get(20),
            previous_secret_expires_at: r.get(21),
            options,
            auth_sealed: r.get(23),
            signing_key_sealed: r.get(24),
            public_key: r.get(25),
            previous_signing_key_sealed: r.get(26),
            previous_signing_key_expires_at: r.get(27),
            previous_public_key: r.get(28),
            client_cert_sealed: r.get(30),
            filter: r.get(31),
        }
    }
}

/// What a caller sets on a webhook; the rest is Herald's.
#[derive(Debug, Clone)]
pub struct WebhookFields {
    pub name: String,
    pub description: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret_sealed: Vec<u8>,
    /// Names and masked values.
    pub headers: Headers,
    /// The values, sealed.
    pub headers_sealed: Option<Vec<u8>>,
    pub timeout_seconds: i32,
    pub retry_attempts: i32,
    pub retry_backoff_seconds: i32,
    pub verify_ssl: bool,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub rate_limit: Option<i32>,
    pub options: WebhookOptions,
    pub auth_sealed: Option<Vec<u8>>,
    pub signing_key_sealed: Option<Vec<u8>>,
    pub public_key: Option<String>,
    /// The TLS client certificate and key, sealed JSON.
    pub client_cert_sealed: Option<Vec<u8>>,
    /// The payload filter, checked.
    pub filter: Option<String>,
}

impl WebhookFields {
    /// How its retries are spaced (see [`Webhook::retry_spacing`]).
    #[must_use]
    pub fn retry_spacing(&self) -> RetrySpacing {
        self.options.retry.clone().unwrap_or_else(|| {
            RetrySpacing::doubling(u64::try_from(self.retry_backoff_seconds).unwrap_or(60))
        })
    }
}

impl WebhookFields {
    /// The caller-set columns in the order `create` and `update` bind them
    /// (`$3` to `$22`).
    fn columns<'a>(
        &'a self,
        headers: &'a Json<&'a Headers>,
        options: &'a Json<&'a WebhookOptions>,
    ) -> [&'a (dyn ToSql + Sync); 20] {
        [
            &self.name,
            &self.description,
            &self.url,
            &self.event_types,
            &self.secret_sealed,
            headers,
            &self.timeout_seconds,
            &self.retry_attempts,
            &self.retry_backoff_seconds,
            &self.verify_ssl,
            &self.is_active,
            &self.disabled_reason,
            &self.rate_limit,
            options,
            &self.auth_sealed,
            &self.signing_key_sealed,
            &self.public_key,
            &self.headers_sealed,
            &self.client_cert_sealed,
            &self.filter,
        ]
    }
}

impl From<Webhook> for WebhookFields {
    fn from(w: Webhook) -> Self {
        Self {
            name: w.name,
            description: w.description,
            url: w.url,
            event_types: w.event_types,
            secret_sealed: w.secret_sealed,
            headers: w.headers,
            headers_sealed: w.headers_sealed,
            timeout_seconds: w.timeout_seconds,
            retry_attempts: w.retry_attempts,
            retry_backoff_seconds: w.retry_backoff_seconds,
            verify_ssl: w.verify_ssl,
            is_active: w.is_active,
            disabled_reason: w.disabled_reason,
            rate_limit: w.rate_limit,
            options: w.options,
            auth_sealed: w.auth_sealed,
            signing_key_sealed: w.signing_key_sealed,
            public_key: w.public_key,
            client_cert_sealed: w.client_cert_sealed,
            filter: w.filter,
        }
    }
}

/// # Errors
/// A database error; a duplicate name is [`super::DbError::Conflict`].
pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    f: &WebhookFields,
) -> DbResult<Webhook> {
    let sql = format!(
        "INSERT INTO webhooks (id, tenant_id, name, description, url, event_types, secret_sealed,
            headers, timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active,
            disabled_reason, rate_limit, options, auth_sealed, signing_key_sealed, public_key,
            headers_sealed, client_cert_sealed, filter)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20, $21, $22)
         RETURNING {COLUMNS}"
    );
    let id = Uuid::now_v7();
    let headers = Json(&f.headers);
    let options = Json(&f.options);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &tenant_id];
    params.extend(f.columns(&headers, &options));
    let row = client.query_one(&sql, &params).await?;
    Ok(Webhook::from_row(&row))
}

/// Replaces the caller-set fields of a webhook.
///
/// # Errors
/// A database error; a duplicate name is [`super::DbError::Conflict`].
pub async fn update(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    f: &WebhookFields,
) -> DbResult<Option<Webhook>> {
    let sql = format!(
        "WITH before AS (
             SELECT is_active FROM webhooks WHERE id = $1 AND tenant_id = $2
         ), restart AS (
             -- Re-enabling starts the failure run afresh, so the webhook is
             -- not disabled again by the failures that disabled it.
             UPDATE webhook_stats SET failing_since = NULL, consecutive_failures = 0
             WHERE webhook_id = $1 AND $13 AND (SELECT NOT is_active FROM before)
         )
         UPDATE webhooks SET name = $3, description = $4, url = $5, event_types = $6,
            secret_sealed = $7, headers = $8, timeout_seconds = $9, retry_attempts = $10,
            retry_backoff_seconds = $11, verify_ssl = $12, is_active = $13, disabled_reason = $14,
            rate_limit = $15, options = $16, auth_sealed = $17, signing_key_sealed = $18,
            public_key = $19, headers_sealed = $20, client_cert_sealed = $21, filter = $22,
            updated_at = now()
         WHERE id = $1 AND tenant_id = $2
         RETURNING {COLUMNS}"
    );
    let headers = Json(&f.headers);
    let options = Json(&f.options);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &tenant_id];
    params.extend(f.columns(&headers, &options));
    let row = client.query_opt(&sql, &params).await?;
    Ok(row.as_ref().map(Webhook::from_row))
}

/// One webhook of the tenant; `lock` takes a row lock for a
/// read-modify-write inside a transaction.
///
/// # Errors
/// A database error.
pub async fn get(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    lock: bool,
) -> DbResult<Option<Webhook>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND tenant_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client.query_opt(&sql, &[&id, &tenant_id]).await?;
    Ok(row.as_ref().map(Webhook::from_row))
}

/// A webhook by id alone (the worker, which has the id from a message).
///
/// # Errors
/// A database error.
pub async fn get_by_id(client: &impl GenericClient, id: Uuid) -> DbResult<Option<Webhook>> {
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
        .await?;
    let row = client.query_opt(&stmt, &[&id]).await?;
    Ok(row.as_ref().map(Webhook::from_row))
}

/// A page of the tenant's webhooks (`only` these, when given), oldest
/// first, and the total count.
///
/// # Errors
/// A database error.
pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    only: Option<&[Uuid]>,
    page: i64,
    per_page: i64,
) -> DbResult<(Vec<Webhook>, i64)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND ($4::uuid[] IS NULL OR id = ANY($4))
         ORDER BY created_at, id LIMIT $2 OFFSET $3"
    );
    let rows = client
        .query(
            &sql,
            &[&tenant_id, &per_page, &((page - 1) * per_page), &only],
        )
        .await?;
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM webhooks WHERE tenant_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2))",
            &[&tenant_id, &only],
        )
        .await?
        .get(0);
    Ok((rows.iter().map(Webhook::from_row).collect(), total))
}

/// # Errors
/// A database error.
pub async fn delete(client: &impl GenericClient, tenant_id: Uuid, id: Uuid) -> DbResult<bool> {
    let n = client
        .execute(
            // Its deliveries go by cascade, their attempts here (the
            // partitioned tables hold no foreign keys).
            "WITH a AS (
                 DELETE FROM delivery_attempts WHERE delivery_id IN (
                     SELECT id FROM deliveries WHERE webhook_id = $1 AND tenant_id = $2))
             DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2",
            &[&id, &tenant_id],
        )
        .await?;
    Ok(n > 0)
}

/// A subscription as the dispatcher matches it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub webhook_id: Uuid,
    pub event_types: Vec<String>,
    /// The payload filter, as stored.
    pub filter: Option<String>,
}

/// The tenant's active webhooks and their patterns.
///
/// # Errors
/// A database error.
pub async fn active_subscriptions(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> DbResult<Vec<Subscription>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, event_types, filter FROM webhooks WHERE tenant_id = $1 AND is_active",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant_id]).await?;
    Ok(rows
        .iter()
        .map(|r| Subscription {
            webhook_id: r.get(0),
            event_types: r.get(1),
            filter: r.get(2),
        })
        .collect())
}

/// Disables a webhook with the reason shown to its owner; false when it
/// was already disabled (or is gone).
///
/// # Errors
/// A database error.
pub async fn disable(client: &impl GenericClient, id: Uuid, reason: &str) -> DbResult<bool> {
    let n = client
        .execute(
            "UPDATE webhooks SET is_active = false, disabled_reason = $2, updated_at = now()
             WHERE id = $1 AND is_active",
            &[&id, &reason],
        )
        .await?;
    Ok(n == 1)
}

/// Replaces the webhook's secret; the current one keeps signing beside it
/// until `overlap_until`. Answers when the previous secret expires, or
/// `None` when there is no such webhook.
///
/// # Errors
/// A database error.
pub async fn rotate_secret(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    new_sealed: &[u8],
    overlap_until: DateTime<Utc>,
) -> DbResult<Option<DateTime<Utc>>> {
    let row = client
        .query_opt(
            "UPDATE webhooks SET previous_secret_sealed = secret_sealed,
                 previous_secret_expires_at = $4, secret_sealed = $3, updated_at = now()
             WHERE id = $1 AND tenant_id = $2
             RETURNING previous_secret_expires_at",
            &[&id, &tenant_id, &new_sealed, &overlap_until],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What a signing key rotation answers.
#[derive(Debug)]
pub struct RotatedKey {
    pub public_key: Option<String>,
    pub previous_public_key: Option<String>,
    pub previous_expires_at: Option<DateTime<Utc>>,
}

/// Replaces the webhook's ed25519 key; the current one keeps signing
/// beside it until `overlap_until`. `None` when there is no such webhook.
///
/// # Errors
/// A database error.
pub async fn rotate_signing_key(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    new_sealed: &[u8],
    new_public_key: &str,
    overlap_until: DateTime<Utc>,
) -> DbResult<Option<RotatedKey>> {
    let row = client
        .query_opt(
            "UPDATE webhooks SET previous_signing_key_sealed = signing_key_sealed,
                 previous_public_key = public_key, previous_signing_key_expires_at = $5,
                 signing_key_sealed = $3, public_key = $4, updated_at = now()
             WHERE id = $1 AND tenant_id = $2
             RETURNING public_key, previous_public_key, previous_signing_key_expires_at",
            &[
                &id,
                &tenant_id,
                &new_sealed,
                &new_public_key,
                &overlap_until,
            ],
        )
        .await?;
    Ok(row.map(|r| RotatedKey {
        public_key: r.get(0),
        previous_public_key: r.get(1),
        previous_expires_at: r.get(2),
    }))
}

/// Webhooks whose header values are still in clear (stored by a Herald from
/// before sealing), with those values.
///
/// # Errors
/// A database error.
pub async fn clear_headers(client: &impl GenericClient) -> DbResult<Vec<(Uuid, Headers)>> {
    let rows = client
        .query(
            "SELECT id, headers FROM webhooks WHERE headers_sealed IS NULL AND headers <> '{}'::jsonb",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let Json(headers): Json<Headers> = r.get(1);
            (r.get(0), headers)
        })
        .collect())
}

/// Stores a webhook's headers sealed, if they are still as read (in clear).
///
/// # Errors
/// A database error.
pub async fn store_sealed_headers(
    client: &impl GenericClient,
    id: Uuid,
    clear: &Headers,
    masked: &Headers,
    sealed: &[u8],
) -> DbResult<()> {
    client
        .execute(
            "UPDATE webhooks SET headers = $3, headers_sealed = $4
             WHERE id = $1 AND headers_sealed IS NULL AND headers = $2",
            &[&id, &Json(clear), &Json(masked), &sealed],
        )
        .await?;
    Ok(())
}
