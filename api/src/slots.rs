//! A bound on calls in flight per tenant, for calls that wait on something
//! outside Herald (a test delivery waits on the tenant's endpoint): one
//! tenant's slow endpoint can hold at most its own slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TenantSlots {
    max: usize,
    held: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// A slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    tenant: Uuid,
    held: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl TenantSlots {
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::default(),
        }
    }

    /// A slot for the tenant, or `None` when it holds them all.
    #[must_use]
    pub fn try_take(&self, tenant: Uuid) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(tenant).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            tenant,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_slots_and_gets_them_back() {
        let slots = TenantSlots::new(2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        assert!(
            slots.try_take(b).is_some(),
            "another tenant is not affected"
        );
        drop(first);
        assert!(slots.try_take(a).is_some());
    }
}
