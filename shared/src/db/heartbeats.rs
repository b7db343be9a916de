//! Worker heartbeats: how many workers are alive, so that a webhook's rate
//! limit can be split between them.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::DbResult;

/// A worker not seen for this long no longer counts as alive.
pub const LIVE_WITHIN: Duration = Duration::from_secs(6);

/// Records that `id` is alive and answers how many workers are (itself
/// included).
///
/// # Errors
/// A database error.
pub async fn beat(client: &impl GenericClient, id: Uuid) -> DbResult<i64> {
    client
        .execute(
            "INSERT INTO worker_heartbeats (id, seen_at) VALUES ($1, now())
             ON CONFLICT (id) DO UPDATE SET seen_at = now()",
            &[&id],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM worker_heartbeats WHERE seen_at > now() - make_interval(secs => $1)",
            &[&LIVE_WITHIN.as_secs_f64()],
        )
        .await?;
    // Long-dead workers (killed without a goodbye) are forgotten.
    client
        .execute(
            "DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 hour'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// A stopping worker takes itself off the count.
///
/// # Errors
/// A database error.
pub async fn goodbye(client: &impl GenericClient, id: Uuid) -> DbResult<()> {
    client
        .execute("DELETE FROM worker_heartbeats WHERE id = $1", &[&id])
        .await?;
    Ok(())
}
