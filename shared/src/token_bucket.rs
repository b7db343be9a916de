//! Token buckets keyed by tenant or webhook: `rate` tokens a second up to
//! `burst`, spent one cost at a time. Idle buckets are dropped when the map
//! grows, so the memory stays bounded whatever the keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys tracked at most; idle buckets go first when it fills.
const MAX_KEYS: usize = 100_000;
/// A bucket idle this long is full again, and may be dropped.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct TokenBuckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Copy> TokenBuckets<K> {
    #[must_use]
    pub fn new() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends `cost` tokens of `key`'s bucket if it holds them; otherwise
    /// answers how long until it will.
    ///
    /// # Errors
    /// The wait until the bucket holds `cost` (never, if `cost` is more
    /// than `burst`: then the wait is a second's worth).
    pub fn take(
        &self,
        key: K,
        rate: f64,
        burst: f64,
        cost: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_KEYS {
            buckets.retain(|_, b| now.saturating_duration_since(b.last) < IDLE);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else if rate > 0.0 && cost <= burst {
            Err(Duration::from_secs_f64((cost - bucket.tokens) / rate))
        } else {
            Err(Duration::from_secs(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_refills_and_keeps_keys_apart() {
        let buckets = TokenBuckets::new();
        let t = Instant::now();
        for _ in 0..5 {
            assert!(buckets.take(1, 5.0, 5.0, 1.0, t).is_ok());
        }
        assert_eq!(
            buckets.take(1, 5.0, 5.0, 1.0, t),
            Err(Duration::from_millis(200))
        );
        assert!(
            buckets.take(2, 5.0, 5.0, 1.0, t).is_ok(),
            "another key is full"
        );
        assert!(
            buckets
                .take(1, 5.0, 5.0, 1.0, t + Duration::from_millis(200))
                .is_ok()
        );
        assert!(
            buckets
                .take(1, 5.0, 5.0, 1.0, t + Duration::from_secs(100))
                .is_ok(),
            "refilled, never past the burst"
        );
        assert!(
            buckets.take(3, 5.0, 5.0, 6.0, t).is_err(),
            "more than the burst"
        );
    }
}
