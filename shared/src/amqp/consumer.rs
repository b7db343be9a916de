//! The consume loop the dispatcher and the worker share: connect, declare
//! the topology, consume with a prefetch, hand each message to a handler
//! task, and settle it by what the handler answers. A lost connection is
//! reconnected with backoff; shutdown stops consuming, drains what is in
//! flight (bounded), then closes, so the broker requeues anything unacked.
//!
//! What becomes of a message whose handler failed is decided here, once,
//! by the kind of [`HandlerError`]: nothing is retried without a bound, and
//! nothing is dropped without being parked with its reason.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection};
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::amqp::{
    AmqpError, REASON_HEADER, Topology, backoff, confirmed_channel, publish_confirmed,
};
use crate::db::{DbError, FailureKind};
use crate::runtime::config::AmqpSettings;
use crate::runtime::health::Probe;

/// Header counting how many times a message failed transiently.
pub const TRIES_HEADER: &str = "x-herald-tries";

/// A message that failed transiently this many times is parked.
pub const MAX_TRIES: u32 = 8;

/// Why a handler did not finish a message; the kind decides what becomes of
/// it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Something the handler needs is down (no database connection, the
    /// broker gone): the message goes back to its queue after a pause,
    /// uncounted, however long the outage lasts.
    #[error("{0}")]
    Unavailable(String),
    /// It failed this time for a reason that may pass: it goes to the back
    /// of its queue after a pause, counted in [`TRIES_HEADER`], and is
    /// parked after [`MAX_TRIES`].
    #[error("{0}")]
    Transient(String),
    /// It can never succeed: it is parked at once with its reason.
    #[error("{0}")]
    Permanent(String),
}

impl From<DbError> for HandlerError {
    fn from(e: DbError) -> Self {
        match e.kind() {
            FailureKind::Unavailable => Self::Unavailable(e.to_string()),
            FailureKind::Transient => Self::Transient(e.to_string()),
            FailureKind::Permanent => Self::Permanent(e.to_string()),
        }
    }
}

