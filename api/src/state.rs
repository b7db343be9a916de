//! What every handler shares.

use std::sync::Arc;

use deadpool_postgres::Pool;
use herald_shared::amqp::{Publisher, Topology};
use herald_shared::config::Settings;
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::VersionedCache;
use herald_shared::metrics::Metrics;
use herald_shared::sender::Sender;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub sealer: Sealer,
    pub metrics: Metrics,
    pub tokens: TokenCache,
    /// Sends test deliveries exactly as the worker sends any.
    pub sender: Sender,
}

/// Token hash → tenant, so authenticating a request costs no query. The
/// entries are dropped when the configuration version moves, so a revoked
/// token stops working within the version poll interval.
pub type TokenCache = VersionedCache<Vec<u8>, Uuid>;

/// Tokens cached at most.
pub const TOKEN_CACHE_ENTRIES: usize = 100_000;
