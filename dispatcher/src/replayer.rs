//! Runs replays (`POST /v1/webhooks/{id}/replay`), a batch at a time.
//!
//! Every `interval` each dispatcher takes the running replays no other
//! holds (`FOR UPDATE SKIP LOCKED`), and for each looks at the next
//! [`BATCH`] events of its window: those the webhook takes now and has no
//! successful or pending delivery of get a new delivery, and the replay's
//! cursor and counts move, in one transaction. The delivery messages go out
//! after the commit at the lowest priority, behind every tenant's live
//! traffic; rows whose messages do not go out are due retries, which the
//! sweeper sends. So one replay makes at most [`BATCH`] deliveries per
//! interval (500 a second by default) however large its window: a replay
//! of a million events takes about half an hour and cannot starve live
//! deliveries. A replay whose webhook is disabled waits, without moving,
//! until the webhook is enabled again (or the replay is cancelled).

use std::time::Duration;

use deadpool_postgres::Pool;
use herald_shared::amqp::{Publisher, Topology, fairness};
use herald_shared::db::replays::{self, Taker, Window};
use herald_shared::db::{DbError, deliveries, webhooks};
use herald_shared::runtime::periodic::every;
use tokio_util::sync::CancellationToken;

/// Events one replay looks at per round.
pub const BATCH: i64 = 500;
/// Replays one dispatcher advances per round.
const REPLAYS_PER_ROUND: i64 = 20;

#[derive(Debug)]
pub struct Replayer {
    pub pool: Pool,
    pub publisher: Publisher,
    pub topology: Topology,
    pub interval: Duration,
}

impl Replayer {
    /// Advances replays every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        every(self.interval, &shutdown, || async {
            if let Err(e) = self.round().await {
                tracing::warn!(error.message = %e, "replay round failed; the next round will try again");
            }
        })
        .await;
    }

    /// One round: one batch of each running replay this dispatcher holds.
    ///
    /// # Errors
    /// A database or broker error; what was committed stays, and deliveries
    /// whose messages did not go out are sent by the sweeper.
    pub async fn round(&self) -> anyhow::Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let mut made = Vec::new();
        for replay in replays::claim_running(&tx, REPLAYS_PER_ROUND).await? {
            let Some(webhook) = webhooks::get_by_id(&tx, replay.webhook_id).await? else {
                continue;
            };
            if !webhook.is_active {
                continue;
            }
            let window = Window {
                tenant_id: replay.tenant_id,
                webhook_id: replay.webhook_id,
                since: replay.since,
                until: replay.until,
                event_types: replay.event_types.clone(),
            };
            let Some(taker) = Taker::new(
                &webhook.event_types,
                replay.event_types.as_deref(),
                webhook.filter.as_deref(),
            ) else {
                continue;
            };
            let batch =
                replays::next_batch(&tx, &window, replay.cursor.as_ref(), &taker, BATCH).await?;
            let rows: Vec<deliveries::Redelivery<'_>> = batch
                .to_send
                .iter()
                .map(|d| deliveries::Redelivery {
                    event_id: &d.event_id,
                    event_received_at: d.received_at,
                    event_type: &d.event_type,
                    webhook_id: replay.webhook_id,
                })
                .collect();
            made.extend(deliveries::insert_redeliveries(&tx, replay.tenant_id, &rows).await?);
            replays::advance(&tx, replay.id, &batch).await?;
        }
        tx.commit().await.map_err(DbError::from)?;
        if made.is_empty() {
            return Ok(());
        }
        let messages = deliveries::messages_for(&client, &made, false).await?;
        self.publisher
            .publish_deliveries(&self.topology, &messages, fairness::BULK)
            .await?;
        Ok(())
    }
}
