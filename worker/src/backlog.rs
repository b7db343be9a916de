//! `herald_delivery_backlog_age_seconds`: how late deliveries are taken
//! up. Every delivery a worker takes records how long past its due time
//! (the event's arrival, or the retry's due time) it waited in the queue;
//! every ten seconds the longest such wait is published and the window
//! starts again, so the gauge falls back once the backlog is gone. A queue
//! nobody consumes shows in `herald_queue_messages` instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_shared::runtime::periodic::every;
use prometheus::Gauge;
use tokio_util::sync::CancellationToken;

/// How often the gauge is published.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Backlog {
    longest_ms: AtomicU64,
}

impl Backlog {
    pub fn observe(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.longest_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Publishes the window's longest wait every `window` until
    /// `shutdown`.
    pub async fn publish(&self, gauge: Gauge, window: Duration, shutdown: CancellationToken) {
        every(window, &shutdown, || {
            let ms = self.longest_ms.swap(0, Ordering::Relaxed);
            gauge.set(Duration::from_millis(ms).as_secs_f64());
            std::future::ready(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: Duration = Duration::from_millis(400);

    #[tokio::test(start_paused = true)]
    async fn the_gauge_shows_the_longest_wait_of_the_window_then_falls_back() {
        let backlog = std::sync::Arc::new(Backlog::default());
        let gauge = Gauge::new("g", "g").expect("a gauge");
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (backlog, gauge, stop) =
                (std::sync::Arc::clone(&backlog), gauge.clone(), stop.clone());
            async move { backlog.publish(gauge, WINDOW_MS, stop).await }
        });
        // The first round publishes at once; observe after it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        backlog.observe(Duration::from_millis(2500));
        backlog.observe(Duration::from_millis(700));
        // Midway through the next window: published at 400 ms, read at 600.
        tokio::time::sleep(Duration::from_millis(580)).await;
        assert!((gauge.get() - 2.5).abs() < 1e-9, "{}", gauge.get());
        tokio::time::sleep(WINDOW_MS).await;
        assert!(gauge.get().abs() < 1e-9, "an empty window reads 0");
        stop.cancel();
        task.await.expect("the task ends");
    }
}
