//! Building and running a dispatcher.

use std::sync::Arc;
use std::time::Duration;

use herald_shared::amqp::consumer::{self, ConsumerConfig};
use herald_shared::amqp::{Brokers, Publisher};
use herald_shared::runtime::config::Settings;
use herald_shared::runtime::process::Base;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::pruner::Pruner;
use crate::store::Store;
use crate::subscription_cache::SubscriptionCache;
use crate::sweeper::Sweeper;

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
    let base = Base::start(&settings, settings.dispatcher.listen, listener, &shutdown).await?;
    let dispatcher = Arc::new(Dispatcher {
        shaper: herald_shared::amqp::fairness::Shaper::new(&settings.fairness),
        cache: SubscriptionCache::new(base.pool.clone(), base.watch.clone()),
        catalogs: herald_shared::catalog::CatalogCache::new(base.pool.clone(), base.watch.clone()),
        pool: base.pool.clone(),
        topology: base.topology.clone(),
        metrics: base.metrics.clone(),
        max_event_bytes: settings.api.max_event_bytes,
        store: Store::spawn(
            base.pool.clone(),
            base.topology.clone(),
            base.metrics.clone(),
            Duration::from_secs(u64::from(settings.dispatcher.idempotency_window_hours) * 3600),
        ),
    });
    let config = ConsumerConfig {
        name: format!("{} herald-dispatcher", base.topology.prefix()),
        queue: base.topology.dispatch_queue(),
        park_queue: base.topology.invalid_queue(),
        parked: base.metrics.events_invalid.clone(),
        prefetch: settings.dispatcher.concurrency,
        drain_timeout: Duration::from_secs(10),
        pause: settings.amqp.requeue_pause_ms,
    };
    let sweeper = Sweeper {
        pool: base.pool.clone(),
        publisher: Publisher::new(
            Brokers::from_settings(&settings.amqp),
            &format!("{} herald-dispatcher sweeper", base.topology.prefix()),
        ),
        topology: base.topology.clone(),
        grace: settings.dispatcher.sweep_grace_seconds,
        interval: settings.dispatcher.sweep_interval_seconds,
    };
    sweeper.epoch_round().await;
    let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
    let replayer = crate::replayer::Replayer {
        pool: base.pool.clone(),
        publisher: Publisher::new(
            Brokers::from_settings(&settings.amqp),
            &format!("{} herald-dispatcher replayer", base.topology.prefix()),
        ),
        topology: base.topology.clone(),
        interval: Duration::from_secs(1),
    };
    let replaying = tokio::spawn(replayer.run(shutdown.clone()));
    let pruner = Pruner {
        pool: base.pool.clone(),
        max_age: Duration::from_secs(settings.retention.max_age_days.saturating_mul(86_400)),
        interval: settings.retention.prune_interval_seconds,
    };
    let pruning = tokio::spawn(pruner.run(shutdown.clone()));
    let purger = crate::purger::Purger {
        pool: base.pool.clone(),
        interval: settings.retention.purge_interval_seconds,
    };
    let purging = tokio::spawn(purger.run(shutdown.clone()));
    let depths = tokio::spawn(crate::queue_depth::run(
        Brokers::from_settings(&settings.amqp),
        base.topology.clone(),
        base.metrics.clone(),
        std::sync::Arc::clone(&base.probe.broker_up),
        shutdown.clone(),
    ));
    consumer::run(
        &settings.amqp,
        &base.topology,
        &config,
        dispatcher,
        &base.probe,
        shutdown,
    )
    .await;
    let _ = sweeping.await;
    let _ = replaying.await;
    let _ = pruning.await;
    let _ = purging.await;
    let _ = depths.await;
    base.finish().await;
    tracing::info!("dispatcher stopped");
    Ok(())
}
