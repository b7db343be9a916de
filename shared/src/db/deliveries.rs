//! Events, deliveries and attempts: what the dispatcher stores and the
//! worker records.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::{DbResult, raw_json};
use crate::delivery::retry::Attempt;
use crate::delivery::retry::Decision;
use crate::models::{DeliveryId, DeliveryMessage, DeliveryStatus, Severity};

/// An event about to be stored.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub tenant_id: Uuid,
    pub id: &'a str,
    pub event_type: &'a str,
    pub data: &'a RawValue,
    pub severity: Option<Severity>,
    pub source: Option<&'a str>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl NewEvent<'_> {
    /// The row of this event's delivery to one webhook.
    #[must_use]
    pub const fn delivery(&self, webhook_id: Uuid) -> NewDelivery<'_> {
        NewDelivery {
            tenant_id: self.tenant_id,
            event_id: self.id,
            event_received_at: self.received_at,
            webhook_id,
            event_type: self.event_type,
        }
    }

    /// The message of a delivery's first attempt.
    #[must_use]
    pub fn message(&self, delivery_id: Uuid, webhook_id: Uuid) -> DeliveryMessage {
        DeliveryMessage {
            delivery_id: delivery_id.into(),
            tenant_id: self.tenant_id.into(),
            webhook_id: webhook_id.into(),
            event_id: self.id.to_owned(),
            event_type: self.event_type.to_owned(),
            occurred_at: self.occurred_at,
            received_at: self.received_at,
            severity: self.severity,
            source: self.source.map(str::to_owned),
            data: self.data.to_owned(),
            attempt: 1,
            due_at: None,
            manual: false,
            reopened: false,
            republished: false,
        }
    }
}

/// Inserts the events, skipping any whose key (tenant, id) was stored
/// within `window` before it (and all but the first of one key in the
/// batch); answers `(tenant, id)` of those this call stored.
///
/// Events are partitioned by day, and Postgres has no unique index across
/// partitions, so the key is checked here: a transaction lock on each key
/// (taken in key order, so batches cannot deadlock), then a look for the
/// key among the events received within the window. Two dispatchers
/// storing one key at once take turns, and the second finds the first's
/// row. Call it inside a transaction, which holds the locks until commit.
///
/// # Errors
/// A database error.
pub async fn insert_events(
    client: &impl GenericClient,
    events: &[NewEvent<'_>],
    window: std::time::Duration,
) -> DbResult<Vec<(Uuid, String)>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = events.iter().map(|e| e.tenant_id).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let data: Vec<Json<&RawValue>> = events.iter().map(|e| Json(e.data)).collect();
    let severities: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.severity.map(Severity::as_str))
        .collect();
    let sources: Vec<Option<&str>> = events.iter().map(|e| e.source).collect();
    let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let received: Vec<DateTime<Utc>> = events.iter().map(|e| e.received_at).collect();
    let lock = client
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(k) FROM (
                 SELECT DISTINCT hashtextextended(t::text || '/' || i, 0) AS k
                 FROM unnest($1::uuid[], $2::text[]) AS u(t, i) ORDER BY 1) keys",
        )
        .await?;
    // A statement of its own, after the locks: its snapshot sees the rows
    // of every transaction that held one of these keys before. Both are
    // sent at once (the server runs them in order).
    let stmt = client
        .prepare_cached(
            "INSERT INTO events (tenant_id, id, event_type, data, severity, source, occurred_at, received_at)
             SELECT u.tenant_id, u.id, u.event_type, u.data, u.severity, u.source, u.occurred_at, u.received_at
             FROM (SELECT DISTINCT ON (tenant_id, id) *
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[],
                               $7::timestamptz[], $8::timestamptz[]) WITH ORDINALITY
                       AS u(tenant_id, id, event_type, data, severity, source, occurred_at, received_at, n)
                   ORDER BY tenant_id, id, n) u
             WHERE NOT EXISTS (
                 SELECT 1 FROM events e
                 WHERE e.tenant_id = u.tenant_id AND e.id = u.id
                   AND e.received_at > u.received_at - make_interval(secs => $9))
             ON CONFLICT DO NOTHING
             RETURNING tenant_id, id",
        )
        .await?;
    let window = window.as_secs_f64();
    let lock_params: [&(dyn ToSql + Sync); 2] = [&tenants, &ids];
    let params: [&(dyn ToSql + Sync); 9] = [
        &tenants,
        &ids,
        &types,
        &data,
        &severities,
        &sources,
        &occurred,
        &received,
        &window,
    ];
    let (_, rows) = tokio::try_join!(
        client.execute(&lock, &lock_params),
        client.query(&stmt, &params)
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Commits a write of `process`'s row in `wal_flushes` (migration V15),
/// waiting for the disk as the database is configured: when it returns,
/// the write-ahead log is flushed past every commit made before it,
/// including those made with `synchronous_commit = off`.
///
/// # Errors
/// A database error.
pub async fn flush_wal(client: &impl GenericClient, process: Uuid) -> DbResult<()> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO wal_flushes (process, flushed_at) VALUES ($1, now())
             ON CONFLICT (process) DO UPDATE SET flushed_at = EXCLUDED.flushed_at",
        )
        .await?;
    client.execute(&stmt, &[&process]).await?;
    Ok(())
}

