//! What every handler shares.

use std::sync::Arc;

use deadpool_postgres::Pool;
use herald_delivery::sender::Sender;
use herald_shared::amqp::{Publisher, Topology};
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::VersionedCache;
use herald_shared::runtime::config::Settings;
use herald_shared::runtime::metrics::Metrics;
use uuid::Uuid;

/// The handlers' shared state: one pointer, since axum clones the state
/// for every request (and every middleware), and a clone of the fields
/// themselves (dozens of metric handles, pools, caches) cost a few percent
/// of the api's CPU at high request rates.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    #[must_use]
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
#[derive(Debug)]
pub struct Shared {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub sealer: Sealer,
    pub metrics: Metrics,
    pub tokens: TokenCache,
    /// Each tenant's event-type catalog, as ingest checks it.
    pub catalogs: herald_shared::catalog::CatalogCache,
    /// Portal session token hash → what the session reaches.
    pub portal_sessions: VersionedCache<Vec<u8>, Arc<crate::auth::PortalScope>>,
    /// Sends test deliveries exactly as the worker sends any.
    pub sender: Sender,
    /// Tokens seen since the last flush of `last_used_at`.
    pub token_use: TokenUse,
    /// Requests per second per tenant.
    pub tenant_limiter: crate::rate_limit::TenantLimiter,
    /// Test calls in flight per tenant.
    pub test_slots: crate::slots::TenantSlots,
    /// Each event's priority by its tenant's share.
    pub shaper: Arc<herald_shared::amqp::fairness::Shaper>,
    /// Who may frame the console (`api.portal_frame_ancestors`, checked).
    pub frame_ancestors: Arc<[String]>,
}

/// Gathers which tokens authenticated requests, so that `last_used_at` is
/// written once a minute for all of them instead of once a request.
#[derive(Clone, Debug, Default)]
pub struct TokenUse {
    seen: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>,
}

impl TokenUse {
    pub fn saw(&self, hash: &[u8]) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains(hash) {
            seen.insert(hash.to_vec());
        }
    }

    /// Writes what was gathered every `every` until `shutdown`.
    pub async fn flush_every(
        self,
        pool: Pool,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                () = shutdown.cancelled() => true,
            };
            let hashes: Vec<Vec<u8>> = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain()
                .collect();
            if !hashes.is_empty()
                && let Ok(client) = pool.get().await
                && let Err(e) = herald_shared::db::tenants::touch_tokens(&client, &hashes).await
            {
                tracing::warn!(error.message = %e, "could not record token use");
            }
            if stop {
                return;
            }
        }
    }
}

/// Token hash → tenant, so authenticating a request costs no query. The
/// entries are dropped when the configuration version moves, so a revoked
/// token stops working within the version poll interval.
pub type TokenCache = VersionedCache<Vec<u8>, Uuid>;

/// Tokens cached at most.
pub const TOKEN_CACHE_ENTRIES: usize = 100_000;
