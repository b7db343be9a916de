//! Per-webhook statistics: attempts counted by outcome and by duration, one
//! row per webhook and minute (`webhook_stats_minutely`), written in the
//! statement that records the attempts. A chart sums the minutes of its
//! buckets, so a week reads at most 10,080 rows however many deliveries
//! there were.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;

use super::DbResult;

/// Upper bounds (ms) of the latency buckets; one more counts the rest.
pub const LATENCY_BOUNDS_MS: [f64; 10] = [
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
/// Latency buckets, the last one unbounded.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The SQL of an attempt histogram over `column` (milliseconds) in the
/// [`LATENCY_BOUNDS_MS`] buckets, for an aggregate query.
#[must_use]
pub fn histogram_sql(column: &str) -> String {
    let mut parts = Vec::with_capacity(LATENCY_BUCKETS);
    let mut lower: Option<f64> = None;
    for upper in LATENCY_BOUNDS_MS {
        parts.push(match lower {
            None => format!("count(*) FILTER (WHERE {column} <= {upper})"),
            Some(l) => format!("count(*) FILTER (WHERE {column} > {l} AND {column} <= {upper})"),
        });
        lower = Some(upper);
    }
    if let Some(l) = lower {
        parts.push(format!("count(*) FILTER (WHERE {column} > {l})"));
    }
    format!("ARRAY[{}]", parts.join(", "))
}

/// Attempts in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    /// Attempts that delivered.
    pub succeeded: i64,
    /// Failed attempts with a retry to come.
    pub retried: i64,
    /// Failed attempts that ended their delivery.
    pub failed: i64,
    /// Attempts by duration, per [`LATENCY_BOUNDS_MS`].
    pub latency: [i64; LATENCY_BUCKETS],
}

impl Bucket {
    #[must_use]
    pub const fn empty(start: DateTime<Utc>) -> Self {
        Self {
            start,
            succeeded: 0,
            retried: 0,
            failed: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }

    /// Adds another bucket's counts to this one.
    pub fn add(&mut self, other: &Self) {
        self.succeeded += other.succeeded;
        self.retried += other.retried;
        self.failed += other.failed;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
    }

    /// The `q` quantile (0–1) of the attempts' durations in ms, read off
    /// the buckets with linear interpolation inside the one it falls in, as
    /// Prometheus does; `None` without attempts. Past the last bound it
    /// answers that bound.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total: i64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0.0;
        for (i, &count) in self.latency.iter().enumerate() {
            let next = seen + count as f64;
            if next >= rank && count > 0 {
                let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                    return LATENCY_BOUNDS_MS.last().copied();
                };
                let lower = if i == 0 {
                    0.0
                } else {
                    LATENCY_BOUNDS_MS[i - 1]
                };
                return Some(lower + (upper - lower) * ((rank - seen) / count as f64));
            }
            seen = next;
        }
        LATENCY_BOUNDS_MS.last().copied()
    }
}

/// The webhook's attempts from `since` on, in buckets of `width` starting
/// at `since`, every bucket present (empty ones too), oldest first.
///
/// # Errors
/// A database error.
pub async fn buckets(
    client: &impl GenericClient,
    webhook_id: uuid::Uuid,
    since: DateTime<Utc>,
    width: Duration,
    count: usize,
) -> DbResult<Vec<Bucket>> {
    let latency: Vec<String> = (1..=LATENCY_BUCKETS)
        .map(|i| format!("sum(latency[{i}])::int8"))
        .collect();
    let sql = format!(
        "SELECT date_bin($3::int8 * interval '1 second', minute, $2) AS b,
                sum(succeeded)::int8, sum(retried)::int8, sum(failed)::int8, {}
         FROM webhook_stats_minutely
         WHERE webhook_id = $1 AND minute >= $2
         GROUP BY 1 ORDER BY 1",
        latency.join(", ")
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&webhook_id, &since, &width.num_seconds()])
        .await?;
    let mut out: Vec<Bucket> = (0..count)
        .map(|i| Bucket::empty(since + width * i32::try_from(i).unwrap_or(i32::MAX)))
        .collect();
    for row in rows {
        let start: DateTime<Utc> = row.get(0);
        let index = (start - since).num_seconds() / width.num_seconds().max(1);
        let Some(slot) = usize::try_from(index).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        slot.succeeded = row.get(1);
        slot.retried = row.get(2);
        slot.failed = row.get(3);
        for (j, l) in slot.latency.iter_mut().enumerate() {
            *l = row.get::<_, Option<i64>>(4 + j).unwrap_or_default();
        }
    }
    Ok(out)
}

/// Deletes minutes older than `cutoff`, up to `batch` rows; answers how
/// many went.
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
            "DELETE FROM webhook_stats_minutely WHERE (webhook_id, minute) IN (
                 SELECT webhook_id, minute FROM webhook_stats_minutely WHERE minute < $1 LIMIT $2)",
            &[&cutoff, &batch],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_latency(latency: [i64; LATENCY_BUCKETS]) -> Bucket {
        Bucket {
            latency,
            ..Bucket::empty(Utc::now())
        }
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        assert_eq!(
            with_latency([0; LATENCY_BUCKETS]).latency_quantile(0.5),
            None
        );
        // 100 attempts of at most 10 ms: the median is half-way.
        let mut l = [0; LATENCY_BUCKETS];
        l[0] = 100;
        assert_eq!(with_latency(l).latency_quantile(0.5), Some(5.0));
        // 90 fast, 10 between 250 and 500 ms: p95 half-way through that one.
        let mut l = [0; LATENCY_BUCKETS];
        l[0] = 90;
        l[5] = 10;
        assert_eq!(with_latency(l).latency_quantile(0.95), Some(375.0));
        assert_eq!(with_latency(l).latency_quantile(0.5), Some(50.0 / 9.0));
        // Past the last bound: the bound.
        let mut l = [0; LATENCY_BUCKETS];
        l[LATENCY_BUCKETS - 1] = 3;
        assert_eq!(with_latency(l).latency_quantile(0.99), Some(10000.0));
    }

    #[test]
    fn the_histogram_has_one_count_per_bucket() {
        let sql = histogram_sql("d");
        assert_eq!(sql.matches("count(*)").count(), LATENCY_BUCKETS);
        assert!(sql.starts_with("ARRAY[count(*) FILTER (WHERE d <= 10)"));
        assert!(sql.ends_with("count(*) FILTER (WHERE d > 10000)]"));
    }

    #[test]
    fn buckets_add_up() {
        let mut a = with_latency([1; LATENCY_BUCKETS]);
        a.succeeded = 2;
        let mut b = with_latency([2; LATENCY_BUCKETS]);
        b.failed = 1;
        a.add(&b);
        assert_eq!((a.succeeded, a.failed, a.latency[3]), (2, 1, 3));
    }
}
