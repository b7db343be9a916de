//! The configuration version: a counter that triggers bump whenever a
//! webhook, token or tenant changes. Caches poll it (a one-row read every
//! half second) and drop their entries when it moves, which keeps every
//! replica within the 2-second visibility promise without a message bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use prometheus::IntGauge;
use tokio_util::sync::CancellationToken;

use super::DbResult;

/// How often caches look for configuration changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// # Errors
/// A database error.
pub async fn current(client: &impl GenericClient) -> DbResult<i64> {
    let row = client
        .query_one("SELECT version FROM config_version", &[])
        .await?;
    Ok(row.get(0))
}

/// The last version seen, shared with the caches that key on it.
#[derive(Debug, Clone, Default)]
pub struct VersionWatch {
    seen: Arc<AtomicI64>,
    /// Shows the version seen as a metric (`herald_config_version`).
    gauge: Option<IntGauge>,
}

impl VersionWatch {
    /// A watch that also shows the version it has seen on `gauge`.
    #[must_use]
    pub fn reporting(gauge: IntGauge) -> Self {
        Self {
            seen: Arc::default(),
            gauge: Some(gauge),
        }
    }

    fn set(&self, version: i64) {
        self.seen.store(version, Ordering::Release);
        if let Some(gauge) = &self.gauge {
            gauge.set(version);
        }
    }

    /// The latest version known; caches drop entries loaded under an older one.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Polls the version until `shutdown`. A failed poll marks the version
    /// unknown (-1), so caches stop trusting themselves while the database
    /// is away.
    pub fn spawn(&self, pool: Pool, shutdown: CancellationToken) {
        let watch = self.clone();
        tokio::spawn(async move {
            crate::runtime::periodic::every(POLL_INTERVAL, &shutdown, || async {
                let version = match pool.get().await {
                    Ok(client) => current(&client).await.ok(),
                    Err(_) => None,
                };
                watch.set(version.unwrap_or(-1));
            })
            .await;
        });
    }

    /// Reads the version once now (before serving, so the first caches are
    /// keyed correctly).
    ///
    /// # Errors
    /// A database error.
    pub async fn refresh(&self, pool: &Pool) -> DbResult<i64> {
        let client = pool.get().await?;
        let v = current(&client).await?;
        self.set(v);
        Ok(v)
    }
}

/// A map whose entries are trusted only while the configuration version
/// they were loaded under is current: the first lookup after a change
/// misses, and the caller loads afresh. Entries past `max` start the map
/// over, so a flood of distinct keys cannot grow it without bound.
#[derive(Debug)]
pub struct VersionedCache<K, V> {
    watch: VersionWatch,
    max: usize,
    inner: Arc<std::sync::RwLock<Entries<K, V>>>,
}

#[derive(Debug)]
struct Entries<K, V> {
    version: i64,
    map: std::collections::HashMap<K, V>,
}

impl<K, V> Clone for VersionedCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            watch: self.watch.clone(),
            max: self.max,
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> VersionedCache<K, V> {
    #[must_use]
    pub fn new(watch: VersionWatch, max: usize) -> Self {
        Self {
            watch,
            max,
            inner: Arc::new(std::sync::RwLock::new(Entries {
                version: i64::MIN,
                map: std::collections::HashMap::new(),
            })),
        }
    }

    /// The cached value, or on a miss the version to [`store`](Self::store)
    /// a fresh load under (read before loading, so an entry is never newer
    /// than its version claims).
    ///
    /// # Errors
    /// `Err(version)` on a miss.
    pub fn lookup(&self, key: &K) -> Result<V, i64> {
        let version = self.watch.get();
        if version >= 0 {
            let inner = self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if inner.version == version
                && let Some(v) = inner.map.get(key)
            {
                return Ok(v.clone());
            }
        }
        Err(version)
    }

    /// Keeps a value loaded under `version`; nothing is kept while the
    /// version is unknown (the database is away).
    pub fn store(&self, version: i64, key: K, value: V) {
        if version < 0 {
            return;
        }
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.version != version || inner.map.len() >= self.max {
            inner.map.clear();
            inner.version = version;
        }
        inner.map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_only_while_their_version_is_current() {
        let watch = VersionWatch::default();
        let cache: VersionedCache<u32, &str> = VersionedCache::new(watch.clone(), 2);
        watch.seen.store(1, Ordering::Release);
        assert_eq!(cache.lookup(&1), Err(1));
        cache.store(1, 1, "one");
        assert_eq!(cache.lookup(&1), Ok("one"));
        // The configuration moved: the entry is stale.
        watch.seen.store(2, Ordering::Release);
        assert_eq!(cache.lookup(&1), Err(2));
        cache.store(2, 1, "uno");
        assert_eq!(cache.lookup(&1), Ok("uno"));
        // Unknown version (database away): nothing is trusted or kept.
        watch.seen.store(-1, Ordering::Release);
        assert_eq!(cache.lookup(&1), Err(-1));
        cache.store(-1, 3, "three");
        watch.seen.store(2, Ordering::Release);
        assert_eq!(cache.lookup(&3), Err(2));
        // Full: the map starts over.
        cache.store(2, 2, "two");
        cache.store(2, 4, "four");
        assert_eq!(cache.lookup(&1), Err(2));
        assert_eq!(cache.lookup(&4), Ok("four"));
    }
}
