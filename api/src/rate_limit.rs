//! Per-tenant request rate limit (`api.rate_limit_per_second`, off when
//! 0): a token bucket per tenant in each api replica, one second of burst.
//! A request past the limit is answered 429 with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_shared::token_bucket::TokenBuckets;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TenantLimiter {
    per_second: f64,
    buckets: Arc<TokenBuckets<Uuid>>,
}

impl TenantLimiter {
    #[must_use]
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Arc::new(TokenBuckets::new()),
        }
    }

    /// `Ok` when the tenant may make a request now; `Err(wait)` otherwise.
    ///
    /// # Errors
    /// How long until the tenant has a request again.
    pub fn check(&self, tenant: Uuid, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        self.buckets
            .take(tenant, self.per_second, self.per_second, 1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_rate_and_says_how_long_to_wait() {
        let limiter = TenantLimiter::new(5);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(a, t).is_ok());
        }
        assert_eq!(limiter.check(a, t), Err(Duration::from_millis(200)));
        assert!(limiter.check(b, t).is_ok(), "tenants are limited apart");
        assert!(limiter.check(a, t + Duration::from_millis(200)).is_ok());
        assert!(TenantLimiter::new(0).check(a, t).is_ok(), "0 is no limit");
    }
}
