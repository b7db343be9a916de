//! Per-endpoint concurrency in one worker: how many deliveries to one
//! webhook may be in flight at once. The bound keeps a slow or hanging
//! endpoint from taking every slot (the rest of the worker's deliveries
//! keep flowing), and it adapts: an endpoint that answers 429, 502 or 504
//! (or times out) gets half as many concurrent requests each time, and one more back for
//! every success, so Herald eases off an endpoint that is struggling and
//! returns to full speed as it recovers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// What an attempt's answer says about the endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (whatever the status): no sign of overload.
    Fine,
    /// 429, 502 or 504: it asks for less.
    Overloaded,
}

impl Signal {
    #[must_use]
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(429 | 502 | 504) => Self::Overloaded,
            _ => Self::Fine,
        }
    }
}

#[derive(Debug)]
struct Slot {
    inflight: usize,
    /// The current bound, between 1 and the configured maximum.
    limit: usize,
}

#[derive(Debug)]
pub struct EndpointLimiter {
    max: usize,
    slots: Mutex<HashMap<Uuid, Slot>>,
    /// Woken whenever a place frees, for deliveries waiting for one.
    freed: tokio::sync::Notify,
}

/// One delivery in flight to an endpoint; the place frees when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<EndpointLimiter>,
    webhook: Uuid,
}

impl EndpointLimiter {
    #[must_use]
    pub fn new(max_per_endpoint: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max_per_endpoint.max(1),
            slots: Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A place for one more delivery to `webhook`, waiting up to `patience`
    /// for one to free: a fast endpoint frees places within milliseconds,
    /// so its deliveries never need to be parked; a slow one's excess gives
    /// up and is parked.
    pub async fn acquire(
        self: &Arc<Self>,
        webhook: Uuid,
        patience: std::time::Duration,
    ) -> Option<Permit> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            if let Some(permit) = self.try_acquire(webhook) {
                return Some(permit);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_acquire(webhook);
            }
        }
    }

    /// A place for one more delivery to `webhook`, or `None` while the
    /// endpoint is at its bound.
    #[must_use]
    pub fn try_acquire(self: &Arc<Self>, webhook: Uuid) -> Option<Permit> {
        let mut slots = self.lock();
        let slot = slots.entry(webhook).or_insert(Slot {
            inflight: 0,
            limit: self.max,
        });
        if slot.inflight >= slot.limit {
            return None;
        }
        slot.inflight += 1;
        Some(Permit {
            limiter: Arc::clone(self),
            webhook,
        })
    }

    /// Adjusts the endpoint's bound by what its last answer said.
    pub fn feedback(&self, webhook: Uuid, signal: Signal) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(&webhook) {
            slot.limit = match signal {
                Signal::Overloaded => (slot.limit / 2).max(1),
                Signal::Fine => (slot.limit + 1).min(self.max),
            };
        }
    }

    /// The endpoint's current bound.
    #[must_use]
    pub fn limit(&self, webhook: Uuid) -> usize {
        self.lock().get(&webhook).map_or(self.max, |s| s.limit)
    }

    fn release(&self, webhook: Uuid) {
        {
            let mut slots = self.lock();
            if let Some(slot) = slots.get_mut(&webhook) {
                slot.inflight = slot.inflight.saturating_sub(1);
                // An idle endpoint at full speed needs no entry.
                if slot.inflight == 0 && slot.limit == self.max {
                    slots.remove(&webhook);
                }
            }
        }
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.webhook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_endpoint_separately() {
        let limiter = EndpointLimiter::new(2);
        let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());
        let a = limiter.try_acquire(slow).unwrap();
        let _b = limiter.try_acquire(slow).unwrap();
        assert!(
            limiter.try_acquire(slow).is_none(),
            "the slow endpoint is full"
        );
        assert!(
            limiter.try_acquire(fast).is_some(),
            "others are not affected"
        );
        drop(a);
        assert!(
            limiter.try_acquire(slow).is_some(),
            "a finished delivery frees its place"
        );
    }

    #[tokio::test]
    async fn waits_a_little_for_a_place_to_free() {
        let limiter = EndpointLimiter::new(1);
        let hook = Uuid::now_v7();
        let held = limiter.try_acquire(hook).unwrap();
        let waiting = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter
                    .acquire(hook, std::time::Duration::from_secs(5))
                    .await
                    .is_some()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(held);
        assert!(
            waiting.await.unwrap(),
            "the freed place went to the waiting delivery"
        );
        let _busy = limiter.try_acquire(hook).unwrap();
        assert!(
            limiter
                .acquire(hook, std::time::Duration::from_millis(30))
                .await
                .is_none(),
            "no place frees: it gives up"
        );
    }

    #[test]
    fn halves_on_overload_and_recovers_one_by_one() {
        let limiter = EndpointLimiter::new(8);
        let hook = Uuid::now_v7();
        let permit = limiter.try_acquire(hook).unwrap();
        limiter.feedback(hook, Signal::from_status(Some(429)));
        assert_eq!(limiter.limit(hook), 4);
        limiter.feedback(hook, Signal::from_status(Some(502)));
        limiter.feedback(hook, Signal::from_status(Some(504)));
        limiter.feedback(hook, Signal::Overloaded);
        assert_eq!(limiter.limit(hook), 1, "never below one");
        assert!(limiter.try_acquire(hook).is_none());
        limiter.feedback(hook, Signal::from_status(Some(500)));
        limiter.feedback(hook, Signal::from_status(Some(200)));
        assert_eq!(limiter.limit(hook), 3, "500 is not a sign of overload");
        for _ in 0..20 {
            limiter.feedback(hook, Signal::Fine);
        }
        assert_eq!(limiter.limit(hook), 8, "back to full speed, no further");
        drop(permit);
        assert_eq!(limiter.limit(hook), 8);
    }
}
