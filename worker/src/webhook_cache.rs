//! Webhook configuration as the worker needs it (URL, opened secret,
//! headers, timeout: [`WebhookConfig`]), cached per webhook and trusted
//! only while the configuration version it was loaded under is current.

use std::sync::Arc;

use deadpool_postgres::Pool;
pub use herald_delivery::sender::{LoadError, WebhookConfig};
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::{VersionWatch, VersionedCache};
use herald_shared::db::webhooks;
use herald_shared::models::WebhookId;
use uuid::Uuid;

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

    /// The webhook, or `None` when it no longer exists.
    ///
    /// # Errors
    /// A database error, or a secret sealed under another key.
    pub async fn get(&self, id: WebhookId) -> Result<Option<Arc<WebhookConfig>>, LoadError> {
        let id = id.get();
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
            Some(w) => Some(Arc::new(WebhookConfig::open(w, &self.sealer)?)),
        };
        self.cache.store(version, id, entry.clone());
        Ok(entry)
    }
}
