//! The consume loop the dispatcher and the worker share: connect, declare
//! the topology, consume with a prefetch, hand each message to a handler
//! task, and ack or requeue by what the handler answers. A lost connection
//! is reconnected with backoff; shutdown stops consuming, drains what is in
//! flight (bounded), then closes, so the broker requeues anything unacked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::amqp::{AmqpError, Topology, backoff, confirmed_channel, connect};
use crate::config::AmqpSettings;
use crate::health::Probe;

/// What to do with a message once its handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Its effects are committed (and any publish confirmed): remove it.
    Ack,
    /// Something transient failed: put it back for another try.
    Requeue,
}

/// Processes one message. The channel given is the process's confirmed
/// publishing channel.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
    ) -> impl Future<Output = Disposition> + Send;
}

/// How a consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection name shown by the broker (the prefix and the process).
    pub name: String,
    pub queue: String,
    /// Unacked messages held at once, and so the handler tasks in flight.
    pub prefetch: u16,
    /// How long a stopping consumer waits for its handlers.
    pub drain_timeout: Duration,
}

/// Runs until `shutdown`, reconnecting as needed.
pub async fn run<H: Handler>(
    settings: &AmqpSettings,
    topology: &Topology,
    config: &ConsumerConfig,
    handler: Arc<H>,
    probe: &Probe,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match session(settings, topology, config, &handler, probe, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                probe.set_broker_up(false);
                tracing::warn!(error.message = %e, queue = %config.queue, "consumer lost its broker connection; reconnecting");
                backoff(failures, &shutdown).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// One connection's lifetime. `Ok` means a clean shutdown.
async fn session<H: Handler>(
    settings: &AmqpSettings,
    topology: &Topology,
    config: &ConsumerConfig,
    handler: &Arc<H>,
    probe: &Probe,
    shutdown: &CancellationToken,
) -> Result<(), AmqpError> {
    let conn = connect(&settings.url, &config.name).await?;
    let publisher = confirmed_channel(&conn).await?;
    topology.declare(&publisher).await?;

    let channel = conn.create_channel().await?;
    // The prefetch bounds the messages (and handler tasks) in flight; set
    // before consuming so it applies from the first message.
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!(
        "{}-{}",
        config.name.replace(' ', "-"),
        uuid::Uuid::now_v7().simple()
    );
    let mut consumer = channel
        .basic_consume(
            config.queue.clone().into(),
            tag.clone().into(),
            // Manual acks: a message leaves the queue only after its effects
            // are committed.
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    probe.set_broker_up(true);
    tracing::info!(queue = %config.queue, "consuming");

    let tracker = TaskTracker::new();
    let outcome = loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            () = shutdown.cancelled() => break Ok(()),
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => break Err(AmqpError::from(e)),
            None => break Err(AmqpError::NotConnected),
        };
        let handler = Arc::clone(handler);
        let publisher = publisher.clone();
        let span = tracing::info_span!("message", queue = %config.queue, delivery_tag = delivery.delivery_tag);
        tracker.spawn(
            async move {
                let disposition = handler.handle(&publisher, &delivery).await;
                let result = match disposition {
                    Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                    Disposition::Requeue => {
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await
                    }
                };
                if let Err(e) = result {
                    // The channel is gone; the broker requeues the message.
                    tracing::warn!(error.message = %e, "could not settle message");
                }
            }
            .instrument(span),
        );
    };

    if outcome.is_ok() {
        // Stop taking messages, then let the handlers finish.
        let _ = channel
            .basic_cancel(tag.into(), BasicCancelOptions::default())
            .await;
    }
    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(queue = %config.queue, "drain timed out; unfinished messages will be redelivered");
    }
    probe.set_broker_up(false);
    close(&conn, &channel).await;
    outcome
}

async fn close(conn: &Connection, channel: &Channel) {
    let _ = channel.close(200, "shutdown".into()).await;
    let _ = conn.close(200, "shutdown".into()).await;
}

/// Reads a string header of a message.
#[must_use]
pub fn header_str(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        lapin::types::AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