/// Deletes the `wal_flushes` rows of processes that have not flushed for a
/// day (dispatchers gone).
///
/// # Errors
/// A database error.
pub async fn prune_wal_flushes(client: &impl GenericClient) -> DbResult<u64> {
    Ok(client
        .execute(
            "DELETE FROM wal_flushes WHERE flushed_at < now() - interval '1 day'",
            &[],
        )
        .await?)
}

/// A delivery's id: a UUIDv7 whose time is its event's `received_at` (so
/// the delivery lives in its event's day partition and `WHERE id = $1`
/// reaches one partition) and whose other bits are a hash of the event's
/// key and the webhook (so storing one event again makes the same ids).
#[must_use]
pub fn delivery_id(
    tenant_id: Uuid,
    event_id: &str,
    received_at: DateTime<Utc>,
    webhook_id: Uuid,
) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(tenant_id.as_bytes())
        .chain_update(webhook_id.as_bytes())
        .chain_update(received_at.timestamp_micros().to_be_bytes())
        .chain_update(event_id.as_bytes())
        .finalize();
    let millis = u64::try_from(received_at.timestamp_millis()).unwrap_or(0);
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// A delivery row about to be created.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub tenant_id: Uuid,
    pub event_id: &'a str,
    pub event_received_at: DateTime<Utc>,
    pub webhook_id: Uuid,
    pub event_type: &'a str,
}

/// Creates the delivery rows in one statement, skipping any that exists
/// (its id is made from the event and webhook: see [`delivery_id`]);
/// answers `(delivery id, tenant, event id, webhook)` of the rows this call
/// created.
///
/// # Errors
/// A database error.
pub async fn insert_deliveries(
    client: &impl GenericClient,
    rows: &[NewDelivery<'_>],
) -> DbResult<Vec<(Uuid, Uuid, String, Uuid)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| delivery_id(r.tenant_id, r.event_id, r.event_received_at, r.webhook_id))
        .collect();
    let tenants: Vec<Uuid> = rows.iter().map(|r| r.tenant_id).collect();
    let events: Vec<&str> = rows.iter().map(|r| r.event_id).collect();
    let received: Vec<DateTime<Utc>> = rows.iter().map(|r| r.event_received_at).collect();
    let webhooks: Vec<Uuid> = rows.iter().map(|r| r.webhook_id).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[])
             ON CONFLICT (id) DO NOTHING
             RETURNING id, tenant_id, event_id, webhook_id",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&ids, &tenants, &events, &received, &webhooks, &types],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// A stored event, as needed to publish its deliveries again.
