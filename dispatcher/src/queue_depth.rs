//! `herald_queue_messages{queue}`: how many messages wait in each of
//! Herald's queues (dispatch, deliveries, every retry tier, invalid,
//! failed), read from the broker every few seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_shared::amqp::{Brokers, Topology};
use herald_shared::runtime::metrics::Metrics;
use herald_shared::runtime::periodic::every;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(5);

/// Reads the depths every five seconds until `shutdown`; a broker that is
/// away leaves the last values and is reconnected on the next round. It
/// starts once `declared` is set (the consumer has declared the topology),
/// so that a first start does not look for queues that are not there yet.
pub async fn run(
    brokers: Brokers,
    topology: Topology,
    metrics: Metrics,
    declared: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let name = format!("{} herald-dispatcher queue-depth", topology.prefix());
    let session: Mutex<Option<(Connection, Channel)>> = Mutex::new(None);
    every(EVERY, &shutdown, || async {
        if !declared.load(Ordering::Acquire) {
            return;
        }
        let mut session = session.lock().await;
        if session.is_none() {
            if let Ok(conn) = brokers.connect(&name).await
                && let Ok(ch) = conn.create_channel().await
            {
                *session = Some((conn, ch));
            } else {
                return;
            }
        }
        let Some((_, ch)) = session.as_ref() else {
            return;
        };
        for queue in topology.queues() {
            let passive = QueueDeclareOptions {
                // Only look: never create a queue with other arguments.
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match ch
                .queue_declare(queue.clone().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => metrics
                    .queue_messages
                    .with_label_values(&[queue.as_str()])
                    .set(i64::from(q.message_count())),
                Err(_) => {
                    // The channel closes on an error (a queue not declared
                    // yet): start over next round.
                    *session = None;
                    return;
                }
            }
        }
    })
    .await;
}
