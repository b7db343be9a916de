//! Per-endpoint concurrency in one worker, and a lane for slow endpoints.
//!
//! Each endpoint has a bound on its deliveries in flight that adapts: an
//! endpoint that answers 429, 502 or 504 (or times out) gets half as many
//! concurrent requests each time, and one more back for every success, so
//! Herald eases off an endpoint that is struggling and returns to full
//! speed as it recovers.
//!
//! The per-endpoint bound alone is no protection when several endpoints are
//! slow together (six hanging endpoints at 64 each fill 256 slots). So the
//! endpoints not known to be fast share one lane of at most
//! `worker.slow_lane_share` of the worker's slots:
//! - an endpoint is **fast** while its last attempt finished within
//!   `worker.slow_threshold_ms` and none of its requests in flight has run
//!   longer; its deliveries take any free slot;
//! - an endpoint is **slow** when its last attempt took longer or timed out,
//!   or when a request to it has been in flight longer than the threshold
//!   (a hanging endpoint is caught before its first timeout);
//! - an endpoint with no finished attempt yet (new, or idle long enough to
//!   be forgotten) is **unproven**: one request goes out at once as a probe,
//!   the rest wait for it or take the lane.
//!
//! Deliveries to slow and unproven endpoints beyond the lane wait (they are
//! held in the shortest retry tier, not counted as attempts), so however
//! many endpoints hang, they hold at most the lane (plus one probe each, and
//! what a fast endpoint had in flight when it turned slow), and a healthy
//! endpoint's deliveries keep the rest of the worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Endpoints remembered at most; idle ones are forgotten first.
const MAX_ENDPOINTS: usize = 50_000;
/// An endpoint idle this long is forgotten (unproven again).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// What an attempt's answer says about the endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (whatever the status): no sign of overload.
    Fine,
    /// 429, 502 or 504, or a timeout: it asks for less.
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

/// How an endpoint's attempts have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// No attempt finished yet.
    Unproven,
    Fast,
    Slow,
}

#[derive(Debug)]
struct Slot {
    /// When each request in flight started.
    started: Vec<Instant>,
    /// The current bound, between 1 and the configured maximum.
    limit: usize,
    /// How its last finished attempt went.
    pace: Pace,
    last_used: Instant,
}

/// How the limiter is set.
#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Deliveries in flight to one endpoint at most.
    pub max_per_endpoint: usize,
    /// Deliveries in flight to slow and unproven endpoints together.
    pub slow_lane: usize,
    /// An attempt, or a request in flight, longer than this makes its
    /// endpoint slow.
    pub slow_threshold: Duration,
}

#[derive(Debug)]
struct State {
    slots: HashMap<Uuid, Slot>,
    /// Places taken in the slow lane.
    lane: usize,
}

#[derive(Debug)]
pub struct EndpointLimiter {
    config: LimiterConfig,
    state: Mutex<State>,
    /// Woken whenever a place frees, for deliveries waiting for one.
    freed: tokio::sync::Notify,
}

/// One delivery in flight to an endpoint; the place frees when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<EndpointLimiter>,
    webhook: Uuid,
    started: Instant,
    in_lane: bool,
}

impl Permit {
    /// Whether this delivery took a place in the slow lane.
    #[must_use]
    pub fn in_lane(&self) -> bool {
        self.in_lane
    }
}

