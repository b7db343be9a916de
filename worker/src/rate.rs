//! Per-webhook rate limits (`rate_limit`, deliveries per second) enforced
//! across every worker replica together. Each worker takes an equal share
//! of the limit by the live worker count from the heartbeat table, and
//! spends it from a token bucket (one second of burst); a delivery with no
//! token waits, not counted as an attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use herald_shared::db::heartbeats;
use herald_shared::runtime::periodic::every;
use herald_shared::token_bucket::TokenBuckets;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a worker beats (well inside [`heartbeats::LIVE_WITHIN`]).
const BEAT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct RateLimiter {
    /// Live workers, this one included (at least 1).
    live_workers: Arc<AtomicUsize>,
    buckets: TokenBuckets<Uuid>,
}

impl RateLimiter {
    #[must_use]
    pub fn new() -> Self {
        Self {
            live_workers: Arc::new(AtomicUsize::new(1)),
            buckets: TokenBuckets::new(),
        }
    }

    /// `Ok` when a delivery to `webhook` may go now under `limit`
    /// (deliveries per second across all workers); `Err(wait)` otherwise.
    ///
    /// # Errors
    /// How long until this worker has a token for the webhook.
    pub fn check(&self, webhook: Uuid, limit: Option<u32>, now: Instant) -> Result<(), Duration> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let workers = self.live_workers.load(Ordering::Acquire).max(1);
        #[allow(clippy::cast_precision_loss)]
        let rate = f64::from(limit) / workers as f64;
        // One second of burst, and never less than one delivery.
        self.buckets.take(webhook, rate, rate.max(1.0), 1.0, now)
    }

    /// Beats this worker's heart every two seconds until `shutdown`,
    /// keeping the live worker count current; says goodbye at the end.
    pub async fn heartbeat(&self, pool: Pool, shutdown: CancellationToken) {
        let id = Uuid::now_v7();
        every(BEAT_EVERY, &shutdown, || async {
            let live = match pool.get().await {
                Ok(client) => heartbeats::beat(&client, id).await.ok(),
                Err(_) => None,
            };
            // While the database is away the last count stands.
            if let Some(n) = live {
                self.live_workers
                    .store(usize::try_from(n).unwrap_or(1).max(1), Ordering::Release);
            }
        })
        .await;
        if let Ok(client) = pool.get().await {
            let _ = heartbeats::goodbye(&client, id).await;
        }
    }

    #[cfg(test)]
    fn set_live_workers(&self, n: usize) {
        self.live_workers.store(n, Ordering::Release);
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deliveries admitted over `seconds`, trying every 10 ms.
    fn admitted(limiter: &RateLimiter, hook: Uuid, limit: u32, seconds: u64) -> usize {
        let start = Instant::now();
        (0..seconds * 100)
            .filter(|i| {
                limiter
                    .check(hook, Some(limit), start + Duration::from_millis(i * 10))
                    .is_ok()
            })
            .count()
    }

    #[test]
    fn holds_the_rate_after_a_one_second_burst() {
        let limiter = RateLimiter::new();
        // Just under 10 s at 5/s, plus the first second's burst of 5.
        let n = admitted(&limiter, Uuid::now_v7(), 5, 10);
        assert!((54..=55).contains(&n), "{n}");
        assert!(limiter.check(Uuid::now_v7(), None, Instant::now()).is_ok());
    }

    #[test]
    fn splits_the_limit_between_live_workers() {
        let limiter = RateLimiter::new();
        limiter.set_live_workers(4);
        // 2/s shared by four workers: half a delivery per second here.
        let n = admitted(&limiter, Uuid::now_v7(), 2, 20);
        assert!((10..=11).contains(&n), "{n}");
        let hook = Uuid::now_v7();
        let t = Instant::now();
        assert!(limiter.check(hook, Some(2), t).is_ok());
        assert_eq!(limiter.check(hook, Some(2), t), Err(Duration::from_secs(2)));
    }
}
