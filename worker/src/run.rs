//! Building and running a worker.

use std::sync::Arc;

use herald_delivery::sender::Sender;
use herald_shared::amqp::consumer::{self, ConsumerConfig};
use herald_shared::crypto::Sealer;
use herald_shared::runtime::config::Settings;
use herald_shared::runtime::process::Base;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backlog::{Backlog, WINDOW};
use crate::breaker::Breaker;
use crate::deliver::Worker;
use crate::limiter::{EndpointLimiter, LimiterConfig};
use crate::rate::RateLimiter;
use crate::recorder::Recorder;
use crate::webhook_cache::WebhookCache;

/// Runs a worker until `shutdown`: health and metrics on `listener` (or
/// `worker.listen`), deliveries from the deliveries queue.
///
/// # Errors
/// The health address is taken or the configuration is unusable (no
/// encryption key, a bad signature header name).
pub async fn run(
    settings: Settings,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sealer = Sealer::from_config(settings.security.encryption_key.as_ref())?;
    let sender = Sender::new(&settings.security, &settings.worker, &settings.delivery)?;
    let base = Base::start(&settings, settings.worker.listen, listener, &shutdown).await?;
    let rate = Arc::new(RateLimiter::new());
    let heartbeat = tokio::spawn({
        let rate = Arc::clone(&rate);
        let pool = base.pool.clone();
        let shutdown = shutdown.clone();
        async move { rate.heartbeat(pool, shutdown).await }
    });
    let backlog = Arc::new(Backlog::default());
    let backlog_gauge = tokio::spawn({
        let backlog = Arc::clone(&backlog);
        let gauge = base.metrics.delivery_backlog_age.clone();
        let shutdown = shutdown.clone();
        async move { backlog.publish(gauge, WINDOW, shutdown).await }
    });
    let worker = Arc::new(Worker {
        rate,
        recorder: Recorder::spawn(base.pool.clone()),
        cache: WebhookCache::new(base.pool.clone(), sealer, base.watch.clone()),
        pool: base.pool.clone(),
        metrics: base.metrics.clone(),
        sender,
        topology: base.topology.clone(),
        max_retry_delay: settings.worker.max_retry_delay_seconds,
        limiter: EndpointLimiter::new(LimiterConfig {
            max_per_endpoint: usize::from(settings.worker.max_inflight_per_webhook),
            slow_lane: slow_lane(settings.worker.concurrency, settings.worker.slow_lane_share),
            slow_threshold: settings.worker.slow_threshold_ms,
        }),
        breaker: Breaker::new(
            settings.worker.breaker_threshold,
            settings.worker.breaker_open_seconds,
        ),
        disable_after: (
            settings.worker.disable_after_failing_seconds,
            settings.worker.disable_after_failures,
        ),
        backlog,
    });
    let config = ConsumerConfig {
        name: format!("{} herald-worker", base.topology.prefix()),
        queue: base.topology.deliveries(),
        park_queue: base.topology.failed_queue(),
        parked: base.metrics.deliveries_parked.clone(),
        prefetch: settings.worker.concurrency,
        drain_timeout: settings.worker.shutdown_timeout_seconds,
        pause: settings.amqp.requeue_pause_ms,
    };
    consumer::run(
        &settings.amqp,
        &base.topology,
        &config,
        worker,
        &base.probe,
        shutdown,
    )
    .await;
    let _ = heartbeat.await;
    let _ = backlog_gauge.await;
    base.finish().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The slow lane's places: the share of the worker's concurrency, at least
/// one.
fn slow_lane(concurrency: u16, share: f64) -> usize {
    let places = (f64::from(concurrency) * share).ceil();
    // Between 1 and 65,535: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let places = places.clamp(1.0, f64::from(u16::MAX)) as usize;
    places
}
