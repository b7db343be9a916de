//! A circuit breaker per endpoint in one worker. After `threshold` failed
//! attempts in a row the breaker opens: deliveries to that endpoint wait
//! (parked, not counted as attempts) instead of burning worker slots on
//! requests that will fail. When the wait is over one delivery goes
//! through as a probe; its success closes the breaker, its failure opens it
//! for twice as long (up to a cap).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Longest a breaker stays open between probes.
const MAX_OPEN: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    first_open: Duration,
    states: Mutex<HashMap<Uuid, State>>,
}

impl Breaker {
    #[must_use]
    pub fn new(threshold: u32, first_open: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            first_open,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when a delivery to `webhook` may go now (possibly as the
    /// probe); `Err(wait)` while the breaker is open.
    ///
    /// # Errors
    /// How long the breaker stays open.
    pub fn admit(&self, webhook: Uuid, now: Instant) -> Result<(), Duration> {
        let mut states = self.lock();
        let Some(state) = states.get_mut(&webhook) else {
            return Ok(());
        };
        if let Some(until) = state.open_until
            && until > now
        {
            return Err(until - now);
        }
        if state.failures >= self.threshold {
            // Half open: this delivery is the probe; the others wait until
            // it has answered.
            state.open_until = Some(now + self.open_for(state.failures));
        }
        Ok(())
    }

    /// Records how an attempt to `webhook` went.
    pub fn record(&self, webhook: Uuid, succeeded: bool, now: Instant) {
        let mut states = self.lock();
        if succeeded {
            states.remove(&webhook);
            return;
        }
        let state = states.entry(webhook).or_default();
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            state.open_until = Some(now + self.open_for(state.failures));
        }
    }

    fn open_for(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(self.threshold).min(16);
        self.first_open.saturating_mul(1 << doublings).min(MAX_OPEN)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, State>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_wait() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        let hook = Uuid::now_v7();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(breaker.admit(hook, t0).is_ok());
            breaker.record(hook, false, t0);
        }
        assert!(breaker.admit(hook, t0).is_ok(), "below the threshold");
        breaker.record(hook, false, t0);
        assert_eq!(breaker.admit(hook, t0), Err(Duration::from_secs(5)), "open");
        assert!(
            breaker.admit(Uuid::now_v7(), t0).is_ok(),
            "other endpoints are not affected"
        );

        let t1 = t0 + Duration::from_secs(5);
        assert!(breaker.admit(hook, t1).is_ok(), "the probe");
        assert!(breaker.admit(hook, t1).is_err(), "one probe at a time");
        breaker.record(hook, false, t1);
        assert_eq!(
            breaker.admit(hook, t1),
            Err(Duration::from_secs(10)),
            "twice as long"
        );

        let t2 = t1 + Duration::from_secs(10);
        assert!(breaker.admit(hook, t2).is_ok());
        breaker.record(hook, true, t2);
        assert!(breaker.admit(hook, t2).is_ok(), "closed after a success");
        assert!(breaker.admit(hook, t2).is_ok());
    }

    #[test]
    fn the_wait_is_capped() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        let hook = Uuid::now_v7();
        let t = Instant::now();
        for _ in 0..40 {
            breaker.record(hook, false, t);
        }
        assert_eq!(breaker.admit(hook, t), Err(MAX_OPEN));
    }
}
