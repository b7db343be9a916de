//! The configuration version: a counter that triggers bump whenever a
//! webhook, token or tenant changes. Caches poll it (a one-row read every
//! half second) and drop their entries when it moves, which keeps every
//! replica within the 2-second visibility promise without a message bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
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
}

impl VersionWatch {
    /// The latest version known; caches drop entries loaded under an older one.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Polls the version until `shutdown`. A failed poll marks the version
    /// unknown (-1), so caches stop trusting themselves while the database
    /// is away.
    pub fn spawn(&self, pool: Pool, shutdown: CancellationToken) {
        let seen = Arc::clone(&self.seen);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let version = match pool.get().await {
                    Ok(client) => current(&client).await.ok(),
                    Err(_) => None,
                };
                seen.store(version.unwrap_or(-1), Ordering::Release);
            }
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
        self.seen.store(v, Ordering::Release);
        Ok(v)
    }
}
