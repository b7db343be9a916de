//! Periodic tasks: the sweeper, the pruner, the configuration-version
//! poll and the other housekeeping loops.

use tokio_util::sync::CancellationToken;

/// Runs `round` every `interval` (the first at once) until `shutdown`;
/// a round that overruns delays the next rather than stacking them. The
/// sweeper, the pruner and the other housekeeping loops run on it.
pub async fn every<F, Fut>(
    interval: std::time::Duration,
    shutdown: &CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        round().await;
    }
}
