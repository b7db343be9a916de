//! The safety net under the retry queues. Postgres is the record and the
//! broker only the schedule: a delivery waiting for a retry whose due time
//! is long past lost its message somewhere (a broker failure while it was
//! parked), so the sweeper publishes it again. A worker drops a message
//! whose attempt already happened, so a late original costs nothing.

use std::time::Duration;

use deadpool_postgres::Pool;
use herald_shared::amqp::{Publisher, Topology};
use herald_shared::db::deliveries;
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Deliveries republished per round.
const BATCH: i64 = 500;

#[derive(Debug)]
pub struct Sweeper {
    pub pool: Pool,
    pub publisher: Publisher,
    pub topology: Topology,
    /// How far past its due time a retry must be to count as lost.
    pub grace: Duration,
    pub interval: Duration,
}

impl Sweeper {
    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        every(self.interval, &shutdown, || async {
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(count = n, "republished overdue retries"),
                Err(e) => tracing::warn!(error.message = %e, "sweep failed; next round will retry"),
            }
        })
        .await;
    }

    /// One round: answers how many deliveries were republished.
    ///
    /// # Errors
    /// A database or broker error; claimed rows whose messages did not go
    /// out are due again after `grace`.
    pub async fn sweep(&self) -> anyhow::Result<usize> {
        let client = self.pool.get().await?;
        let mut total = 0;
        loop {
            let ids = deliveries::claim_overdue(&client, self.grace, BATCH).await?;
            if ids.is_empty() {
                return Ok(total);
            }
            let messages = deliveries::messages_for(&client, &ids, false).await?;
            // Late already; behind live traffic.
            self.publisher
                .publish_deliveries(
                    &self.topology,
                    &messages,
                    herald_shared::amqp::fairness::BULK,
                )
                .await?;
            total += ids.len();
        }
    }
}