#[derive(Debug)]
pub struct StoredEvent {
    pub event_type: String,
    pub data: Box<RawValue>,
    pub severity: Option<Severity>,
    pub source: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// The latest stored event with this key and its deliveries that were
/// never attempted: what a dispatcher that crashed between commit and
/// publish left unpublished.
///
/// # Errors
/// A database error.
pub async fn unattempted_deliveries(
    client: &impl GenericClient,
    tenant_id: Uuid,
    event_id: &str,
) -> DbResult<Option<(StoredEvent, Vec<(Uuid, Uuid)>)>> {
    let Some(row) = client
        .query_opt(
            "SELECT event_type, data::text, severity, source, occurred_at, received_at
             FROM events WHERE tenant_id = $1 AND id = $2 ORDER BY received_at DESC LIMIT 1",
            &[&tenant_id, &event_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let event = StoredEvent {
        event_type: row.get(0),
        data: raw_json(row.try_get(1)?)?,
        severity: row.try_get(2)?,
        source: row.get(3),
        occurred_at: row.get(4),
        received_at: row.get(5),
    };
    let rows = client
        .query(
            "SELECT id, webhook_id FROM deliveries
             WHERE tenant_id = $1 AND event_id = $2 AND event_received_at = $3
               AND status = 'pending' AND attempt_count = 0",
            &[&tenant_id, &event_id, &event.received_at],
        )
        .await?;
    Ok(Some((
        event,
        rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    )))
}

/// Where a delivery stands, as a worker checks it before an attempt.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryState {
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// # Errors
/// A database error.
pub async fn delivery_state(
    client: &impl GenericClient,
    id: DeliveryId,
) -> DbResult<Option<DeliveryState>> {
    let stmt = client
        .prepare_cached(
            "SELECT status, attempt_count, next_attempt_at FROM deliveries WHERE id = $1",
        )
        .await?;
    let Some(r) = client.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(DeliveryState {
        status: r.try_get(0)?,
        attempt_count: r.try_get(1)?,
        next_attempt_at: r.try_get(2)?,
    }))
}

/// One HTTP attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    /// At most the first 1,000 characters of the response body.
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The delivery's status after this attempt.
    pub new_status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl AttemptRecord {
    /// The record of an attempt made at `at`, and what was decided on it.
    #[must_use]
    pub fn new(
        delivery_id: DeliveryId,
        at: DateTime<Utc>,
        attempt: &Attempt,
        decision: &Decision,
    ) -> Self {
        Self {
            delivery_id,
            attempted_at: at,
            duration_ms: i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX),
            status_code: attempt.status_code.map(i32::from),
            response_body: attempt.body.clone(),
            error: attempt.error.clone(),
            new_status: decision.status,
            next_attempt_at: decision.next_attempt_at,
        }
    }
}

/// The webhook's run of failures after an attempt was recorded.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The attempt's number.
    pub attempt: i32,
    /// When the webhook's current run of failed attempts began (`None`
    /// after a success).
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed attempts in a row.
    pub consecutive_failures: i32,
}

/// Records a batch of attempts in one statement: the deliveries' new
/// status, the webhooks' counters and failure runs, the per-minute
/// statistics (its duration histogram from `stats::LATENCY_BOUNDS_MS`),
/// and the attempt rows.
static RECORD_ATTEMPTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[],
                                      $5::timestamptz[], $6::int4[], $7::int4[], $8::text[], $9::text[])
                     AS t(delivery_id, status, next_at, attempt_id, attempted_at, duration_ms,
                          status_code, body, error)
             ), d AS (
                 UPDATE deliveries SET attempt_count = deliveries.attempt_count + 1,
                     status = CASE WHEN deliveries.status = 'success' THEN deliveries.status
                                   ELSE input.status END,
                     next_attempt_at = input.next_at, updated_at = now()
                 FROM input WHERE deliveries.id = input.delivery_id
                 RETURNING deliveries.id, deliveries.attempt_count, deliveries.webhook_id,
                           input.status AS new_status, input.attempted_at
             ), agg AS (
                 SELECT webhook_id,
                        count(*) FILTER (WHERE new_status = 'success') AS ok,
                        count(*) FILTER (WHERE new_status = 'failed') AS failed,
                        count(*) FILTER (WHERE new_status <> 'success') AS failed_attempts,
                        min(attempted_at) FILTER (WHERE new_status <> 'success') AS first_failure,
                        max(attempted_at) AS last_at
                 FROM d GROUP BY webhook_id
             ), w AS (
                 -- The webhook's stats, not its configuration: no cache is
                 -- invalidated by a delivery.
                 INSERT INTO webhook_stats AS s (webhook_id, last_triggered_at,
                     delivery_success_count, delivery_failure_count, failing_since,
                     consecutive_failures)
                 SELECT webhook_id, last_at, ok, failed,
                        CASE WHEN ok > 0 THEN NULL ELSE first_failure END,
                        CASE WHEN ok > 0 THEN 0 ELSE failed_attempts END
                 FROM agg
                 ON CONFLICT (webhook_id) DO UPDATE SET
                     last_triggered_at = greatest(s.last_triggered_at, EXCLUDED.last_triggered_at),
                     delivery_success_count = s.delivery_success_count + EXCLUDED.delivery_success_count,
                     delivery_failure_count = s.delivery_failure_count + EXCLUDED.delivery_failure_count,
                     failing_since = CASE WHEN EXCLUDED.delivery_success_count > 0 THEN NULL
                                          ELSE coalesce(s.failing_since, EXCLUDED.failing_since) END,
                     consecutive_failures = CASE WHEN EXCLUDED.delivery_success_count > 0 THEN 0
                                                 ELSE s.consecutive_failures + EXCLUDED.consecutive_failures END
                 RETURNING s.webhook_id AS id, s.failing_since, s.consecutive_failures
             ), m AS (
                 -- The webhook's statistics by minute (see db::stats).
                 INSERT INTO webhook_stats_minutely AS m (webhook_id, minute, succeeded, retried,
                     failed, latency)
                 SELECT d.webhook_id, date_trunc('minute', input.attempted_at),
                        count(*) FILTER (WHERE d.new_status = 'success'),
                        count(*) FILTER (WHERE d.new_status = 'retrying'),
                        count(*) FILTER (WHERE d.new_status = 'failed'),
                        {histogram}
                 FROM d JOIN input ON input.delivery_id = d.id
                 GROUP BY 1, 2
                 ON CONFLICT (webhook_id, minute) DO UPDATE SET
                     succeeded = m.succeeded + EXCLUDED.succeeded,
                     retried = m.retried + EXCLUDED.retried,
                     failed = m.failed + EXCLUDED.failed,
                     latency = ARRAY(SELECT x + y FROM unnest(m.latency, EXCLUDED.latency)
                                         WITH ORDINALITY AS u(x, y, i) ORDER BY i)
             ), a AS (
                 INSERT INTO delivery_attempts
                     (id, delivery_id, attempt, attempted_at, duration_ms, status_code, response_body, error)
                 SELECT input.attempt_id, d.id, d.attempt_count, input.attempted_at, input.duration_ms,
                        input.status_code, input.body, input.error
                 FROM d JOIN input ON input.delivery_id = d.id
             )
             SELECT d.id, d.attempt_count, w.failing_since, coalesce(w.consecutive_failures, 0)
             FROM d LEFT JOIN w ON w.id = d.webhook_id",
        histogram = super::stats::histogram_sql("input.duration_ms")
    )
});

