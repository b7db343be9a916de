//! Which webhooks of a tenant subscribe to what, cached per tenant. An
//! entry is trusted only while the configuration version it was loaded
//! under is current, so a webhook created, edited, disabled or deleted is
//! seen within the version poll interval (0.5 s) on every replica.

use std::sync::Arc;

use deadpool_postgres::Pool;
use herald_shared::db::config_version::{VersionWatch, VersionedCache};
use herald_shared::db::{DbResult, tenants, webhooks};
use herald_shared::models::{EventPattern, EventType};
use uuid::Uuid;

/// A tenant's subscriptions, patterns parsed once.
#[derive(Debug, Default)]
pub struct TenantSubscriptions {
    /// False when no such tenant exists.
    pub exists: bool,
    webhooks: Vec<(Uuid, Vec<EventPattern>)>,
}

impl TenantSubscriptions {
    /// The webhooks whose patterns match the event type.
    #[must_use]
    pub fn matching(&self, event_type: &EventType) -> Vec<Uuid> {
        self.webhooks
            .iter()
            .filter(|(_, patterns)| patterns.iter().any(|p| p.matches(event_type)))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Tenants cached at most.
const MAX_TENANTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct SubscriptionCache {
    pool: Pool,
    cache: VersionedCache<Uuid, Arc<TenantSubscriptions>>,
}

impl SubscriptionCache {
    #[must_use]
    pub fn new(pool: Pool, watch: VersionWatch) -> Self {
        Self {
            pool,
            cache: VersionedCache::new(watch, MAX_TENANTS),
        }
    }

    /// The tenant's subscriptions, from the cache or the database.
    ///
    /// # Errors
    /// A database error on a cache miss.
    pub async fn get(&self, tenant_id: Uuid) -> DbResult<Arc<TenantSubscriptions>> {
        let version = match self.cache.lookup(&tenant_id) {
            Ok(hit) => return Ok(hit),
            Err(version) => version,
        };
        let client = self.pool.get().await?;
        let (exists, subs) = tokio::try_join!(
            tenants::tenant_exists(&client, tenant_id),
            webhooks::active_subscriptions(&client, tenant_id)
        )?;
        let entry = Arc::new(TenantSubscriptions {
            exists,
            webhooks: subs
                .into_iter()
                .map(|s| {
                    // Stored patterns were checked on the way in; one that no
                    // longer parses matches nothing rather than everything.
                    let patterns = s
                        .event_types
                        .iter()
                        .filter_map(|p| EventPattern::parse(p).ok())
                        .collect();
                    (s.webhook_id, patterns)
                })
                .collect(),
        });
        self.cache.store(version, tenant_id, Arc::clone(&entry));
        Ok(entry)
    }
}
