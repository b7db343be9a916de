//! Retention: events older than the configured age are deleted with their
//! deliveries and attempts (the foreign keys cascade), oldest first, a
//! small batch per statement so that no lock is held for long and the hot
//! path keeps writing meanwhile.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::DbResult;

/// Deletes up to `batch` events received before `cutoff` (and their
/// deliveries and attempts); answers how many events went.
///
/// # Errors
/// A database error.
pub async fn prune_batch(
    client: &impl GenericClient,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> DbResult<u64> {
    Ok(client
        .execute(
            "DELETE FROM events WHERE (tenant_id, id) IN (
                 SELECT tenant_id, id FROM events WHERE received_at < $1
                 ORDER BY received_at LIMIT $2)",
            &[&cutoff, &batch],
        )
        .await?)
}
