//! Storing events in batches. Each message's task hands its checked event
//! to one store task and waits; the store task takes whatever has gathered
//! (up to [`MAX_BATCH`]), writes every event and delivery row in one
//! transaction, publishes every delivery message (pipelined) and waits for
//! the broker's confirms, and only then answers each task, which acks its
//! message. At high rates one commit serves many events; at low rates an
//! event is stored at once, alone, with no added wait.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::future::try_join_all;
use herald_shared::amqp::consumer::HandlerError;
use herald_shared::amqp::{Topology, json_properties, publish_confirmed};
use herald_shared::db::DbError;
use herald_shared::db::deliveries::{self, NewDelivery, NewEvent};
use herald_shared::models::{DeliveryMessage, Severity};
use herald_shared::runtime::metrics::Metrics;
use lapin::Channel;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Events stored in one transaction at most.
pub const MAX_BATCH: usize = 128;

/// An event checked and matched, ready to be stored.
#[derive(Debug)]
pub struct Job {
    pub tenant_id: Uuid,
    pub id: String,
    pub event_type: String,
    pub data: Box<RawValue>,
    pub severity: Option<Severity>,
    pub source: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The webhooks it goes to.
    pub webhooks: Vec<Uuid>,
    /// The broker delivered its message before (a crash may have left its
    /// deliveries unpublished).
    pub redelivered: bool,
    /// The channel to publish its deliveries on (the consumer session's).
    pub publisher: Channel,
    /// Its delivery messages' priority (see [`herald_shared::amqp::fairness`]).
    pub priority: u8,
}

type Reply = oneshot::Sender<Result<usize, HandlerError>>;

#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<(Job, Reply)>,
}

impl Store {
    /// Starts the store task; it ends when every `Store` is dropped.
    #[must_use]
    pub fn spawn(pool: Pool, topology: Topology, metrics: Metrics, window: Duration) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let storage = Storage {
            pool,
            topology,
            window,
        };
        tokio::spawn(run(storage, metrics, rx));
        Self { tx }
    }

    /// Stores the event and its deliveries and publishes them; answers how
    /// many deliveries it created (none for a repeat).
    ///
    /// # Errors
    /// The database or broker failed, or this event cannot be stored
    /// (another event of the same batch never fails it).
    pub async fn submit(&self, job: Job) -> Result<usize, HandlerError> {
        let stopped = || HandlerError::Unavailable("the store has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.tx.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Where and how events are stored.
#[derive(Debug)]
struct Storage {
    pool: Pool,
    topology: Topology,
    /// An event id seen within this window is a repeat.
    window: Duration,
}

async fn run(storage: Storage, metrics: Metrics, mut rx: mpsc::Receiver<(Job, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        match store(&storage, &jobs).await {
            Ok(created) => {
                metrics
                    .deliveries_created
                    .inc_by(created.iter().sum::<usize>() as u64);
                for (reply, n) in replies.into_iter().zip(created) {
                    let _ = reply.send(Ok(n));
                }
            }
            // One event must not sink the others: unless the database or
            // broker is out of reach (then every event waits alike), each
            // is stored alone, so only the one at fault fails.
            Err(e) if jobs.len() > 1 && !matches!(e, HandlerError::Unavailable(_)) => {
                tracing::debug!(error.message = %e, events = jobs.len(), "batch failed; storing its events one by one");
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let result = store(&storage, std::slice::from_ref(&job)).await;
                    if let Ok(created) = &result {
                        metrics
                            .deliveries_created
                            .inc_by(created.iter().sum::<usize>() as u64);
                    }
                    let _ = reply.send(result.map(|c| c.first().copied().unwrap_or(0)));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One batch: rows in one transaction, then every delivery message,
/// confirmed. Answers how many deliveries each job created.
async fn store(storage: &Storage, jobs: &[Job]) -> Result<Vec<usize>, HandlerError> {
    let mut client = storage.pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let events: Vec<NewEvent<'_>> = jobs
        .iter()
        .map(|j| NewEvent {
            tenant_id: j.tenant_id,
            id: &j.id,
            event_type: &j.event_type,
            data: &j.data,
            severity: j.severity,
            source: j.source.as_deref(),
            occurred_at: j.occurred_at,
            received_at: j.received_at,
        })
        .collect();
    let stored = deliveries::insert_events(&tx, &events, storage.window).await?;
    // The job that stored each event (the first with its key: a repeat in
    // the same batch stores nothing).
    let mut owner: HashMap<(Uuid, &str), usize> = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        owner.entry((j.tenant_id, j.id.as_str())).or_insert(i);
    }
    let storing: Vec<usize> = stored
        .iter()
        .filter_map(|(tenant, id)| owner.get(&(*tenant, id.as_str())).copied())
        .collect();
    let rows: Vec<NewDelivery<'_>> = storing
        .iter()
        .flat_map(|&i| {
            let event = &events[i];
            jobs[i].webhooks.iter().map(move |w| event.delivery(*w))
        })
        .collect();
    let created = deliveries::insert_deliveries(&tx, &rows).await?;
    tx.commit().await.map_err(DbError::from)?;

    let mut counts = vec![0usize; jobs.len()];
    let mut messages = Vec::with_capacity(created.len());
    for (delivery_id, tenant, event_id, webhook_id) in &created {
        if let Some(&i) = owner.get(&(*tenant, event_id.as_str())) {
            counts[i] += 1;
            messages.push((i, events[i].message(*delivery_id, *webhook_id)));
        }
    }
    // Events stored before: a producer's repeat needs nothing more; a
    // redelivery may be ours after a crash between commit and publish, so
    // whatever was never attempted is published again.
    for (i, j) in jobs.iter().enumerate() {
        if j.redelivered
            && !storing.contains(&i)
            && let Some((stored, pending)) =
                deliveries::unattempted_deliveries(&client, j.tenant_id, &j.id).await?
        {
            // The first payload stands: the messages carry the stored event.
            for (delivery_id, webhook_id) in pending {
                let mut m = events[i].message(delivery_id, webhook_id);
                m.event_type = stored.event_type.clone();
                m.data = stored.data.clone();
                m.severity = stored.severity;
                m.source = stored.source.clone();
                m.occurred_at = stored.occurred_at;
                m.received_at = stored.received_at;
                messages.push((i, m));
            }
        }
    }
    drop(client);
    publish(&storage.topology, jobs, &messages).await?;
    Ok(counts)
}

/// Publishes every message on its job's channel, pipelined, and waits for
/// every confirm.
async fn publish(
    topology: &Topology,
    jobs: &[Job],
    messages: &[(usize, DeliveryMessage)],
) -> Result<(), HandlerError> {
    let exchange = topology.deliveries();
    let bodies = messages
        .iter()
        .map(|(i, m)| serde_json::to_vec(m).map(|b| (*i, b)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HandlerError::Permanent(format!("cannot encode a delivery: {e}")))?;
    try_join_all(bodies.iter().map(|(i, body)| {
        publish_confirmed(
            &jobs[*i].publisher,
            &exchange,
            &exchange,
            body,
            json_properties().with_priority(jobs[*i].priority),
        )
    }))
    .await?;
    Ok(())
}