impl EndpointLimiter {
    #[must_use]
    pub fn new(config: LimiterConfig) -> Arc<Self> {
        Arc::new(Self {
            config: LimiterConfig {
                max_per_endpoint: config.max_per_endpoint.max(1),
                slow_lane: config.slow_lane.max(1),
                ..config
            },
            state: Mutex::new(State {
                slots: HashMap::new(),
                lane: 0,
            }),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A place for one more delivery to `webhook`, waiting up to `patience`
    /// for one to free: a fast endpoint frees places within milliseconds,
    /// so its deliveries never need to be parked; a slow one's excess gives
    /// up and is parked.
    ///
    /// A slow endpoint (or one with a request hanging) frees no place soon:
    /// its delivery gives up at once rather than hold a worker slot.
    pub async fn acquire(self: &Arc<Self>, webhook: Uuid, patience: Duration) -> Option<Permit> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            if let Some(permit) = self.try_acquire(webhook) {
                return Some(permit);
            }
            if !self.worth_waiting(webhook) {
                return None;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_acquire(webhook);
            }
        }
    }

    /// Whether a place for the endpoint may free within moments: not when
    /// it is slow or has a request in flight past the threshold.
    fn worth_waiting(&self, webhook: Uuid) -> bool {
        let now = Instant::now();
        self.lock().slots.get(&webhook).is_none_or(|slot| {
            slot.pace != Pace::Slow
                && !slot
                    .started
                    .iter()
                    .any(|s| now.duration_since(*s) > self.config.slow_threshold)
        })
    }

    /// A place for one more delivery to `webhook`, or `None` while the
    /// endpoint is at its bound, or it is slow or unproven and the lane is
    /// full.
    #[must_use]
    pub fn try_acquire(self: &Arc<Self>, webhook: Uuid) -> Option<Permit> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { slots, lane } = &mut *state;
        if slots.len() >= MAX_ENDPOINTS {
            slots.retain(|_, s| {
                !s.started.is_empty() || now.duration_since(s.last_used) < FORGET_AFTER
            });
        }
        let slot = slots.entry(webhook).or_insert(Slot {
            started: Vec::new(),
            limit: self.config.max_per_endpoint,
            pace: Pace::Unproven,
            last_used: now,
        });
        if slot.started.len() >= slot.limit {
            return None;
        }
        let hanging = slot
            .started
            .iter()
            .any(|s| now.duration_since(*s) > self.config.slow_threshold);
        let needs_lane = match slot.pace {
            Pace::Fast => hanging,
            Pace::Slow => true,
            // One probe goes out at once; the rest wait for it or the lane.
            Pace::Unproven => !slot.started.is_empty(),
        };
        if needs_lane && *lane >= self.config.slow_lane {
            return None;
        }
        if needs_lane {
            *lane += 1;
        }
        slot.started.push(now);
        slot.last_used = now;
        Some(Permit {
            limiter: Arc::clone(self),
            webhook,
            started: now,
            in_lane: needs_lane,
        })
    }

