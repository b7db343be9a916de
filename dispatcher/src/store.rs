//! Storing events in batches. Each message's task hands its checked event
//! to one store task and waits; the store task takes whatever has gathered
//! (up to [`MAX_BATCH`]), writes every event and delivery row in one
//! transaction, publishes every delivery message (pipelined), and goes on
//! to the next batch. The batch's tasks are answered (and ack their
//! messages) by the settle task, once the broker has confirmed every
//! delivery message and the transaction is on disk. At high rates one
//! commit serves many events (after a crowded batch the next waits up to
//! [`GATHER`] to fill); at low rates an event is stored at once, alone,
//! with no added wait.
//!
//! The transaction commits without waiting for its write-ahead log to
//! reach the disk (`synchronous_commit = off`, for that transaction only):
//! a delivery is published, and can be made, without waiting for a disk.
//! Nothing is lost by it, because an event message is acked only after a
//! later synchronous commit (the settle task's) has flushed the log past
//! the batch's commit. If Postgres stops before that, the batch's rows may
//! be gone, but its event messages are not acked: the broker delivers them
//! again, and they are stored and published again (a duplicate delivery,
//! never a lost one).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::future::{join_all, try_join_all};
use herald_shared::amqp::consumer::HandlerError;
use herald_shared::amqp::{Topology, confirmation, publish};
use herald_shared::db::DbError;
use herald_shared::db::deliveries::{self, NewDelivery, NewEvent};
use herald_shared::models::{DeliveryMessage, Severity};
use herald_shared::runtime::metrics::Metrics;
use lapin::{Channel, PublisherConfirm};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Events stored in one transaction at most.
pub const MAX_BATCH: usize = 128;

/// A batch at least this large means load: the next one waits up to
/// [`GATHER`] to fill.
const CROWD: usize = 4;

/// How long a batch under load waits to fill.
const GATHER: Duration = Duration::from_millis(1);

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
        let (settling, settle_rx) = mpsc::unbounded_channel();
        tokio::spawn(settle(storage.pool.clone(), settle_rx));
        tokio::spawn(run(storage, metrics, rx, settling));
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

/// A stored and published batch, waiting to be answered.
struct Settling {
    /// The broker's confirms of its delivery messages.
    confirms: Vec<PublisherConfirm>,
    /// Each job's task and how many deliveries it created.
    replies: Vec<(Reply, usize)>,
}

