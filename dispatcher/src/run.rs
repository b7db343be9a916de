//! Building and running a dispatcher.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_shared::amqp::Topology;
use herald_shared::config::Settings;
use herald_shared::consumer::{self, ConsumerConfig};
use herald_shared::db::config_version::VersionWatch;
use herald_shared::health::{self, Probe};
use herald_shared::metrics::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::subscription_cache::SubscriptionCache;

/// Runs a dispatcher until `shutdown`: health and metrics on `listener`
/// (or `dispatcher.listen`), events from the dispatch queue.
///
/// # Errors
/// The health address is taken or the configuration is unusable.
pub async fn run(
    settings: Settings,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(settings.dispatcher.listen)
            .await
            .with_context(|| format!("binding {}", settings.dispatcher.listen))?,
    };
    let pool = settings.database.pool()?;
    let topology = Topology::new(&settings.amqp)?;
    let metrics = Metrics::new();
    let probe = Probe::new(pool.clone(), metrics.clone());
    let watch = VersionWatch::default();
    let _ = watch.refresh(&pool).await;
    watch.spawn(pool.clone(), shutdown.clone());

    let health = tokio::spawn(health::serve(listener, probe.clone(), shutdown.clone()));
    let dispatcher = Arc::new(Dispatcher {
        cache: SubscriptionCache::new(pool.clone(), watch),
        pool,
        topology: topology.clone(),
        metrics,
        max_event_bytes: settings.api.max_event_bytes,
    });
    let config = ConsumerConfig {
        name: format!("{} herald-dispatcher", topology.prefix()),
        queue: topology.dispatch_queue(),
        prefetch: settings.dispatcher.concurrency,
        drain_timeout: Duration::from_secs(10),
    };
    consumer::run(
        &settings.amqp,
        &topology,
        &config,
        dispatcher,
        &probe,
        shutdown,
    )
    .await;
    let _ = health.await;
    tracing::info!("dispatcher stopped");
    Ok(())
}
