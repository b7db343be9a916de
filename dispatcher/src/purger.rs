//! Removing deleted tenants: `DELETE /v1/tenants/{id}` marks a tenant (its
//! tokens go and its webhooks stop at once), and every `interval` the
//! purger removes what it held, one short statement at a time (deliveries
//! with their attempts, events, webhooks, then the tenant), so no lock is
//! held for long and the other tenants' traffic goes on. Several
//! dispatchers may purge at once; a dispatcher stopped half-way leaves the
//! rest to the next round.

use std::time::Duration;

use deadpool_postgres::Pool;
use herald_shared::db::tenants;
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Rows removed per statement at most.
const BATCH: i64 = 1000;

#[derive(Debug)]
pub struct Purger {
    pub pool: Pool,
    pub interval: Duration,
}

impl Purger {
    /// Purges every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        every(self.interval, &shutdown, || async {
            match self.purge(&shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "removed deleted tenants' data"),
                Err(e) => tracing::warn!(error.message = %e, "purge failed; next round will retry"),
            }
        })
        .await;
    }

    /// One round, until nothing is left: answers how many rows went.
    ///
    /// # Errors
    /// A database error.
    pub async fn purge(&self, shutdown: &CancellationToken) -> anyhow::Result<u64> {
        let client = self.pool.get().await?;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let n = tenants::purge_step(&client, BATCH).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(total)
    }
}
