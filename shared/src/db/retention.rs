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

/// How long a detach waits for its lock (it conflicts only with other
/// schema changes and vacuum of the parent, never with reads or writes)
/// before the next round tries again.
const DETACH_LOCK_TIMEOUT: &str = "10s";

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

/// Drops the partitions of every day that ended at or before `cutoff`.
/// Each partition is first detached with `DETACH PARTITION … CONCURRENTLY`,
/// which never blocks the inserts and reads on the parent table, then
/// dropped alone. A detach left pending by a crash is finished first, and a
/// table left detached is dropped.
///
/// # Errors
/// A database error.
pub async fn drop_expired(
    client: &mut deadpool_postgres::Object,
    cutoff: DateTime<Utc>,
) -> DbResult<Dropped> {
    // A day D holds [D, D + 1): all of it is past the cutoff when D + 1 ≤
    // cutoff, that is when D is before the cutoff's own day.
    let last_kept = cutoff.date_naive();
    let rows = client
        .query(
            "SELECT c.relname, i.inhparent::regclass::text, coalesce(i.inhdetachpending, false)
             FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
             WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
               AND c.relname ~ '^(events|deliveries|delivery_attempts)_p[0-9]{8}$'
               AND to_date(right(c.relname, 8), 'YYYYMMDD') < $1
             ORDER BY right(c.relname, 8), c.relname DESC",
            &[&last_kept],
        )
        .await?;
    let mut out = Dropped::default();
    for row in &rows {
        let table: &str = row.get(0);
        let parent: Option<&str> = row.get(1);
        let pending: bool = row.get(2);
        if let Some(parent) = parent {
            let how = if pending { "FINALIZE" } else { "CONCURRENTLY" };
            // Statements of their own: a detach made concurrently cannot
            // run inside a transaction block.
            client
                .batch_execute(&format!("SET lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
                .await?;
            let detached = client
                .batch_execute(&format!(
                    "ALTER TABLE {parent} DETACH PARTITION {table} {how}"
                ))
                .await;
            client.batch_execute("RESET lock_timeout").await?;
            if let Err(e) = detached {
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                    out.busy = true;
                    return Ok(out);
                }
                return Err(e.into());
            }
        }
        client.batch_execute(&format!("DROP TABLE {table}")).await?;
        if let Some(day) = table
            .strip_prefix("events_p")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        {
            out.days.push(day);
        }
    }
    Ok(out)
}
