//! The benchmark's endpoint: a fast HTTP server on its own runtime thread
//! that answers 204 and records, per (event id, webhook path), when each
//! delivery arrived, so losses and duplicates are counted exactly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// What arrived: `(webhook-id, path)` → arrival times (one per delivery;
/// more than one is a duplicate).
#[derive(Default)]
pub(crate) struct Arrivals {
    pub(crate) by_key: HashMap<(String, String), Vec<Instant>>,
    pub(crate) total: u64,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) arrivals: Arc<Mutex<Arrivals>>,
}

impl Receiver {
    /// Starts on a dedicated thread with a one-thread runtime, so its
    /// work is visible apart from the load generator's.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let state = Arc::clone(&arrivals);
        std::thread::Builder::new()
            .name("bench-receiver".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let app = Router::new()
                        .route("/{hook}", post(record))
                        .with_state(state);
                    let _ = axum::serve(listener, app).await;
                });
            })?;
        Ok(Self { addr, arrivals })
    }

    pub(crate) fn url(&self, hook: &str) -> String {
        format!("http://{}/{hook}", self.addr)
    }

    pub(crate) fn total(&self) -> u64 {
        self.lock().total
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Arrivals::default();
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Arrivals> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn record(
    State(arrivals): State<Arc<Mutex<Arrivals>>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    let now = Instant::now();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let slow = hook.starts_with("slow");
    {
        let mut a = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        a.total += 1;
        a.by_key.entry((id, hook)).or_default().push(now);
    }
    // Endpoints named `slow…` take a second to answer, to hold many
    // deliveries in flight.
    if slow {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    StatusCode::NO_CONTENT
}
