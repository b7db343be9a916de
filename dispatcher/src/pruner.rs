//! Retention on a schedule: every `interval`, the day partitions ahead are
//! created and the days wholly older than `max_age` are dropped (see
//! `db::retention`); the statistics rollup and expired portal sessions are
//! deleted in batches, and the `wal_flushes` rows of dispatchers gone.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use deadpool_postgres::Pool;
use herald_shared::db::{deliveries, portal, retention, stats};
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Statistics rows deleted per statement.
const BATCH: i64 = 1000;

#[derive(Debug)]
pub struct Pruner {
    pub pool: Pool,
    pub max_age: Duration,
    pub interval: Duration,
}

impl Pruner {
    /// Prunes every `interval` until `shutdown`. Several dispatchers may
    /// prune at once: partitions are created under a lock, a partition
    /// already dropped is not listed again, and rows are deleted once.
    pub async fn run(self, shutdown: CancellationToken) {
        every(self.interval, &shutdown, || async {
            match self.prune(&shutdown).await {
                Ok(days) if days.is_empty() => {}
                Ok(days) => tracing::info!(?days, "dropped the days past retention"),
                Err(e) => tracing::warn!(error.message = %e, "prune failed; next round will retry"),
            }
        })
        .await;
    }

    /// One round: answers the days whose partitions were dropped.
    ///
    /// # Errors
    /// A database error.
    pub async fn prune(&self, shutdown: &CancellationToken) -> anyhow::Result<Vec<NaiveDate>> {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.max_age)?;
        let mut client = self.pool.get().await?;
        retention::ensure_partitions(&client).await?;
        let dropped = retention::drop_expired(&mut client, cutoff).await?;
        if dropped.busy {
            tracing::info!(
                "a partition drop waited too long for its lock; the next round tries again"
            );
        }
        // Statistics are kept for the longest chart (7 days) and a day more.
        let stats_cutoff = Utc::now() - chrono::Duration::days(8);
        while !shutdown.is_cancelled()
            && stats::prune_batch(&client, stats_cutoff, BATCH).await?
                == u64::try_from(BATCH).unwrap_or(u64::MAX)
        {}
        portal::prune_expired(&client).await?;
        deliveries::prune_wal_flushes(&client).await?;
        Ok(dropped.days)
    }
}
