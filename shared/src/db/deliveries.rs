//! Events, deliveries and attempts: what the dispatcher stores and the
//! worker records.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::DbResult;
use crate::models::{DeliveryMessage, DeliveryStatus, Severity};

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

/// Inserts the event unless the tenant already has one with this id; true
/// when this call stored it.
///
/// # Errors
/// A database error.
pub async fn insert_event(client: &impl GenericClient, e: &NewEvent<'_>) -> DbResult<bool> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO events (tenant_id, id, event_type, data, severity, source, occurred_at, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, id) DO NOTHING",
        )
        .await?;
    let n = client
        .execute(
            &stmt,
            &[
                &e.tenant_id,
                &e.id,
                &e.event_type,
                &Json(e.data),
                &e.severity.map(Severity::as_str),
                &e.source,
                &e.occurred_at,
                &e.received_at,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// One delivery row per webhook; answers `(delivery id, webhook id)` of the
/// rows this call created (a redelivered event creates none twice).
///
/// # Errors
/// A database error.
pub async fn insert_deliveries(
    client: &impl GenericClient,
    tenant_id: Uuid,
    event_id: &str,
    event_type: &str,
    webhook_ids: &[Uuid],
) -> DbResult<Vec<(Uuid, Uuid)>> {
    if webhook_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = webhook_ids.iter().map(|_| Uuid::now_v7()).collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, event_type)
             SELECT d, $2, $3, w, $4 FROM unnest($1::uuid[], $5::uuid[]) AS t(d, w)
             ON CONFLICT (tenant_id, event_id, webhook_id) DO NOTHING
             RETURNING id, webhook_id",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&ids, &tenant_id, &event_id, &event_type, &webhook_ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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

/// The stored event and its deliveries that were never attempted: what a
/// dispatcher that crashed between commit and publish left unpublished.
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
             FROM events WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &event_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let data: String = row.get(1);
    let severity: Option<String> = row.get(2);
    let event = StoredEvent {
        event_type: row.get(0),
        data: RawValue::from_string(data).unwrap_or_default(),
        severity: severity.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
        source: row.get(3),
        occurred_at: row.get(4),
        received_at: row.get(5),
    };
    let rows = client
        .query(
            "SELECT id, webhook_id FROM deliveries
             WHERE tenant_id = $1 AND event_id = $2 AND status = 'pending' AND attempt_count = 0",
            &[&tenant_id, &event_id],
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
    id: Uuid,
) -> DbResult<Option<DeliveryState>> {
    let stmt = client
        .prepare_cached(
            "SELECT status, attempt_count, next_attempt_at FROM deliveries WHERE id = $1",
        )
        .await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| {
        let status: String = r.get(0);
        DeliveryState {
            status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
            attempt_count: r.get(1),
            next_attempt_at: r.get(2),
        }
    }))
}

/// One HTTP attempt, as recorded.
#[derive(Debug)]
pub struct AttemptRecord<'a> {
    pub delivery_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    /// At most the first 1,000 characters of the response body.
    pub response_body: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The delivery's status after this attempt.
    pub new_status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
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

/// Records an attempt, moves the delivery to its new status and updates the
/// webhook's counters and failure run, in one statement (atomic, one round
/// trip). `None` when the delivery is gone.
///
/// # Errors
/// A database error.
pub async fn record_attempt(
    client: &impl GenericClient,
    a: &AttemptRecord<'_>,
) -> DbResult<Option<Recorded>> {
    let (succeeded, failed) = match a.new_status {
        DeliveryStatus::Success => (1i64, 0i64),
        DeliveryStatus::Failed => (0, 1),
        DeliveryStatus::Pending | DeliveryStatus::Retrying => (0, 0),
    };
    let attempt_ok = a.new_status == DeliveryStatus::Success;
    let stmt = client
        .prepare_cached(
            "WITH d AS (
                 UPDATE deliveries SET attempt_count = attempt_count + 1, status = $2,
                     next_attempt_at = $3, updated_at = now()
                 WHERE id = $1
                 RETURNING attempt_count, webhook_id
             ), w AS (
                 UPDATE webhooks SET last_triggered_at = $5,
                     delivery_success_count = delivery_success_count + $10,
                     delivery_failure_count = delivery_failure_count + $11,
                     failing_since = CASE WHEN $12 THEN NULL ELSE coalesce(failing_since, $5) END,
                     consecutive_failures = CASE WHEN $12 THEN 0 ELSE consecutive_failures + 1 END
                 FROM d WHERE webhooks.id = d.webhook_id
                 RETURNING failing_since, consecutive_failures
             ), a AS (
                 INSERT INTO delivery_attempts
                     (id, delivery_id, attempt, attempted_at, duration_ms, status_code, response_body, error)
                 SELECT $4, $1, d.attempt_count, $5, $6, $7, $8, $9 FROM d
             )
             SELECT d.attempt_count, w.failing_since, coalesce(w.consecutive_failures, 0)
             FROM d LEFT JOIN w ON true",
        )
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &a.delivery_id,
                &a.new_status.as_str(),
                &a.next_attempt_at,
                &Uuid::now_v7(),
                &a.attempted_at,
                &a.duration_ms,
                &a.status_code,
                &a.response_body,
                &a.error,
                &succeeded,
                &failed,
                &attempt_ok,
            ],
        )
        .await?;
    Ok(row.map(|r| Recorded {
        attempt: r.get(0),
        failing_since: r.get(1),
        consecutive_failures: r.get(2),
    }))
}

