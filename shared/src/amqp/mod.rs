//! RabbitMQ: the topology every process declares, connections, and
//! publishing with confirms; the consume loop and its failure model
//! ([`consumer`]); fair scheduling between tenants ([`fairness`]).
//!
//! Names all start with the configured prefix (`herald` by default), so one
//! broker can hold several installations, and every test its own.

pub mod consumer;
pub mod fairness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use secrecy::{ExposeSecret, SecretString};

use crate::runtime::config::{AmqpSettings, DeliveryMessages, QueueType, duration_name};

/// Why a publish or a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("broker error: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message matched no queue and was returned")]
    Unroutable,
    #[error("publisher confirms are not enabled on this channel")]
    NotConfirmed,
    #[error("not connected to the broker")]
    NotConnected,
    #[error("the message cannot be encoded: {0}")]
    Encode(String),
}

/// Header the api sets on the events it publishes (`http`), so the
/// dispatcher counts only events that came straight over AMQP.
pub const VIA_HEADER: &str = "x-herald-via";

/// The header that carries why a message was parked (invalid events,
/// exhausted deliveries).
pub const REASON_HEADER: &str = "x-herald-reason";

/// Every exchange and queue name, derived from the prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    tiers: Vec<Duration>,
    invalid_max_length: u32,
    failed_max_length: u32,
    queue_type: QueueType,
    /// New deliveries' messages are transient (see
    /// [`Self::transient_deliveries`]).
    transient_deliveries: bool,
}

impl Topology {
    /// # Errors
    /// Badly written retry tiers.
    pub fn new(settings: &AmqpSettings) -> anyhow::Result<Self> {
        Ok(Self {
            prefix: settings.prefix.clone(),
            tiers: settings.retry_tiers.clone(),
            invalid_max_length: settings.invalid_max_length,
            failed_max_length: settings.failed_max_length,
            queue_type: settings.queue_type,
            transient_deliveries: settings.delivery_messages == DeliveryMessages::Transient
                && settings.queue_type == QueueType::Classic
                && settings.broker_urls().len() == 1,
        })
    }

    /// The type of the hot and parking queues.
    #[must_use]
    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// Properties of a new delivery's message, as the dispatcher publishes
    /// it: transient or persistent (see [`Self::transient_deliveries`]).
    #[must_use]
    pub fn new_delivery_properties(&self, priority: u8) -> BasicProperties {
        let properties = json_properties().with_priority(priority);
        if self.transient_deliveries {
            properties.with_delivery_mode(1)
        } else {
            properties
        }
    }

    /// True when new deliveries' messages live only in the broker's
    /// memory, so that a broker restart loses them (the sweeper then
    /// publishes them again): `amqp.delivery_messages = "transient"` with
    /// classic queues on one broker. On a cluster a classic queue's node
    /// can restart while the node holding the epoch queue does not, and a
    /// quorum queue writes every message to disk anyway: messages are then
    /// persistent.
    #[must_use]
    pub fn transient_deliveries(&self) -> bool {
        self.transient_deliveries
    }