/// Records a batch of attempts in one statement (atomic, one round trip,
/// one commit): each delivery moves to its new status (a delivery already
/// `success` stays so: a duplicate's attempt is kept, not its verdict),
/// each attempt gets its row, and each webhook's counters and failure run
/// are updated once for the batch — a success anywhere in the batch ends
/// the run. Answers, per delivery still there, how it was recorded. A
/// batch must not hold two attempts of one delivery.
///
/// # Errors
/// A database error.
pub async fn record_attempts(
    client: &impl GenericClient,
    batch: &[AttemptRecord],
) -> DbResult<Vec<(Uuid, Recorded)>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let delivery_ids: Vec<Uuid> = batch.iter().map(|a| a.delivery_id.get()).collect();
    let statuses: Vec<&str> = batch.iter().map(|a| a.new_status.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = batch.iter().map(|a| a.next_attempt_at).collect();
    let attempt_ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
    let at: Vec<DateTime<Utc>> = batch.iter().map(|a| a.attempted_at).collect();
    let durations: Vec<i32> = batch.iter().map(|a| a.duration_ms).collect();
    let codes: Vec<Option<i32>> = batch.iter().map(|a| a.status_code).collect();
    let bodies: Vec<Option<&str>> = batch.iter().map(|a| a.response_body.as_deref()).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|a| a.error.as_deref()).collect();
    let stmt = client.prepare_cached(&RECORD_ATTEMPTS).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &delivery_ids,
                &statuses,
                &next,
                &attempt_ids,
                &at,
                &durations,
                &codes,
                &bodies,
                &errors,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Recorded {
                    attempt: r.get(1),
                    failing_since: r.get(2),
                    consecutive_failures: r.get(3),
                },
            )
        })
        .collect())
}

/// Ends a delivery without sending it (its webhook is disabled).
///
/// # Errors
/// A database error.
pub async fn finish_unsent(
    client: &impl GenericClient,
    id: DeliveryId,
    reason: &str,
) -> DbResult<()> {
    let stmt = client
        .prepare_cached(
            "WITH d AS (
                 UPDATE deliveries SET status = 'failed', updated_at = now() WHERE id = $1 RETURNING id
             )
             INSERT INTO delivery_attempts (delivery_id, id, attempt, attempted_at, duration_ms, error)
             SELECT d.id, $2, 0, now(), 0, $3 FROM d",
        )
        .await?;
    client
        .execute(&stmt, &[&id, &Uuid::now_v7(), &reason])
        .await?;
    Ok(())
}