/// Ends a delivery without sending it (its webhook is disabled).
///
/// # Errors
/// A database error.
pub async fn finish_unsent(client: &impl GenericClient, id: Uuid, reason: &str) -> DbResult<()> {
    let stmt = client
        .prepare_cached(
            "WITH d AS (
                 UPDATE deliveries SET status = 'failed', updated_at = now() WHERE id = $1 RETURNING id
             )
             INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, error)
             SELECT $2, d.id, 0, now(), 0, $3 FROM d",
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
             WHERE d.id = ANY($1)",
        )
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let severity: Option<String> = r.get(7);
            let data: String = r.get(9);
            let attempts: i32 = r.get(10);
            DeliveryMessage {
                delivery_id: r.get(0),
                tenant_id: r.get(1),
                webhook_id: r.get(2),
                event_id: r.get(3),
                event_type: r.get(4),
                occurred_at: r.get(5),
                received_at: r.get(6),
                severity: severity
                    .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
                source: r.get(8),
                data: RawValue::from_string(data).unwrap_or_default(),
                attempt: attempts + 1,
                due_at: None,
                manual,
            }
        })
        .collect())
}

/// Makes one delivery of the tenant due now (a manual retry), reopening it
/// if it had failed. Answers false when there is no such delivery.
///
/// # Errors
/// A database error.
pub async fn reopen(client: &impl GenericClient, tenant_id: Uuid, id: Uuid) -> DbResult<bool> {
    let n = client
        .execute(
            "UPDATE deliveries SET
                 status = CASE WHEN status = 'failed' THEN 'retrying' ELSE status END,
                 next_attempt_at = now(), updated_at = now()
             WHERE id = $1 AND tenant_id = $2",
            &[&id, &tenant_id],
        )
        .await?;
    Ok(n == 1)
}

/// Which failed deliveries of a webhook a recovery takes.
#[derive(Debug)]
pub struct RecoverWindow<'a> {
    pub webhook_id: Uuid,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub event_type: Option<&'a str>,
}

/// Counts the failed deliveries in the window.
///
/// # Errors
/// A database error.
pub async fn count_failed(client: &impl GenericClient, w: &RecoverWindow<'_>) -> DbResult<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM deliveries
             WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2
               AND ($3::timestamptz IS NULL OR created_at < $3)
               AND ($4::text IS NULL OR event_type = $4)",
            &[&w.webhook_id, &w.since, &w.until, &w.event_type],
        )
        .await?;
    Ok(row.get(0))
}

/// Reopens up to `limit` failed deliveries in the window (as `retrying`,
/// due now) and answers their ids. Rows another caller holds are skipped,
/// so concurrent recoveries split the work instead of doubling it.
///
/// # Errors
/// A database error.
pub async fn reopen_failed_batch(
    client: &impl GenericClient,
    w: &RecoverWindow<'_>,
    limit: i64,
) -> DbResult<Vec<Uuid>> {
    let rows = client
        .query(
            "UPDATE deliveries SET status = 'retrying', next_attempt_at = now(), updated_at = now()
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2
                   AND ($3::timestamptz IS NULL OR created_at < $3)
                   AND ($4::text IS NULL OR event_type = $4)
                 ORDER BY created_at LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&w.webhook_id, &w.since, &w.until, &w.event_type, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
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