impl From<AmqpError> for HandlerError {
    fn from(e: AmqpError) -> Self {
        match e {
            // The broker refused or returned this message: counted, since
            // a policy or a full queue may not pass.
            AmqpError::Nacked | AmqpError::Unroutable => Self::Transient(e.to_string()),
            AmqpError::Encode(_) => Self::Permanent(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// Processes one message. The channel given is the process's confirmed
/// publishing channel.
pub trait Handler: Send + Sync + 'static {
    /// `Ok` once the message's effects are committed (and any publish
    /// confirmed): it is acked.
    fn handle(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once a message has been parked, to leave a record beside it
    /// (for example a delivery's status). Best effort.
    fn parked(&self, delivery: &Delivery, reason: &str) -> impl Future<Output = ()> + Send {
        let _ = (delivery, reason);
        async {}
    }
}

/// How a consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection name shown by the broker (the prefix and the process).
    pub name: String,
    pub queue: String,
    /// Where messages that cannot be processed are parked, with their
    /// reason in [`REASON_HEADER`].
    pub park_queue: String,
    /// Counts the messages parked.
    pub parked: IntCounter,
    /// Unacked messages held at once, and so the handler tasks in flight.
    pub prefetch: u16,
    /// How long a stopping consumer waits for its handlers.
    pub drain_timeout: Duration,
    /// The pause before a failed message goes back to its queue; it doubles
    /// with each counted try, up to [`MAX_PAUSE`].
    pub pause: Duration,
}

/// The longest pause before a failed message goes back.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);

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
    let brokers = super::Brokers::from_settings(settings);
    while !shutdown.is_cancelled() {
        match session(&brokers, topology, config, &handler, probe, &shutdown).await {
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
    brokers: &super::Brokers,
    topology: &Topology,
    config: &ConsumerConfig,
    handler: &Arc<H>,
    probe: &Probe,
    shutdown: &CancellationToken,
) -> Result<(), AmqpError> {
    let conn = brokers.connect(&config.name).await?;
    topology.declare(&conn).await?;
    let publisher = confirmed_channel(&conn).await?;

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
        let config = config.clone();
        let span = tracing::info_span!("message", queue = %config.queue, delivery_tag = delivery.delivery_tag);
        tracker.spawn(
            async move {
                let outcome = handler.handle(&publisher, &delivery).await;
                let settled = settle(&*handler, &publisher, &config, &delivery, outcome).await;
                if let Err(e) = settled {
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

/// Acks, requeues, sends to the back of the queue with its count, or parks
/// a message, by how its handler ended.
async fn settle<H: Handler>(
    handler: &H,
    publisher: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    outcome: Result<(), HandlerError>,
) -> Result<bool, lapin::Error> {
    let tries = tries(delivery);
    let reason = match outcome {
        Ok(()) => return delivery.acker.ack(BasicAckOptions::default()).await,
        Err(HandlerError::Unavailable(reason)) => {
            tracing::warn!(%reason, "message not processed; it waits for its dependency");
            tokio::time::sleep(config.pause).await;
            return requeue(delivery).await;
        }
        Err(HandlerError::Transient(reason)) if tries + 1 < MAX_TRIES => {
            tracing::warn!(%reason, tries = tries + 1, "message not processed; it will be tried again");
            tokio::time::sleep(pause(config.pause, tries)).await;
            let mut properties = delivery.properties.clone();
            let mut headers = properties.headers().clone().unwrap_or_default();
            headers.insert(TRIES_HEADER.into(), AMQPValue::LongUInt(tries + 1));
            properties = properties.with_headers(headers);
            // A copy, counted, at the back of the queue; then the original
            // goes. A crash between the two leaves a duplicate, never a loss.
            return match publish_confirmed(publisher, "", &config.queue, &delivery.data, properties)
                .await
            {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error.message = %e, "could not send the message back; requeueing it");
                    requeue(delivery).await
                }
            };
        }
        Err(HandlerError::Transient(reason)) => {
            format!("gave up after {MAX_TRIES} tries: {reason}")
        }
        Err(HandlerError::Permanent(reason)) => reason,
    };
    park(handler, publisher, config, delivery, &reason).await
}

/// A park reason's length in characters, at most.
const MAX_REASON_CHARS: usize = 2000;

/// Moves a message to the park queue with its reason, then acks it.
async fn park<H: Handler>(
    handler: &H,
    publisher: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    reason: &str,
) -> Result<bool, lapin::Error> {
    // A reason may quote the message: bounded, so that the header always
    // fits in a frame and the message is parked rather than requeued.
    let reason = &crate::text::excerpt(reason.as_bytes(), MAX_REASON_CHARS);
    tracing::warn!(%reason, queue = %config.park_queue, "message parked");
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        REASON_HEADER.into(),
        AMQPValue::LongString(LongString::from(reason.as_bytes().to_vec())),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    // The default exchange routes by queue name.
    match publish_confirmed(
        publisher,
        "",
        &config.park_queue,
        &delivery.data,
        properties,
    )
    .await
    {
        Ok(()) => {
            config.parked.inc();
            handler.parked(delivery, reason).await;
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        Err(e) => {
            tracing::warn!(error.message = %e, "could not park the message; requeueing it");
            tokio::time::sleep(config.pause).await;
            requeue(delivery).await
        }
    }
}

async fn requeue(delivery: &Delivery) -> Result<bool, lapin::Error> {
    delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
}

/// Whether the message may have been processed, in part, before: the
/// broker redelivered it, or it is a copy sent back after a failure (its
/// effects may be half done, e.g. rows committed but messages not
/// published).
#[must_use]
pub fn seen_before(delivery: &Delivery) -> bool {
    delivery.redelivered || tries(delivery) > 0
}

/// How many times a message has failed transiently so far.
fn tries(delivery: &Delivery) -> u32 {
    let Some(headers) = delivery.properties.headers().as_ref() else {
        return 0;
    };
    match headers.inner().get(TRIES_HEADER) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

/// The pause before the try after `tries` failures: doubling, capped.
fn pause(base: Duration, tries: u32) -> Duration {
    base.saturating_mul(1 << tries.min(16)).min(MAX_PAUSE)
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