    /// A non-durable queue the broker forgets, with its marker message,
    /// when it restarts: while it holds the marker, no transient message
    /// has been lost since the marker was put there.
    #[must_use]
    pub fn epoch_queue(&self) -> String {
        format!("{}.epoch", self.prefix)
    }

    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Topic exchange producers publish events to (routing key = event type).
    #[must_use]
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// The dispatcher's queue, bound to the events exchange with `#`.
    #[must_use]
    pub fn dispatch_queue(&self) -> String {
        format!("{}.dispatch", self.prefix)
    }
    /// Events that cannot be parsed or have no (known) tenant.
    #[must_use]
    pub fn invalid_queue(&self) -> String {
        format!("{}.events.invalid", self.prefix)
    }
    /// Direct exchange and queue of the same name: one message per
    /// (event, webhook). The routing key is the queue name.
    #[must_use]
    pub fn deliveries(&self) -> String {
        format!("{}.deliveries", self.prefix)
    }
    /// Direct exchange in front of the retry tier queues.
    #[must_use]
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }
    /// The queue of one retry tier, named by its TTL (`herald.retry.5s`).
    #[must_use]
    pub fn retry_queue(&self, tier: Duration) -> String {
        format!("{}.retry.{}", self.prefix, duration_name(tier))
    }
    /// Deliveries whose retries are exhausted.
    #[must_use]
    pub fn failed_queue(&self) -> String {
        format!("{}.deliveries.failed", self.prefix)
    }
    #[must_use]
    pub fn retry_tiers(&self) -> &[Duration] {
        &self.tiers
    }

    /// Every queue, for teardown and for the queue-depth gauge.
    #[must_use]
    pub fn queues(&self) -> Vec<String> {
        let mut q = vec![
            self.dispatch_queue(),
            self.invalid_queue(),
            self.deliveries(),
            self.failed_queue(),
        ];
        q.extend(self.tiers.iter().map(|t| self.retry_queue(*t)));
        q
    }

    #[must_use]
    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.events_exchange(),
            self.deliveries(),
            self.retry_exchange(),
        ]
    }

    /// Declares everything. Idempotent: every process calls it at start, and
    /// declaring what exists with the same arguments is a no-op.
    ///
    /// # Errors
    /// A broker error, including an existing queue with other arguments.
    pub async fn declare(&self, conn: &Connection) -> Result<(), AmqpError> {
        let ch = conn.create_channel().await?;
        self.declare_on(&ch).await?;
        // The hot queues are priority queues (fair scheduling between
        // tenants); one declared by an older Herald without it is used as
        // it is.
        for queue in [self.dispatch_queue(), self.deliveries()] {
            match self.queue_type {
                QueueType::Classic => declare_hot_queue(conn, &queue).await?,
                QueueType::Quorum => {
                    ch.queue_declare(queue.into(), durable(), quorum(FieldTable::default()))
                        .await?;
                }
            }
        }
        ch.queue_bind(
            self.dispatch_queue().into(),
            self.events_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            self.deliveries().into(),
            self.deliveries().into(),
            self.deliveries().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    async fn declare_on(&self, ch: &Channel) -> Result<(), AmqpError> {
        // Durable so that the topology and persistent messages survive a
        // broker restart; not auto-delete, since consumers come and go.
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.exchange_declare(
            self.events_exchange().into(),
            ExchangeKind::Topic,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.deliveries().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.retry_exchange().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;

        // Parking queues are bounded: when full the oldest message goes, so
        // a flood of bad input cannot fill the broker's disk.
        let parking = |max_length| match self.queue_type {
            QueueType::Classic => bounded(max_length),
            QueueType::Quorum => quorum(bounded(max_length)),
        };
        ch.queue_declare(
            self.invalid_queue().into(),
            durable_queue,
            parking(self.invalid_max_length),
        )
        .await?;
        ch.queue_declare(
            self.failed_queue().into(),
            durable_queue,
            parking(self.failed_max_length),
        )
        .await?;

        for tier in &self.tiers {
            let name = self.retry_queue(*tier);
            let mut args = FieldTable::default();
            // Quorum queues with at-least-once dead-lettering: a message whose
            // TTL ends is moved back to the deliveries exchange and is not
            // dropped on the way (classic queues dead-letter at most once).
            args.insert("x-queue-type".into(), long_string("quorum"));
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(tier.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                long_string(&self.deliveries()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(&self.deliveries()),
            );
            ch.queue_declare(name.clone().into(), durable_queue, args)
                .await?;
            ch.queue_bind(
                name.clone().into(),
                self.retry_exchange().into(),
                name.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Whether the broker's epoch is intact: declares the epoch queue
    /// ([`Self::epoch_queue`], not durable, so the broker forgets it and
    /// its message when it restarts) and answers whether it holds its
    /// marker message ([`Self::mark_epoch`]). A declare rather than a
    /// passive look, so that a missing queue does not close the channel.
    ///
    /// # Errors
    /// A broker error.
    pub async fn epoch_intact(&self, conn: &Connection) -> Result<bool, AmqpError> {
        let ch = conn.create_channel().await?;
        let queue = ch
            .queue_declare(
                self.epoch_queue().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let _ = ch.close(200, "checked".into()).await;
        Ok(queue.message_count() > 0)
    }

    /// Puts the marker message in the epoch queue, on `conn`, and waits for
    /// its confirm. Fails when `conn` has been lost (the broker restarted
    /// since it was opened), so a restart after a sweep began is never
    /// marked as seen.
    ///
    /// # Errors
    /// A broker error.
    pub async fn mark_epoch(&self, conn: &Connection) -> Result<(), AmqpError> {
        let ch = confirmed_channel(conn).await?;
        publish_confirmed(
            &ch,
            "",
            &self.epoch_queue(),
            b"{}",
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await?;
        let _ = ch.close(200, "marked".into()).await;
        Ok(())
    }

    /// Deletes every queue and exchange of this prefix (tests' teardown).
    ///
    /// # Errors
    /// A broker error.
    pub async fn delete(&self, ch: &Channel) -> Result<(), AmqpError> {
        for q in self.queues().into_iter().chain([self.epoch_queue()]) {
            ch.queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        for e in self.exchanges() {
            ch.exchange_delete(e.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Declares a hot queue as a priority queue; if it exists without the
/// argument (declared by an older Herald), declares it as it is and says
/// that tenants are not prioritised until it is re-created.
async fn declare_hot_queue(conn: &Connection, name: &str) -> Result<(), AmqpError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::ShortShortUInt(fairness::MAX_PRIORITY),
    );
    let ch = conn.create_channel().await?;
    match ch.queue_declare(name.into(), durable, args).await {
        Ok(_) => {
            let _ = ch.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) if is_precondition_failed(&e) => {
            tracing::warn!(
                queue = name,
                "the queue exists without x-max-priority: tenants share it first-in first-out until it is drained, deleted and declared again by a Herald process"
            );
            let ch = conn.create_channel().await?;
            ch.queue_declare(name.into(), durable, FieldTable::default())
                .await?;
            let _ = ch.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// `args` for a quorum queue (replicated across the cluster's nodes).
fn quorum(mut args: FieldTable) -> FieldTable {
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn bounded(max_length: u32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(max_length)),
    );
    args.insert("x-overflow".into(), long_string("drop-head"));
    args
}

/// Opens a connection named after the process, so the broker's management
/// view tells processes apart.
///
/// # Errors
/// The broker cannot be reached or refuses the credentials.
pub async fn connect(url: &SecretString, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url.expose_secret(), props).await?)
}

/// The brokers a process may connect to (`amqp.urls`, else `amqp.url`),
/// tried in turn: a connection attempt starts at the broker after the last
/// one that failed, so a process that lost a node moves to the next.
#[derive(Clone)]
pub struct Brokers {
    urls: Arc<[SecretString]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Brokers({} urls)", self.urls.len())
    }
}

/// How long one broker may take to accept a connection before the next is
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Brokers {
    #[must_use]
    pub fn new(urls: Vec<SecretString>) -> Self {
        Self {
            urls: urls.into(),
            next: Arc::default(),
        }
    }

    #[must_use]
    pub fn from_settings(settings: &AmqpSettings) -> Self {
        Self::new(settings.broker_urls())
    }

    /// Connects to the first broker that answers, starting where the last
    /// failure left off.
    ///
    /// # Errors
    /// No broker could be reached (the last one's error).
    pub async fn connect(&self, name: &str) -> Result<Connection, AmqpError> {
        use std::sync::atomic::Ordering;
        let count = self.urls.len();
        let mut last = AmqpError::NotConnected;
        for _ in 0..count.max(1) {
            let i = self.next.load(Ordering::Relaxed) % count.max(1);
            let Some(url) = self.urls.get(i) else {
                break;
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(url, name)).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => last = e,
                Err(_) => last = AmqpError::NotConnected,
            }
            if count > 1 {
                tracing::warn!(broker = i, error.message = %last, "broker unavailable; trying the next");
            }
            // Only the caller that saw broker `i` fail moves everyone on.
            let _ = self.next.compare_exchange(
                i,
                (i + 1) % count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Err(last)
    }
}

/// A channel with publisher confirms enabled.
///
/// # Errors
/// A broker error.
pub async fn confirmed_channel(conn: &Connection) -> Result<Channel, AmqpError> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// Properties of every Herald message: persistent JSON.
#[must_use]
pub fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

/// Publishes one message as `mandatory` and waits until the broker has
/// confirmed it (for a durable queue: written to disk).
///
/// # Errors
/// A broker error, a nack, or a message that matched no queue.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), AmqpError> {
    confirmation(publish(ch, exchange, routing_key, body, properties).await?).await
}

/// Publishes one message as `mandatory` without waiting for its confirm:
/// answers the confirm, for [`confirmation`] (several publishes can then
/// wait for theirs together, or later).
///
/// # Errors
/// A broker error.
pub async fn publish(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<PublisherConfirm, AmqpError> {
    let options = BasicPublishOptions {
        // Returned rather than silently dropped when no queue is bound.
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    Ok(ch
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            options,
            body,
            properties,
        )
        .await?)
}

/// Waits for a [`publish`]'s confirm.
///
/// # Errors
/// A broker error, a nack, or a message that matched no queue.
pub async fn confirmation(confirm: PublisherConfirm) -> Result<(), AmqpError> {
    match confirm.await? {
        // `Ack` with a message is the broker confirming that it returned an
        // unroutable message: nothing was stored.
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(AmqpError::Unroutable),
        Confirmation::Nack(_) => Err(AmqpError::Nacked),
        Confirmation::NotRequested => Err(AmqpError::NotConfirmed),
    }
}

/// A publisher that connects lazily and reconnects after a failure, for
/// request handlers: a call made while the broker is away fails fast with
/// [`AmqpError::NotConnected`] or a broker error, and the next call tries
/// to connect again.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    brokers: Brokers,
    name: String,
    /// The live connection and its confirmed channel; `None` after a failure.
    current: Mutex<Option<(Arc<Connection>, Channel)>>,
    /// Held while connecting so that a burst of requests opens one
    /// connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// When the last attempt to connect failed: for a second after it,
    /// calls fail at once instead of queueing behind another attempt.
    failed_at: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Publisher {
    #[must_use]
    pub fn new(brokers: Brokers, name: &str) -> Self {
        Self {
            inner: Arc::new(PublisherInner {
                brokers,
                name: name.to_owned(),
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: Mutex::new(None),
            }),
        }
    }

    /// The live channel, connecting first if needed.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub async fn channel(&self) -> Result<Channel, AmqpError> {
        if let Some(ch) = self.live() {
            return Ok(ch);
        }
        if self.recently_failed() {
            return Err(AmqpError::NotConnected);
        }
        let _guard = self.inner.connecting.lock().await;
        if let Some(ch) = self.live() {
            return Ok(ch);
        }
        if self.recently_failed() {
            return Err(AmqpError::NotConnected);
        }
        let connected = async {
            let conn = self.inner.brokers.connect(&self.inner.name).await?;
            let ch = confirmed_channel(&conn).await?;
            Ok::<_, AmqpError>((conn, ch))
        }
        .await;
        let mut failed_at = self
            .inner
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match connected {
            Ok((conn, ch)) => {
                *failed_at = None;
                *self.lock() = Some((Arc::new(conn), ch.clone()));
                Ok(ch)
            }
            Err(e) => {
                *failed_at = Some(std::time::Instant::now());
                Err(e)
            }
        }
    }

    /// Messages ready in each of `queues` (`None` for one that does not
    /// exist), asked on a channel of its own so that a missing queue, which
    /// makes the broker close the channel, cannot close the publishing one.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub async fn queue_depths(&self, queues: &[String]) -> Result<Vec<Option<u32>>, AmqpError> {
        queue_depths(&*self.connection().await?, queues).await
    }

    /// The live connection, connecting first if needed.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub async fn connection(&self) -> Result<Arc<Connection>, AmqpError> {
        self.channel().await?;
        self.lock()
            .as_ref()
            .map(|(conn, _)| Arc::clone(conn))
            .ok_or(AmqpError::NotConnected)
    }

    /// True while the channel is open.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.live().is_some()
    }

    /// Publishes with confirms; on a broker error the connection is dropped
    /// so the next call reconnects.
    ///
    /// # Errors
    /// See [`publish_confirmed`].
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let ch = self.channel().await?;
        let result = publish_confirmed(&ch, exchange, routing_key, body, properties).await;
        if let Err(AmqpError::Lapin(_)) = &result {
            self.reset();
        }
        result
    }

    /// Publishes delivery messages to the deliveries exchange, pipelined,
    /// and waits for every confirm.
    ///
    /// # Errors
    /// See [`publish_confirmed`]; some messages may have gone out.
    pub async fn publish_deliveries(
        &self,
        topology: &Topology,
        messages: &[crate::models::DeliveryMessage],
        priority: u8,
    ) -> Result<(), AmqpError> {
        let exchange = topology.deliveries();
        let bodies = messages
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AmqpError::Encode(e.to_string()))?;
        let properties = json_properties().with_priority(priority);
        futures_util::future::try_join_all(
            bodies
                .iter()
                .map(|body| self.publish(&exchange, &exchange, body, properties.clone())),
        )
        .await?;
        Ok(())
    }

    fn recently_failed(&self) -> bool {
        self.inner
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    }

    fn live(&self) -> Option<Channel> {
        let guard = self.lock();
        match guard.as_ref() {
            Some((conn, ch)) if conn.status().connected() && ch.status().connected() => {
                Some(ch.clone())
            }
            _ => None,
        }
    }

    fn reset(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<Connection>, Channel)>> {
        // A poisoned lock only means another thread panicked mid-swap; the
        // Option inside is still a valid value.
        self.inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Messages ready in each of `queues` (`None` for one that does not exist),
/// asked on a channel of its own so that a missing queue, which makes the
/// broker close the channel, cannot close another.
///
/// # Errors
/// The broker cannot be reached.
pub async fn queue_depths(
    conn: &Connection,
    queues: &[String],
) -> Result<Vec<Option<u32>>, AmqpError> {
    let mut out = Vec::with_capacity(queues.len());
    let mut ch = conn.create_channel().await?;
    for q in queues {
        let declared = ch
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(queue) => out.push(Some(queue.message_count())),
            Err(_) => {
                out.push(None);
                ch = conn.create_channel().await?;
            }
        }
    }
    let _ = ch.close(200, "done".into()).await;
    Ok(out)
}

/// Sleeps for an exponential backoff step (0.2 s doubling to 10 s), or
/// returns early when the token is cancelled.
pub async fn backoff(attempt: u32, shutdown: &tokio_util::sync::CancellationToken) {
    let ms = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => {}
        () = shutdown.cancelled() => {}
    }
}
