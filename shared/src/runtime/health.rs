//! `/healthz`, `/readyz` and `/metrics` for the dispatcher and the worker
//! (the api serves the same paths beside its own routes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::runtime::metrics::Metrics;

/// What readiness depends on: the database answers and the consumer is
/// connected to the broker.
#[derive(Clone, Debug)]
pub struct Probe {
    pub pool: Pool,
    /// Set by the consumer loop while its channel is open.
    pub broker_up: Arc<AtomicBool>,
    pub metrics: Metrics,
}

impl Probe {
    #[must_use]
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self {
            pool,
            broker_up: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Release);
    }
}

/// True when a connection can be had and answers `SELECT 1`.
pub async fn database_ready(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// The Prometheus text for a metrics set.
pub fn metrics_response(metrics: &Metrics) -> impl IntoResponse + use<> {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(p): State<Probe>| async move { metrics_response(&p.metrics) }),
        )
        .with_state(probe)
}

async fn readyz(State(p): State<Probe>) -> impl IntoResponse {
    let db = database_ready(&p.pool).await;
    readiness(db, p.broker_up.load(Ordering::Acquire))
}

/// The readiness answer every process gives: 200 when both are up, else
/// 503, with `{"database", "broker"}`.
pub fn readiness(database: bool, broker: bool) -> impl IntoResponse + use<> {
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "database": database, "broker": broker })),
    )
}

/// Serves the health router until `shutdown`.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    probe: Probe,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
