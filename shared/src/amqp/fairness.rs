//! Fair scheduling between tenants on the two hot queues.
//!
//! The dispatch and deliveries queues are priority queues with two levels.
//! Each tenant has a share — `fairness.tenant_rate` messages a second with
//! a burst of `fairness.tenant_burst`, counted in each api replica (events)
//! and each dispatcher (deliveries) — and what it sends within its share
//! goes at [`INTERACTIVE`] priority; what it sends beyond goes at [`BULK`].
//! The broker hands out interactive messages first, so one tenant's flood
//! waits behind the others' events instead of in front of them, and it
//! still has the whole pipeline whenever nobody else needs it: its own
//! throughput barely changes. No queue per tenant, and no per-tenant state
//! in the broker.
//!
//! A producer publishing straight to the events exchange sets the priority
//! itself (an unset priority is [`BULK`] at the first hop); the dispatcher
//! shapes its deliveries like everyone's.

use std::time::Instant;

use uuid::Uuid;

use crate::runtime::config::FairnessSettings;
use crate::token_bucket::TokenBuckets;

/// A tenant's messages beyond its share, and anything without a priority.
pub const BULK: u8 = 0;
/// A tenant's messages within its share.
pub const INTERACTIVE: u8 = 1;
/// The queues' `x-max-priority`.
pub const MAX_PRIORITY: u8 = INTERACTIVE;

/// Decides each message's priority by its tenant's share.
#[derive(Debug)]
pub struct Shaper {
    rate: f64,
    burst: f64,
    buckets: TokenBuckets<Uuid>,
}

impl Shaper {
    #[must_use]
    pub fn new(settings: &FairnessSettings) -> Self {
        Self {
            rate: f64::from(settings.tenant_rate),
            burst: f64::from(settings.tenant_burst.max(1)),
            buckets: TokenBuckets::new(),
        }
    }

    /// The priority of `count` messages from `tenant` now: interactive
    /// while they fit its share.
    #[must_use]
    pub fn priority(&self, tenant: Uuid, count: usize, now: Instant) -> u8 {
        #[allow(clippy::cast_precision_loss)]
        let cost = count as f64;
        match self.buckets.take(tenant, self.rate, self.burst, cost, now) {
            Ok(()) => INTERACTIVE,
            Err(_) => BULK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_beyond_its_share_goes_bulk_and_others_stay_interactive() {
        let shaper = Shaper::new(&FairnessSettings {
            tenant_rate: 10,
            tenant_burst: 100,
        });
        let (flood, other) = (Uuid::now_v7(), Uuid::now_v7());
        let t = Instant::now();
        let interactive = (0..1000)
            .filter(|_| shaper.priority(flood, 1, t) == INTERACTIVE)
            .count();
        assert_eq!(interactive, 100, "the burst, then bulk");
        assert_eq!(shaper.priority(other, 1, t), INTERACTIVE);
        assert_eq!(
            shaper.priority(flood, 1, t + std::time::Duration::from_millis(200)),
            INTERACTIVE,
            "the rate refills the share"
        );
    }
}
