//! Retention on a schedule: every `interval`, events older than `max_age`
//! are deleted in batches (see `db::retention`), until none is left.

use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use herald_shared::db::{portal, retention, stats};
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Events deleted per statement.
const BATCH: i64 = 1000;

#[derive(Debug)]
pub struct Pruner {
    pub pool: Pool,
    pub max_age: Duration,
    pub interval: Duration,
}

impl Pruner {
    /// Prunes every `interval` until `shutdown`. Several dispatchers may
    /// prune at once: they only delete what the other has not.
    pub async fn run(self, shutdown: CancellationToken) {
        every(self.interval, &shutdown, || async {
            match self.prune(&shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "pruned events past retention"),
                Err(e) => tracing::warn!(error.message = %e, "prune failed; next round will retry"),
            }
        })
        .await;
    }

    /// One round: answers how many events were deleted.
    ///
    /// # Errors
    /// A database error.
    pub async fn prune(&self, shutdown: &CancellationToken) -> anyhow::Result<u64> {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.max_age)?;
        let client = self.pool.get().await?;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let n = retention::prune_batch(&client, cutoff, BATCH).await?;
            total += n;
            if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
        // Statistics are kept for the longest chart (7 days) and a day more.
        let stats_cutoff = Utc::now() - chrono::Duration::days(8);
        while !shutdown.is_cancelled()
            && stats::prune_batch(&client, stats_cutoff, BATCH).await?
                == u64::try_from(BATCH).unwrap_or(u64::MAX)
        {}
        portal::prune_expired(&client).await?;
        Ok(total)
    }
}
