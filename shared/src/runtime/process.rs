//! What the dispatcher and the worker set up alike before consuming: the
//! pool, the topology names, metrics, the configuration-version poller and
//! the health server.

use std::net::SocketAddr;

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::amqp::Topology;
use crate::db::config_version::VersionWatch;
use crate::runtime::config::Settings;
use crate::runtime::health::{self, Probe};
use crate::runtime::metrics::Metrics;

/// A consuming process's shared parts.
#[derive(Debug)]
pub struct Base {
    pub pool: Pool,
    pub topology: Topology,
    pub metrics: Metrics,
    pub probe: Probe,
    pub watch: VersionWatch,
    health: JoinHandle<std::io::Result<()>>,
}

impl Base {
    /// Binds the health address (or takes the given listener, as tests do)
    /// and starts the health server and the version poller; both stop with
    /// `shutdown`. The database may still be away: the poller and the
    /// readiness probe say so until it is back.
    ///
    /// # Errors
    /// The address is taken, or the configuration is unusable.
    pub async fn start(
        settings: &Settings,
        listen: SocketAddr,
        listener: Option<TcpListener>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?,
        };
        let pool = settings.database.pool()?;
        let topology = Topology::new(&settings.amqp)?;
        let metrics = Metrics::new();
        let probe = Probe::new(pool.clone(), metrics.clone());
        let watch = VersionWatch::reporting(metrics.config_version.clone());
        let _ = watch.refresh(&pool).await;
        watch.spawn(pool.clone(), shutdown.clone());
        let health = tokio::spawn(health::serve(listener, probe.clone(), shutdown.clone()));
        Ok(Self {
            pool,
            topology,
            metrics,
            probe,
            watch,
            health,
        })
    }

    /// Waits for the health server to stop (after `shutdown`).
    pub async fn finish(self) {
        let _ = self.health.await;
    }
}
