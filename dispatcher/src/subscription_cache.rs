//! Which webhooks of a tenant subscribe to what, cached per tenant. An
//! entry is trusted only while the configuration version it was loaded
//! under is current, so a webhook created, edited, disabled or deleted is
//! seen within the version poll interval (0.5 s) on every replica.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use herald_shared::db::config_version::{VersionWatch, VersionedCache};
use herald_shared::db::{DbResult, tenants, webhooks};
use herald_shared::filter::Filter;
use herald_shared::models::{EventPattern, EventType};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A tenant's subscriptions, indexed so that matching an event costs a
/// few hash look-ups (one per segment of its type) however many webhooks
/// the tenant has.
#[derive(Debug, Default)]
pub struct TenantSubscriptions {
    /// False when no such tenant exists.
    pub exists: bool,
    /// Webhooks subscribed to `*`.
    all: Vec<Uuid>,
    /// By exact event type.
    exact: HashMap<String, Vec<Uuid>>,
    /// By prefix, dot included (`invoice.` for `invoice.*`).
    prefix: HashMap<String, Vec<Uuid>>,
    /// The payload filters of the webhooks that have one, compiled.
    filters: HashMap<Uuid, Filter>,
}

impl TenantSubscriptions {
    /// Indexes `(webhook, patterns)`. Stored patterns were checked on the
    /// way in; one that no longer parses matches nothing rather than
    /// everything.
    fn new(exists: bool, subscriptions: Vec<webhooks::Subscription>) -> Self {
        let mut index = Self {
            exists,
            ..Self::default()
        };
        for s in subscriptions {
            // Checked when saved; one that no longer compiles (a newer
            // parser) lets nothing through rather than everything.
            if let Some(expression) = &s.filter {
                match Filter::compile(expression) {
                    Ok(f) => {
                        index.filters.insert(s.webhook_id, f);
                    }
                    Err(e) => {
                        tracing::warn!(webhook_id = %s.webhook_id, error.message = %e,
                            "a stored filter no longer compiles; the webhook gets no events until it is saved again");
                        continue;
                    }
                }
            }
            for pattern in s
                .event_types
                .iter()
                .filter_map(|p| EventPattern::parse(p).ok())
            {
                match pattern {
                    EventPattern::All => index.all.push(s.webhook_id),
                    EventPattern::Exact(t) => index.exact.entry(t).or_default().push(s.webhook_id),
                    EventPattern::Prefix(p) => {
                        index.prefix.entry(p).or_default().push(s.webhook_id)
                    }
                }
            }
        }
        index
    }

    /// The webhooks whose patterns match the event type, each once.
    #[must_use]
    pub fn matching(&self, event_type: &EventType) -> Vec<Uuid> {
        let t = event_type.as_str();
        let mut found: Vec<Uuid> = Vec::new();
        // `*` never picks up Herald's own operational events.
        if !event_type.is_operational() {
            found.extend(&self.all);
        }
        if let Some(ids) = self.exact.get(t) {
            found.extend(ids);
        }
        // Every prefix of the type that ends at a dot: `a.`, `a.b.`, …
        for (i, _) in t.match_indices('.') {
            if let Some(ids) = self.prefix.get(&t[..=i]) {
                found.extend(ids);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Keeps the webhooks whose filter `data` passes (those without one
    /// stay). The data is parsed once, and only when a filter needs it;
    /// data that does not parse passes no filter.
    pub fn filter(&self, matching: &mut Vec<Uuid>, data: &RawValue) {
        if self.filters.is_empty() || !matching.iter().any(|w| self.filters.contains_key(w)) {
            return;
        }
        let wrapped = serde_json::from_str(data.get()).map(herald_shared::filter::wrap);
        matching.retain(|w| match (self.filters.get(w), &wrapped) {
            (None, _) => true,
            (Some(f), Ok(data)) => f.matches(data),
            (Some(_), Err(_)) => false,
        });
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
        let entry = Arc::new(self.load(tenant_id).await?);
        self.cache.store(version, tenant_id, Arc::clone(&entry));
        Ok(entry)
    }

    /// The tenant's subscriptions from the database, not cached: for
    /// Herald's own events, which mostly follow a change to a webhook and
    /// would otherwise cache the tenant as it stood a moment before the
    /// next change (and the events its producer sends right after).
    ///
    /// # Errors
    /// A database error.
    pub async fn uncached(&self, tenant_id: Uuid) -> DbResult<Arc<TenantSubscriptions>> {
        self.load(tenant_id).await.map(Arc::new)
    }

    async fn load(&self, tenant_id: Uuid) -> DbResult<TenantSubscriptions> {
        let client = self.pool.get().await?;
        let (exists, subs) = tokio::try_join!(
            tenants::tenant_exists(&client, tenant_id),
            webhooks::active_subscriptions(&client, tenant_id)
        )?;
        Ok(TenantSubscriptions::new(exists, subs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(patterns: &[&str]) -> webhooks::Subscription {
        webhooks::Subscription {
            webhook_id: Uuid::now_v7(),
            event_types: patterns.iter().map(|p| (*p).to_owned()).collect(),
            filter: None,
        }
    }

    #[test]
    fn filters_keep_only_the_webhooks_whose_expression_holds() {
        let mut big = sub(&["invoice.*"]);
        big.filter = Some("@.amount > 1000 && @.currency == 'EUR'".to_owned());
        let mut broken = sub(&["invoice.*"]);
        broken.filter = Some("@..amount".to_owned());
        let plain = sub(&["invoice.*"]);
        let (big_id, plain_id) = (big.webhook_id, plain.webhook_id);
        let index = TenantSubscriptions::new(true, vec![big, broken, plain]);
        let paid = EventType::parse("invoice.paid").unwrap();
        let matched = |data: &str| {
            let mut m = index.matching(&paid);
            index.filter(&mut m, &RawValue::from_string(data.to_owned()).unwrap());
            m
        };
        let mut both = vec![big_id, plain_id];
        both.sort_unstable();
        assert_eq!(matched(r#"{"amount": 5000, "currency": "EUR"}"#), both);
        assert_eq!(matched(r#"{"amount": 5, "currency": "EUR"}"#), [plain_id]);
        assert_eq!(matched("[]"), [plain_id]);
    }

    /// The index answers what matching every pattern one by one answers.
    #[test]
    fn the_index_agrees_with_the_patterns() {
        let subs = vec![
            sub(&["*"]),
            sub(&["invoice.*"]),
            sub(&["invoice.created"]),
            sub(&["invoice.*", "invoice.created", "*"]),
            sub(&["invoice.line.*"]),
            sub(&["order.*", "webhook.disabled"]),
            sub(&["webhook.*"]),
            sub(&["invoices.*", "invoice"]),
        ];
        let index = TenantSubscriptions::new(true, subs.clone());
        for t in [
            "invoice.created",
            "invoice.line.added",
            "invoice",
            "invoices.x",
            "order.shipped",
            "webhook.disabled",
            "delivery.exhausted",
            "other",
        ] {
            let event_type = EventType::parse(t).unwrap();
            let mut expected: Vec<Uuid> = subs
                .iter()
                .filter(|s| {
                    s.event_types
                        .iter()
                        .any(|p| EventPattern::parse(p).unwrap().matches(&event_type))
                })
                .map(|s| s.webhook_id)
                .collect();
            expected.sort_unstable();
            assert_eq!(index.matching(&event_type), expected, "{t}");
        }
    }
}
