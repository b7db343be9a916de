//! The safety net under the retry queues. Postgres is the record and the
//! broker only the schedule: a delivery waiting for a retry whose due time
//! is long past lost its message somewhere (a broker failure while it was
//! parked), so the sweeper publishes it again. A worker drops a message
//! whose attempt already happened, so a late original costs nothing.
//!
//! With transient delivery messages (`amqp.delivery_messages`), a new
//! delivery's message lives only in the broker's memory, and a broker
//! restart loses it. The sweeper then watches the broker's epoch: a
//! non-durable queue (`<prefix>.epoch`) that the broker forgets when it
//! restarts, with the one message the sweeper leaves in it. Every
//! [`EPOCH_CHECK`] it declares the queue; if the queue holds no message
//! (the broker restarted, or this is its first start), it publishes again
//! (persistent, flagged so that the worker looks before sending) every
//! delivery still waiting for its first attempt, and only then leaves the
//! message, on the connection it found the queue empty on: if that
//! connection was lost meanwhile (the broker restarted again), the publish
//! fails and the next check sweeps again. A sweeper that stops midway
//! leaves the queue empty, so another (or the next) sweeps again: a
//! delivery may be published twice, never lost.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use herald_shared::amqp::{Publisher, Topology, fairness};
use herald_shared::db::deliveries;
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Deliveries republished per round.
const BATCH: i64 = 500;

/// How often the broker's epoch is checked (with transient delivery
/// messages).
pub const EPOCH_CHECK: Duration = Duration::from_secs(2);

/// Held (for its transaction) by the dispatcher sweeping after a broker
/// restart, so that several dispatchers do not each publish every pending
/// delivery again.
const EPOCH_SWEEP_LOCK: i64 = 0x6865_7261_6c64_0001;

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
    /// Sweeps every `interval`, and with transient delivery messages checks
    /// the broker's epoch every [`EPOCH_CHECK`], until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let retries = every(self.interval, &shutdown, || async {
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(count = n, "republished overdue retries"),
                Err(e) => tracing::warn!(error.message = %e, "sweep failed; next round will retry"),
            }
        });
        let epoch = async {
            if self.topology.transient_deliveries() {
                every(EPOCH_CHECK, &shutdown, || self.epoch_round()).await;
            }
        };
        tokio::join!(retries, epoch);
    }

    /// One epoch check, its outcome logged (a failure is tried again at
    /// the next). The dispatcher makes one before it consumes, so that on a
    /// broker's first start nothing it publishes is swept again.
    pub async fn epoch_round(&self) {
        if !self.topology.transient_deliveries() {
            return;
        }
        match self.check_epoch().await {
            Ok(None) => {}
            // A broker's first start, or no delivery was waiting.
            Ok(Some(0)) => tracing::info!("marked the broker's epoch"),
            Ok(Some(n)) => tracing::warn!(
                count = n,
                "the broker restarted: republished the deliveries whose transient messages it may have lost"
            ),
            Err(e) => {
                tracing::warn!(error.message = %e, "epoch check failed; next round will retry");
            }
        }
    }

    /// One epoch check: `None` when the broker has lost nothing since the
    /// last, else how many pending deliveries were published again (none
    /// when another dispatcher is at it).
    ///
    /// # Errors
    /// A database or broker error; the epoch queue is then still empty, and
    /// the next check sweeps again.
    pub async fn check_epoch(&self) -> anyhow::Result<Option<usize>> {
        let conn: Arc<lapin::Connection> = self.publisher.connection().await?;
        if self.topology.epoch_intact(&conn).await? {
            return Ok(None);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&EPOCH_SWEEP_LOCK])
            .await?
            .get(0);
        if !locked {
            return Ok(None);
        }
        let ids = deliveries::unattempted_pending(&tx).await?;
        let batch = usize::try_from(BATCH).unwrap_or(1);
        for chunk in ids.chunks(batch) {
            let mut messages = deliveries::messages_for(&tx, chunk, false).await?;
            for m in &mut messages {
                m.republished = true;
            }
            self.publisher
                .publish_deliveries(&self.topology, &messages, fairness::BULK)
                .await?;
        }
        self.topology.mark_epoch(&conn).await?;
        tx.commit().await?;
        Ok(Some(ids.len()))
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
                .publish_deliveries(&self.topology, &messages, fairness::BULK)
                .await?;
            total += ids.len();
        }
    }
}
