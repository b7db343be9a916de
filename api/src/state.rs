//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;
use herald_shared::amqp::{Publisher, Topology};
use herald_shared::config::Settings;
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::VersionWatch;
use herald_shared::metrics::Metrics;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub sealer: Sealer,
    pub metrics: Metrics,
    pub tokens: TokenCache,
}

/// Token hash → tenant, so authenticating a request costs no query. Every
/// entry is dropped when the configuration version moves (a revoked token
/// stops working within the version poll interval).
#[derive(Clone, Debug)]
pub struct TokenCache {
    watch: VersionWatch,
    inner: Arc<RwLock<CacheInner>>,
}

#[derive(Debug, Default)]
struct CacheInner {
    version: i64,
    map: HashMap<Vec<u8>, Uuid>,
}

/// Entries beyond this are not cached (a flood of distinct tokens).
const MAX_ENTRIES: usize = 100_000;

impl TokenCache {
    pub fn new(watch: VersionWatch) -> Self {
        Self {
            watch,
            inner: Arc::new(RwLock::new(CacheInner::default())),
        }
    }

    pub fn get(&self, hash: &[u8]) -> Option<Uuid> {
        let version = self.watch.get();
        if version < 0 {
            return None;
        }
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.version != version {
            return None;
        }
        inner.map.get(hash).copied()
    }

    /// Caches a lookup made under `version` (read before the query, so an
    /// entry is never newer than its version says).
    pub fn put(&self, version: i64, hash: Vec<u8>, tenant: Uuid) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.version != version {
            inner.map.clear();
            inner.version = version;
        }
        if inner.map.len() < MAX_ENTRIES {
            inner.map.insert(hash, tenant);
        }
    }

    pub fn version(&self) -> i64 {
        self.watch.get()
    }
}