/// Delivery messages for the given deliveries, rebuilt from the stored
/// event, each for the delivery's next attempt (manual retries, recovery,
/// the sweeper).
///
/// # Errors
/// A database error.
pub async fn messages_for(
    client: &impl GenericClient,
    ids: &[Uuid],
    manual: bool,
) -> DbResult<Vec<DeliveryMessage>> {
    let stmt = client
        .prepare_cached(
            "SELECT d.id, d.tenant_id, d.webhook_id, d.event_id, e.event_type, e.occurred_at, e.received_at,
                    e.severity, e.source, e.data::text, d.attempt_count
             FROM deliveries d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
                                          AND e.received_at = d.event_received_at
             WHERE d.id = ANY($1)",
        )
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    rows.iter()
        .map(|r| {
            let attempts: i32 = r.try_get(10)?;
            Ok(DeliveryMessage {
                delivery_id: r.try_get(0)?,
                tenant_id: r.try_get(1)?,
                webhook_id: r.try_get(2)?,
                event_id: r.try_get(3)?,
                event_type: r.try_get(4)?,
                occurred_at: r.try_get(5)?,
                received_at: r.try_get(6)?,
                severity: r.try_get(7)?,
                source: r.try_get(8)?,
                data: raw_json(r.try_get(9)?)?,
                attempt: attempts + 1,
                due_at: None,
                manual,
                reopened: false,
                republished: false,
            })
        })
        .collect()
}

/// A delivery of a stored event made again on request (a resend or a
/// replay).
#[derive(Debug)]
pub struct Redelivery<'a> {
    pub event_id: &'a str,
    pub event_received_at: DateTime<Utc>,
    pub event_type: &'a str,
    pub webhook_id: Uuid,
}

/// Creates deliveries made again on request: new rows with fresh ids in
/// their event's day (the id's time is the event's `received_at`, the rest
/// random), `retrying` and due now, as a manual retry is, so that the
/// sweeper sends any whose message never goes out. Answers their ids, in
/// `rows` order.
///
/// # Errors
/// A database error.
pub async fn insert_redeliveries(
    client: &impl GenericClient,
    tenant_id: Uuid,
    rows: &[Redelivery<'_>],
) -> DbResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| {
            let millis = u64::try_from(r.event_received_at.timestamp_millis()).unwrap_or(0);
            let mut random = [0u8; 10];
            random.copy_from_slice(&Uuid::new_v4().as_bytes()[..10]);
            uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
        })
        .collect();
    let events: Vec<&str> = rows.iter().map(|r| r.event_id).collect();
    let received: Vec<DateTime<Utc>> = rows.iter().map(|r| r.event_received_at).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
    let webhooks: Vec<Uuid> = rows.iter().map(|r| r.webhook_id).collect();
    client
        .execute(
            "INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id,
                                     event_type, status, next_attempt_at)
             SELECT id, $2, event_id, received_at, webhook_id, event_type, 'retrying', now()
             FROM unnest($1::uuid[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[])
                  AS r(id, event_id, received_at, webhook_id, event_type)",
            &[&ids, &tenant_id, &events, &received, &webhooks, &types],
        )
        .await?;
    Ok(ids)
}