async fn run(
    storage: Storage,
    metrics: Metrics,
    mut rx: mpsc::Receiver<(Job, Reply)>,
    settling: mpsc::UnboundedSender<Settling>,
) {
    // How many events the last batch held.
    let mut last = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Under load (the last batch was a crowd), a moment more for the
        // batch to fill: fewer, larger transactions. An event that comes
        // alone is stored at once.
        if last >= CROWD {
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    _ => break,
                }
            }
        }
        last = batch.len();
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        match store(&storage, &jobs).await {
            Ok((created, confirms)) => {
                metrics
                    .deliveries_created
                    .inc_by(created.iter().sum::<usize>() as u64);
                let replies = replies.into_iter().zip(created).collect();
                let _ = settling.send(Settling { confirms, replies });
            }
            // One event must not sink the others: unless the database or
            // broker is out of reach (then every event waits alike), each
            // is stored alone, so only the one at fault fails.
            Err(e) if jobs.len() > 1 && !matches!(e, HandlerError::Unavailable(_)) => {
                tracing::debug!(error.message = %e, events = jobs.len(), "batch failed; storing its events one by one");
                for (job, reply) in jobs.into_iter().zip(replies) {
                    match store(&storage, std::slice::from_ref(&job)).await {
                        Ok((created, confirms)) => {
                            let n = created.first().copied().unwrap_or(0);
                            metrics.deliveries_created.inc_by(n as u64);
                            let replies = vec![(reply, n)];
                            let _ = settling.send(Settling { confirms, replies });
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
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

/// Answers stored batches as they become safe to ack: their delivery
/// messages confirmed and their rows on disk. Whatever has gathered is
/// answered together, after one synchronous commit (which flushes the log
/// past every commit made before it, so past every batch gathered).
async fn settle(pool: Pool, mut rx: mpsc::UnboundedReceiver<Settling>) {
    // This process's row in `wal_flushes`.
    let process = Uuid::now_v7();
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let confirms = group.iter_mut().map(|s| {
            try_join_all(
                std::mem::take(&mut s.confirms)
                    .into_iter()
                    .map(confirmation),
            )
        });
        let (confirmed, flushed) = tokio::join!(join_all(confirms), flush(&pool, process));
        for (settled, confirmed) in group.into_iter().zip(confirmed) {
            let result = match (confirmed, &flushed) {
                (Err(e), _) => Err(HandlerError::from(e)),
                (Ok(_), Err(e)) => Err(e.clone()),
                (Ok(_), Ok(())) => Ok(()),
            };
            for (reply, n) in settled.replies {
                let _ = reply.send(result.clone().map(|()| n));
            }
        }
    }
}

/// A commit of a transaction of its own that writes (its process's row in
/// `wal_flushes`: a transaction that writes nothing does not wait for the
/// disk) and waits as the database is configured (`synchronous_commit`,
/// `on` by default; with synchronous standbys, for them too). When it
/// returns, the write-ahead log is on disk past every commit that returned
/// before it.
async fn flush(pool: &Pool, process: Uuid) -> Result<(), HandlerError> {
    let client = pool.get().await.map_err(DbError::from)?;
    deliveries::flush_wal(&client, process).await?;
    Ok(())
}

/// One batch: rows in one transaction, then every delivery message,
/// published. Answers how many deliveries each job created, and the
/// messages' confirms.
async fn store(
    storage: &Storage,
    jobs: &[Job],
) -> Result<(Vec<usize>, Vec<PublisherConfirm>), HandlerError> {
    let client = storage.pool.get().await.map_err(DbError::from)?;
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
    // The job that stored each event (the first with its key).
    let owner = owners(jobs);
    let written = write(&client, jobs, &owner, &events, storage.window).await;
    let (storing, created) = match written {
        Ok(written) => written,
        Err(e) => {
            // The transaction failed midway: ended before the connection
            // goes back to the pool.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
    };
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
                // The first message may have gone out before the crash.
                m.republished = true;
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
    let confirms = publish_all(&storage.topology, jobs, &messages).await?;
    Ok((counts, confirms))
}

/// The first job of each key in a batch: the one that stores the event (a
/// repeat in the same batch stores nothing).
fn owners(jobs: &[Job]) -> HashMap<(Uuid, &str), usize> {
    let mut owner = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        owner.entry((j.tenant_id, j.id.as_str())).or_insert(i);
    }
    owner
}

/// The batch's transaction, in two round trips: `BEGIN` with the events,
/// then the deliveries with `COMMIT`. Answers which jobs stored their event
/// (by `owner`, each key's first job) and the deliveries created. On an
/// error the transaction is left open (or aborted) for the caller to roll
/// back.
async fn write(
    client: &deadpool_postgres::Client,
    jobs: &[Job],
    owner: &HashMap<(Uuid, &str), usize>,
    events: &[NewEvent<'_>],
    window: Duration,
) -> Result<(Vec<usize>, Vec<(Uuid, Uuid, String, Uuid)>), DbError> {
    let begin = async {
        client
            .batch_execute("BEGIN; SET LOCAL synchronous_commit = off")
            .await
            .map_err(DbError::from)
    };
    let (_, stored) = tokio::try_join!(begin, deliveries::insert_events(client, events, window))?;
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
    // A `COMMIT` after a failed statement ends the transaction as a
    // rollback and answers no error: the statement's error is the answer.
    let commit = async { client.batch_execute("COMMIT").await.map_err(DbError::from) };
    let (created, ()) = tokio::try_join!(deliveries::insert_deliveries(client, &rows), commit)?;
    Ok((storing, created))
}

/// Publishes every message on its job's channel, pipelined; answers their
/// confirms.
async fn publish_all(
    topology: &Topology,
    jobs: &[Job],
    messages: &[(usize, DeliveryMessage)],
) -> Result<Vec<PublisherConfirm>, HandlerError> {
    let exchange = topology.deliveries();
    let bodies = messages
        .iter()
        .map(|(i, m)| serde_json::to_vec(m).map(|b| (*i, b)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HandlerError::Permanent(format!("cannot encode a delivery: {e}")))?;
    let confirms = try_join_all(bodies.iter().map(|(i, body)| {
        publish(
            &jobs[*i].publisher,
            &exchange,
            &exchange,
            body,
            topology.new_delivery_properties(jobs[*i].priority),
        )
    }))
    .await?;
    Ok(confirms)
}
