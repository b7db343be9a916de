//! One delivery made now, outside the queues, as the api's test call makes
//! it. It takes the same path as every delivery, through the same code: the
//! event and its delivery stored by the dispatcher's inserts, the message
//! built as the dispatcher builds it, the request sent by the worker's
//! [`Sender`], the result decided by [`retry::decide`] (with no retry
//! left: a direct delivery is never retried), and the attempt recorded as
//! the worker records it.

use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;

use crate::sender::{Attempt, Sender, WebhookConfig};
use herald_shared::db::deliveries::{self, AttemptRecord, NewEvent};
use herald_shared::db::{DbError, DbResult};
use herald_shared::delivery::options::RetrySpacing;
use herald_shared::delivery::retry::{self, Policy};
use herald_shared::models::{DeliveryId, DeliveryStatus};

/// What a direct delivery came to.
#[derive(Debug)]
pub struct Delivered {
    pub delivery_id: DeliveryId,
    pub attempt: Attempt,
    /// `success` or `failed`: there is no retry.
    pub status: DeliveryStatus,
}

/// Stores `event` and its delivery to `webhook`, sends it once, and records
/// the attempt. No pooled connection is held while the endpoint answers.
///
/// # Errors
/// The event or its delivery could not be stored (an event with this id
/// exists), or the attempt could not be recorded.
pub async fn deliver_now(
    pool: &Pool,
    sender: &Sender,
    webhook: &WebhookConfig,
    event: &NewEvent<'_>,
) -> DbResult<Delivered> {
    let delivery_id = {
        let mut client = pool.get().await.map_err(DbError::from)?;
        let tx = client.transaction().await?;
        // A test event's id is new: no window to look back over.
        deliveries::insert_events(&tx, std::slice::from_ref(event), Duration::ZERO).await?;
        let created = deliveries::insert_deliveries(&tx, &[event.delivery(webhook.id)]).await?;
        tx.commit().await?;
        created
            .first()
            .map(|c| DeliveryId(c.0))
            .ok_or_else(|| DbError::Conflict {
                constraint: format!("event {} exists", event.id),
            })?
    };
    let mut message = event.message(delivery_id.get(), webhook.id);
    message.manual = true;
    let at = Utc::now();
    let attempt = sender.send(&message, webhook, at, 1).await;
    let no_retry = Policy {
        retry_attempts: 0,
        spacing: RetrySpacing::Schedule { delays_ms: vec![] },
        max_delay: Duration::ZERO,
    };
    let decision = retry::decide(
        attempt.outcome,
        attempt.status_code,
        attempt.retry_after,
        &no_retry,
        1,
        at,
        0.0,
    );
    let client = pool.get().await.map_err(DbError::from)?;
    deliveries::record_attempts(
        &client,
        &[AttemptRecord::new(delivery_id, at, &attempt, &decision)],
    )
    .await?;
    Ok(Delivered {
        delivery_id,
        attempt,
        status: decision.status,
    })
}