/// Makes one delivery of the tenant due now (a manual retry), reopening it
/// if it had failed. Answers whether it had failed, or `None` when there is
/// no such delivery.
///
/// # Errors
/// A database error.
pub async fn reopen(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> DbResult<Option<bool>> {
    let row = client
        .query_opt(
            "WITH old AS (
                 SELECT id, status FROM deliveries WHERE id = $1 AND tenant_id = $2 FOR UPDATE)
             UPDATE deliveries d SET
                 status = CASE WHEN old.status = 'failed' THEN 'retrying' ELSE d.status END,
                 next_attempt_at = now(), updated_at = now()
             FROM old WHERE d.id = old.id
             RETURNING old.status = 'failed'",
            &[&id, &tenant_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Which failed deliveries of a webhook a recovery takes.
#[derive(Debug)]
pub struct RecoverWindow<'a> {
    pub webhook_id: Uuid,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub event_type: Option<&'a str>,
}

/// Counts the failed deliveries in the window (test calls' deliveries,
/// `webhook.test`, are not recovered: they checked the endpoint then).
///
/// # Errors
/// A database error.
pub async fn count_failed(client: &impl GenericClient, w: &RecoverWindow<'_>) -> DbResult<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM deliveries
             WHERE webhook_id = $1 AND status = 'failed' AND event_type <> 'webhook.test'
               AND created_at >= $2
               AND ($3::timestamptz IS NULL OR created_at < $3)
               AND ($4::text IS NULL OR event_type = $4)",
            &[&w.webhook_id, &w.since, &w.until, &w.event_type],
        )
        .await?;
    Ok(row.get(0))
}

/// Reopens up to `limit` failed deliveries in the window, oldest first (as
/// `retrying`, due now), and answers their ids and the creation time of
/// the last: the next batch starts there (`since`), so a recovery reads
/// the webhook's deliveries (through its index by time) once, not once per
/// batch. Rows another caller holds are skipped, so concurrent recoveries
/// split the work instead of doubling it.
///
/// # Errors
/// A database error.
pub async fn reopen_failed_batch(
    client: &impl GenericClient,
    w: &RecoverWindow<'_>,
    limit: i64,
) -> DbResult<(Vec<Uuid>, Option<DateTime<Utc>>)> {
    let rows = client
        .query(
            "UPDATE deliveries SET status = 'retrying', next_attempt_at = now(), updated_at = now()
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE webhook_id = $1 AND status = 'failed' AND event_type <> 'webhook.test'
                   AND created_at >= $2
                   AND ($3::timestamptz IS NULL OR created_at < $3)
                   AND ($4::text IS NULL OR event_type = $4)
                 ORDER BY created_at LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, created_at",
            &[&w.webhook_id, &w.since, &w.until, &w.event_type, &limit],
        )
        .await?;
    let last = rows.iter().map(|r| r.get::<_, DateTime<Utc>>(1)).max();
    Ok((rows.iter().map(|r| r.get(0)).collect(), last))
}

/// Deliveries waiting for a retry whose due time is more than `grace`
/// past: their retry message was lost. Each is pushed `grace` into the
/// future so that the next sweep (here or on another replica) does not take
/// it again while its new message is on the way.
///
/// # Errors
/// A database error.
pub async fn claim_overdue(
    client: &impl GenericClient,
    grace: std::time::Duration,
    limit: i64,
) -> DbResult<Vec<Uuid>> {
    let grace_secs = grace.as_secs_f64();
    let rows = client
        .query(
            "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE status = 'retrying' AND next_attempt_at < now() - make_interval(secs => $1)
                 ORDER BY next_attempt_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&grace_secs, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every delivery still waiting for its first attempt, created before this
/// statement: after the broker lost its transient messages, those whose
/// message was among them. Reads every partition (there is no index on
/// pending deliveries, which would cost every delivery a write), so it is
/// for the rare sweep after a broker restart, not for a loop.
///
/// # Errors
/// A database error.
pub async fn unattempted_pending(client: &impl GenericClient) -> DbResult<Vec<Uuid>> {
    let rows = client
        .query(
            "SELECT id FROM deliveries
             WHERE status = 'pending' AND attempt_count = 0 AND created_at < now()
             ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_carries_its_events_arrival_and_is_the_same_when_made_again() {
        let tenant = Uuid::now_v7();
        let webhook = Uuid::now_v7();
        let at: DateTime<Utc> = "2026-12-05T23:59:59.999123Z".parse().unwrap();
        let id = delivery_id(tenant, "order-1", at, webhook);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (at.timestamp() as u64, 999));
        assert_eq!(id, delivery_id(tenant, "order-1", at, webhook));
        // Another webhook, event or arrival makes another id.
        assert_ne!(id, delivery_id(tenant, "order-1", at, Uuid::now_v7()));
        assert_ne!(id, delivery_id(tenant, "order-2", at, webhook));
        let later = at + chrono::Duration::microseconds(1);
        assert_ne!(id, delivery_id(tenant, "order-1", later, webhook));
        // It sorts inside its day's partition (herald_day_uuid of
        // 2026-12-05 and 2026-12-06, migration V14).
        let day = Uuid::parse_str("01a24380-2000-0000-0000-000000000000").unwrap();
        let next_day = Uuid::parse_str("01a248a6-7c00-0000-0000-000000000000").unwrap();
        assert!(day <= id && id < next_day, "{id}");
    }
}
