//! Retention by day partitions (migration V14): a UTC day's events,
//! deliveries and attempts live in that day's three partitions, created
//! ahead of time and dropped whole once the entire day is past retention.
//! Dropping a table writes almost no WAL and leaves nothing for vacuum,
//! where deleting the same rows would write and then vacuum every one.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;

use super::DbResult;

/// Days of partitions kept ready ahead of today: a dispatcher that is down
/// this long still finds tomorrow's partitions when it returns, and any
/// process that starts creates them too.
pub const DAYS_AHEAD: i32 = 7;

/// How long a partition drop waits for its lock before giving up until the
/// next round: the drop needs the parent tables briefly to itself, and
/// waiting longer would hold up the inserts queued behind it.
const DROP_LOCK_TIMEOUT: &str = "100ms";

/// Creates the partitions of today (UTC) through [`DAYS_AHEAD`] days ahead
/// that are missing; answers how many days it created.
///
/// # Errors
/// A database error.
pub async fn ensure_partitions(client: &impl GenericClient) -> DbResult<i32> {
    ensure_days(client, Utc::now().date_naive(), DAYS_AHEAD).await
}

/// Creates the partitions of `first` and the `ahead` days after it that
/// are missing; answers how many days it created.
///
/// # Errors
/// A database error.
pub async fn ensure_days(
    client: &impl GenericClient,
    first: NaiveDate,
    ahead: i32,
) -> DbResult<i32> {
    let row = client
        .query_one(
            "SELECT herald_ensure_partitions($1::date, $1::date + $2::int4)",
            &[&first, &ahead],
        )
        .await?;
    Ok(row.get(0))
}

/// The days that have partitions, oldest first.
///
/// # Errors
/// A database error.
pub async fn partition_days(client: &impl GenericClient) -> DbResult<Vec<NaiveDate>> {
    let rows = client.query("SELECT herald_partition_days()", &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What a round of retention did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Days whose partitions were dropped.
    pub days: Vec<NaiveDate>,
    /// A drop that could not take its lock in time (the next round
    /// tries again).
    pub busy: bool,
}

/// Drops the partitions of every day that ended at or before `cutoff`:
/// each day's three tables in one short transaction that gives up after
/// [`DROP_LOCK_TIMEOUT`] rather than hold up the hot path.
///
/// # Errors
/// A database error other than a lock timeout.
pub async fn drop_expired(
    client: &mut deadpool_postgres::Object,
    cutoff: DateTime<Utc>,
) -> DbResult<Dropped> {
    // A day D holds [D, D + 1): all of it is past the cutoff when D + 1 ≤
    // cutoff, that is when D is before the cutoff's own day.
    let last_kept = cutoff.date_naive();
    let mut out = Dropped::default();
    for day in partition_days(&*client).await? {
        if day >= last_kept {
            break;
        }
        let name = day.format("%Y%m%d");
        let tx = client.transaction().await?;
        let dropped = tx
            .batch_execute(&format!(
                "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}';
                 DROP TABLE delivery_attempts_p{name}, deliveries_p{name}, events_p{name}"
            ))
            .await;
        match dropped {
            Ok(()) => {
                tx.commit().await?;
                out.days.push(day);
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                out.busy = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
