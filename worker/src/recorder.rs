//! Attempts are recorded in batches. Every delivery task hands its record
//! to one recorder task and waits for it; the recorder writes whatever has
//! gathered in one statement (one round trip, one commit), so at high rates
//! one commit serves many deliveries, and at low rates a record is written
//! at once, alone, with no added wait.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Pool;
use herald_shared::amqp::consumer::HandlerError;
use herald_shared::db::DbError;
use herald_shared::db::deliveries::{self, AttemptRecord, Recorded};
use herald_shared::models::DeliveryId;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Records written in one statement at most.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Option<Recorded>, HandlerError>>;

#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(AttemptRecord, Reply)>,
}

impl Recorder {
    /// Starts the recorder task; it ends when every `Recorder` is dropped.
    #[must_use]
    pub fn spawn(pool: Pool) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    /// Records one attempt; answers how it was recorded (`None` when the
    /// delivery is gone).
    ///
    /// # Errors
    /// This record could not be written (another record of the same batch
    /// never fails it).
    pub async fn record(&self, record: AttemptRecord) -> Result<Option<Recorded>, HandlerError> {
        let stopped = || HandlerError::Unavailable("the recorder has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.tx.send((record, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<(AttemptRecord, Reply)>) {
    // A record that could not join a batch (its delivery was already in
    // it) starts the next one.
    let mut carried: Option<(AttemptRecord, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut ids: HashSet<DeliveryId> = batch.iter().map(|(r, _)| r.delivery_id).collect();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) if ids.insert(job.0.delivery_id) => batch.push(job),
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match write(&pool, &records).await {
            Ok(recorded) => answer(&records, replies, &recorded),
            // One record must not sink the others: unless the database is
            // out of reach, each is written alone, so only the one at fault
            // fails.
            Err(e) if records.len() > 1 && !matches!(e, HandlerError::Unavailable(_)) => {
                tracing::debug!(error.message = %e, records = records.len(), "batch failed; recording one by one");
                for (record, reply) in records.iter().zip(replies) {
                    let one = std::slice::from_ref(record);
                    let _ = reply.send(write(&pool, one).await.map(|r| r.first().map(|(_, r)| *r)));
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

/// Tells each record's task how it was recorded.
fn answer(records: &[AttemptRecord], replies: Vec<Reply>, recorded: &[(Uuid, Recorded)]) {
    let by_id: HashMap<DeliveryId, Recorded> = recorded
        .iter()
        .map(|(id, r)| (DeliveryId(*id), *r))
        .collect();
    for (record, reply) in records.iter().zip(replies) {
        let _ = reply.send(Ok(by_id.get(&record.delivery_id).copied()));
    }
}

async fn write(
    pool: &Pool,
    records: &[AttemptRecord],
) -> Result<Vec<(Uuid, Recorded)>, HandlerError> {
    let client = pool.get().await.map_err(DbError::from)?;
    Ok(deliveries::record_attempts(&client, records).await?)
}
