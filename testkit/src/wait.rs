//! Waiting for an eventual outcome: poll, never sleep-and-hope.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it answers `Some`, or panics with `what`
/// after `timeout`.
///
/// # Panics
/// When the timeout passes first.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
