//! Building and running the api: config → pool → publisher → router.

use std::sync::Arc;

use anyhow::Context;
use herald_delivery::sender::Sender;
use herald_shared::amqp::{Brokers, Publisher, Topology};
use herald_shared::crypto::Sealer;
use herald_shared::db::config_version::VersionWatch;
use herald_shared::runtime::config::Settings;
use herald_shared::runtime::metrics::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::routes;
use crate::state::{AppState, Shared, TOKEN_CACHE_ENTRIES, TokenCache, TokenUse};

/// A bound, ready-to-run api.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    watch: VersionWatch,
}

impl Application {
    /// Binds `api.listen` (or uses the given listener, as tests do), checks
    /// the encryption key and declares the AMQP topology.
    ///
    /// # Errors
    /// The address is taken, the encryption key is missing or bad, or the
    /// broker refuses the topology. An unreachable broker or database is not
    /// an error here: the api starts, reports not-ready, and reconnects.
    pub async fn build(settings: Settings, listener: Option<TcpListener>) -> anyhow::Result<Self> {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(settings.api.listen)
                .await
                .with_context(|| format!("binding {}", settings.api.listen))?,
        };
        let sealer = Sealer::from_config(settings.security.encryption_key.as_ref())?;
        let pool = settings.database.pool()?;
        let topology = Topology::new(&settings.amqp)?;
        let brokers = Brokers::from_settings(&settings.amqp);
        match brokers.connect("herald-api topology").await {
            Ok(conn) => {
                topology
                    .declare(&conn)
                    .await
                    .context("declaring the AMQP topology")?;
                let _ = conn.close(200, "topology declared".into()).await;
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "broker unreachable at start; will retry on demand")
            }
        }
        if let Err(e) = seal_clear_headers(&pool, &sealer).await {
            tracing::warn!(error.message = %e, "could not seal stored header values; will try at the next start");
        }
        let metrics = Metrics::new();
        let watch = VersionWatch::reporting(metrics.config_version.clone());
        if let Err(e) = watch.refresh(&pool).await {
            tracing::warn!(error.message = %e, "database unreachable at start; will retry on demand");
        }
        let sender = Sender::new(&settings.security, &settings.worker, &settings.delivery)?;
        let frame_ancestors =
            crate::console::parse_frame_ancestors(&settings.api.portal_frame_ancestors)
                .map_err(anyhow::Error::msg)?;
        let catalogs = herald_shared::catalog::CatalogCache::new(pool.clone(), watch.clone());
        let state = AppState::new(Shared {
            frame_ancestors: frame_ancestors.into(),
            sender,
            token_use: TokenUse::default(),
            tenant_limiter: crate::rate_limit::TenantLimiter::new(
                settings.api.rate_limit_per_second,
            ),
            shaper: Arc::new(herald_shared::amqp::fairness::Shaper::new(
                &settings.fairness,
            )),
            test_slots: crate::slots::TenantSlots::new(
                settings.api.max_concurrent_tests_per_tenant,
            ),
            publisher: Publisher::new(brokers, &format!("{} herald-api", topology.prefix())),
            settings: Arc::new(settings),
            pool,
            topology: Arc::new(topology),
            sealer,
            metrics,
            tokens: TokenCache::new(watch.clone(), TOKEN_CACHE_ENTRIES),
            catalogs,
            portal_sessions: herald_shared::db::config_version::VersionedCache::new(
                watch.clone(),
                TOKEN_CACHE_ENTRIES,
            ),
        });
        Ok(Self {
            listener,
            state,
            watch,
        })
    }

    /// The port actually bound (tests bind port 0).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` is cancelled, then finishes requests in
    /// flight.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.watch.spawn(self.state.pool.clone(), shutdown.clone());
        tokio::spawn(self.state.token_use.clone().flush_every(
            self.state.pool.clone(),
            self.state.settings.api.token_use_flush_seconds,
            shutdown.clone(),
        ));
        tracing::info!(port = self.port(), "api listening");
        let limits = crate::serve::ServerLimits {
            max_connections: self.state.settings.api.max_connections,
            header_read_timeout: self.state.settings.api.header_read_timeout_seconds,
        };
        let app = routes::router(self.state);
        crate::serve::serve(self.listener, app, limits, shutdown).await;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// Seals the header values a Herald from before sealing stored in clear.
/// Safe to run on every start and on several replicas at once: a row is
/// rewritten only while it is still as read.
async fn seal_clear_headers(pool: &deadpool_postgres::Pool, sealer: &Sealer) -> anyhow::Result<()> {
    use herald_shared::db::webhooks::{clear_headers, seal_headers, store_sealed_headers};
    let client = pool.get().await?;
    for (id, clear) in clear_headers(&client).await? {
        let (masked, sealed) = seal_headers(sealer, &clear);
        if let Some(sealed) = sealed {
            store_sealed_headers(&client, id, &clear, &masked, &sealed).await?;
        }
    }
    Ok(())
}