    /// Adjusts the endpoint's bound by what its last answer said, and its
    /// pace by how long the attempt took.
    pub fn feedback(&self, webhook: Uuid, signal: Signal, took: Duration) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(&webhook) {
            slot.limit = match signal {
                Signal::Overloaded => (slot.limit / 2).max(1),
                Signal::Fine => (slot.limit + 1).min(self.config.max_per_endpoint),
            };
            slot.pace = if took > self.config.slow_threshold {
                Pace::Slow
            } else {
                Pace::Fast
            };
        }
    }

    /// The endpoint's current bound.
    #[must_use]
    pub fn limit(&self, webhook: Uuid) -> usize {
        self.lock()
            .slots
            .get(&webhook)
            .map_or(self.config.max_per_endpoint, |s| s.limit)
    }

    /// How the endpoint's attempts have gone.
    #[must_use]
    pub fn pace(&self, webhook: Uuid) -> Pace {
        self.lock()
            .slots
            .get(&webhook)
            .map_or(Pace::Unproven, |s| s.pace)
    }

    /// Deliveries in flight in the slow lane.
    #[must_use]
    pub fn in_lane(&self) -> usize {
        self.lock().lane
    }

    fn release(&self, webhook: Uuid, started: Instant, in_lane: bool) {
        {
            let mut state = self.lock();
            let State { slots, lane } = &mut *state;
            if in_lane {
                *lane = lane.saturating_sub(1);
            }
            if let Some(slot) = slots.get_mut(&webhook)
                && let Some(i) = slot.started.iter().position(|s| *s == started)
            {
                slot.started.swap_remove(i);
            }
        }
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter
            .release(self.webhook, self.started, self.in_lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(5);

    fn limiter(max_per_endpoint: usize, slow_lane: usize) -> Arc<EndpointLimiter> {
        EndpointLimiter::new(LimiterConfig {
            max_per_endpoint,
            slow_lane,
            slow_threshold: Duration::from_millis(50),
        })
    }

    /// An endpoint that has answered once, quickly.
    fn proven(limiter: &Arc<EndpointLimiter>, hook: Uuid) {
        let p = limiter.try_acquire(hook).unwrap();
        limiter.feedback(hook, Signal::Fine, FAST);
        drop(p);
    }

    #[test]
    fn bounds_each_endpoint_separately() {
        let limiter = limiter(2, 10);
        proven(&limiter, Uuid::nil());
        let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());
        proven(&limiter, slow);
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

    #[tokio::test(start_paused = true)]
    async fn waits_a_little_for_a_place_to_free() {
        let limiter = limiter(1, 10);
        let hook = Uuid::now_v7();
        proven(&limiter, hook);
        let held = limiter.try_acquire(hook).unwrap();
        let waiting = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter
                    .acquire(hook, Duration::from_secs(5))
                    .await
                    .is_some()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(
            waiting.await.unwrap(),
            "the freed place went to the waiting delivery"
        );
        let _busy = limiter.try_acquire(hook).unwrap();
        assert!(
            limiter
                .acquire(hook, Duration::from_millis(30))
                .await
                .is_none(),
            "no place frees: it gives up"
        );
    }

    #[test]
    fn halves_on_overload_and_recovers_one_by_one() {
        let limiter = limiter(8, 10);
        let hook = Uuid::now_v7();
        let permit = limiter.try_acquire(hook).unwrap();
        limiter.feedback(hook, Signal::from_status(Some(429)), FAST);
        assert_eq!(limiter.limit(hook), 4);
        limiter.feedback(hook, Signal::from_status(Some(502)), FAST);
        limiter.feedback(hook, Signal::from_status(Some(504)), FAST);
        limiter.feedback(hook, Signal::Overloaded, FAST);
        assert_eq!(limiter.limit(hook), 1, "never below one");
        assert!(limiter.try_acquire(hook).is_none());
        limiter.feedback(hook, Signal::from_status(Some(500)), FAST);
        limiter.feedback(hook, Signal::from_status(Some(200)), FAST);
        assert_eq!(limiter.limit(hook), 3, "500 is not a sign of overload");
        for _ in 0..20 {
            limiter.feedback(hook, Signal::Fine, FAST);
        }
        assert_eq!(limiter.limit(hook), 8, "back to full speed, no further");
        drop(permit);
        assert_eq!(limiter.limit(hook), 8);
    }

    #[test]
    fn slow_and_unproven_endpoints_share_one_lane() {
        let limiter = limiter(64, 3);
        let healthy = Uuid::now_v7();
        proven(&limiter, healthy);
        // Slow endpoints: each took too long once.
        let slow: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        for hook in &slow {
            let p = limiter.try_acquire(*hook).unwrap();
            limiter.feedback(*hook, Signal::Overloaded, Duration::from_secs(10));
            drop(p);
            assert_eq!(limiter.pace(*hook), Pace::Slow);
        }
        let held: Vec<Permit> = slow
            .iter()
            .filter_map(|h| limiter.try_acquire(*h))
            .collect();
        assert_eq!(
            held.len(),
            3,
            "six slow endpoints hold the lane's three places"
        );
        assert!(held.iter().all(Permit::in_lane));
        // A healthy endpoint is not held back by them.
        let fast: Vec<Permit> = (0..20)
            .filter_map(|_| limiter.try_acquire(healthy))
            .collect();
        assert_eq!(fast.len(), 20);
        assert!(fast.iter().all(|p| !p.in_lane()));
        // A new endpoint gets one probe at once, then waits for the lane.
        let new = Uuid::now_v7();
        let probe = limiter.try_acquire(new).expect("a probe");
        assert!(!probe.in_lane());
        assert!(limiter.try_acquire(new).is_none(), "the lane is full");
        drop(held);
        assert!(limiter.try_acquire(new).unwrap().in_lane());
    }

    #[test]
    fn a_request_in_flight_past_the_threshold_makes_its_endpoint_slow() {
        let limiter = limiter(64, 1);
        let hook = Uuid::now_v7();
        proven(&limiter, hook);
        let hanging = limiter.try_acquire(hook).unwrap();
        assert!(!hanging.in_lane());
        std::thread::sleep(Duration::from_millis(60));
        let next = limiter.try_acquire(hook).expect("the lane's place");
        assert!(next.in_lane(), "hanging: further requests take the lane");
        assert!(limiter.try_acquire(hook).is_none());
        assert_eq!(limiter.in_lane(), 1);
        drop(next);
        assert_eq!(limiter.in_lane(), 0);
    }
}
