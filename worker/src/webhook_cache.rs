//! Webhook configuration as the worker needs it (URL, opened secret,
//! headers, timeout), cached per webhook and trusted only while the
//! configuration version it was loaded under is current.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::{VersionWatch, VersionedCache};
use herald_shared::db::webhooks;
use herald_shared::signing::WebhookSecret;
use http::{HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

/// What one delivery attempt needs to know about its webhook.
#[derive(Debug)]
pub struct WebhookConfig {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub secret: WebhookSecret,
    /// The secret before the last rotation and when it stops signing.
    pub previous_secret: Option<(WebhookSecret, chrono::DateTime<chrono::Utc>)>,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub verify_ssl: bool,
    pub is_active: bool,
    pub retry_attempts: u32,
    pub retry_backoff: Duration,
    /// Deliveries per second across all workers.
    pub rate_limit: Option<u32>,
}

impl WebhookConfig {
    #[must_use]
    pub fn retry_policy(&self, max_delay: Duration) -> herald_shared::retry::Policy {
        herald_shared::retry::Policy {
            retry_attempts: self.retry_attempts,
            first_delay: self.retry_backoff,
            max_delay,
        }
    }
}

/// Why a webhook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] herald_shared::db::DbError),
    #[error("the webhook's secret cannot be opened: {0}")]
    Secret(String),
}

const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct WebhookCache {
    pool: Pool,
    sealer: Sealer,
    /// `None`: the webhook does not exist (deleted).
    cache: VersionedCache<Uuid, Option<Arc<WebhookConfig>>>,
}

impl WebhookCache {
    #[must_use]
    pub fn new(pool: Pool, sealer: Sealer, watch: VersionWatch) -> Self {
        Self {
            pool,
            sealer,
            cache: VersionedCache::new(watch, MAX_ENTRIES),
        }
    }

    fn open_secret(&self, sealed: &[u8]) -> Result<WebhookSecret, LoadError> {
        let opened = self
            .sealer
            .open(sealed)
            .map_err(|e| LoadError::Secret(e.to_string()))?;
        let text = String::from_utf8(opened).map_err(|e| LoadError::Secret(e.to_string()))?;
        WebhookSecret::parse(&text).map_err(|e| LoadError::Secret(e.to_owned()))
    }

    /// The webhook, or `None` when it no longer exists.
    ///
    /// # Errors
    /// A database error, or a secret sealed under another key.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<WebhookConfig>>, LoadError> {
        let version = match self.cache.lookup(&id) {
            Ok(hit) => return Ok(hit),
            Err(version) => version,
        };
        let client = self
            .pool
            .get()
            .await
            .map_err(herald_shared::db::DbError::from)?;
        let entry = match webhooks::get_by_id(&client, id).await? {
            None => None,
            Some(w) => {
                let secret = self.open_secret(&w.secret_sealed)?;
                let previous_secret =
                    match (&w.previous_secret_sealed, w.previous_secret_expires_at) {
                        (Some(sealed), Some(until)) => Some((self.open_secret(sealed)?, until)),
                        _ => None,
                    };
                let mut headers = HeaderMap::new();
                for (name, value) in &w.headers {
                    // Checked by the api on the way in; skip anything that
                    // no longer parses rather than fail the delivery.
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) {
                        headers.insert(n, v);
                    }
                }
                Some(Arc::new(WebhookConfig {
                    id: w.id,
                    tenant_id: w.tenant_id,
                    url: w.url,
                    secret,
                    previous_secret,
                    headers,
                    timeout: Duration::from_secs(u64::try_from(w.timeout_seconds).unwrap_or(10)),
                    verify_ssl: w.verify_ssl,
                    is_active: w.is_active,
                    retry_attempts: u32::try_from(w.retry_attempts).unwrap_or(0),
                    rate_limit: w.rate_limit.and_then(|r| u32::try_from(r).ok()),
                    retry_backoff: Duration::from_secs(
                        u64::try_from(w.retry_backoff_seconds).unwrap_or(60),
                    ),
                }))
            }
        };
        self.cache.store(version, id, entry.clone());
        Ok(entry)
    }
}
