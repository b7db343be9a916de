//! Reading back what happened: events and deliveries, newest first, with
//! cursors that stay stable while new rows arrive (a page continues from
//! the `(time, id)` of the last row before it, so rows inserted since sort
//! in front of the first page and never shift a later one).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::DbResult;

/// Where a page starts: after this `(time, id)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// The opaque text form handed to clients.
    #[must_use]
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.at.timestamp_micros(),
            self.id
        ))
    }

    /// `None` for anything that is not a cursor Herald gave out.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (micros, id) = raw.split_once('|')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.to_owned(),
        })
    }
}

/// What a list is narrowed to.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub event_type: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub webhook_id: Option<Uuid>,
    pub status: Option<&'a str>,
    /// Only these webhooks (a portal session's); `None`: all.
    pub webhook_ids: Option<&'a [Uuid]>,
    /// Only these event types, exactly or by prefix (a portal session's);
    /// `None`: all.
    pub types: Option<(&'a [String], &'a [String])>,
}

impl Filter<'_> {
    fn exact_types(&self) -> Option<&[String]> {
        self.types.map(|(exact, _)| exact)
    }

    fn type_prefixes(&self) -> &[String] {
        self.types.map_or(&[], |(_, prefixes)| prefixes)
    }
}

/// The event-type narrowing of a portal session, on a table with an
/// `event_type` column, as parameters `$a` (exact, NULL: none) and `$b`
/// (prefixes).
fn types_clause(a: usize, b: usize) -> String {
    format!(
        "(${a}::text[] IS NULL OR event_type = ANY(${a})
          OR EXISTS (SELECT 1 FROM unnest(${b}::text[]) p WHERE starts_with(event_type, p)))"
    )
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: String,
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

fn event_row(r: &tokio_postgres::Row) -> DbResult<EventRow> {
    Ok(EventRow {
        id: r.try_get(0)?,
        event_type: r.try_get(1)?,
        severity: r.try_get(2)?,
        source: r.try_get(3)?,
        occurred_at: r.try_get(4)?,
        received_at: r.try_get(5)?,
        data: super::raw_json(r.try_get(6)?)?,
    })
}

const EVENT_COLUMNS: &str =
    "id, event_type, severity, source, occurred_at, received_at, data::text";

/// A page of the tenant's events, newest first (one more row than `limit`
/// is read to know whether another page follows).
///
/// # Errors
/// A database error.
pub async fn list_events(
    client: &impl GenericClient,
    tenant_id: Uuid,
    f: &Filter<'_>,
    after: Option<&Cursor>,
    limit: i64,
) -> DbResult<(Vec<EventRow>, Option<Cursor>)> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR event_type = $2)
           AND ($3::timestamptz IS NULL OR received_at >= $3)
           AND ($4::timestamptz IS NULL OR received_at < $4)
           AND ($5::timestamptz IS NULL OR (received_at, id) < ($5, $6))
           AND ($8::uuid[] IS NULL OR EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.tenant_id = events.tenant_id AND d.event_id = events.id
                  AND d.event_received_at = events.received_at AND d.webhook_id = ANY($8)))
           AND {}
         ORDER BY received_at DESC, id DESC
         LIMIT $7",
        types_clause(9, 10)
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant_id,
                &f.event_type,
                &f.since,
                &f.until,
                &after.map(|c| c.at),
                &after.map(|c| c.id.as_str()).unwrap_or_default(),
                &(limit + 1),
                &f.webhook_ids,
                &f.exact_types(),
                &f.type_prefixes(),
            ],
        )
        .await?;
    let mut events: Vec<EventRow> = rows.iter().map(event_row).collect::<DbResult<_>>()?;
    let next = page_end(&mut events, limit, |e| Cursor {
        at: e.received_at,
        id: e.id.clone(),
    });
    Ok((events, next))
}

/// The latest event with this id (an id seen again past the idempotency
/// window is a new event).
///
/// # Errors
/// A database error.
pub async fn get_event(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
) -> DbResult<Option<EventRow>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2
                 ORDER BY received_at DESC LIMIT 1"
            ),
            &[&tenant_id, &id],
        )
        .await?;
    row.as_ref().map(event_row).transpose()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: String,
    pub webhook_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest attempt's status code (`null`: none yet, or no answer).
    pub last_status_code: Option<i32>,
    /// The latest attempt's error, if it failed.
    pub last_error: Option<String>,
}

fn delivery_row(r: &tokio_postgres::Row) -> DeliveryRow {
    DeliveryRow {
        id: r.get(0),
        event_id: r.get(1),
        webhook_id: r.get(2),
        event_type: r.get(3),
        status: r.get(4),
        attempt_count: r.get(5),
        next_attempt_at: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        last_status_code: r.get(9),
        last_error: r.get(10),
    }
}

const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, event_type, status, attempt_count, next_attempt_at, created_at, updated_at, last.status_code, last.error";

/// Deliveries with their latest attempt (one index lookup a row), so that
/// a history page needs one call.
const DELIVERIES: &str = "deliveries LEFT JOIN LATERAL (
         SELECT a.status_code, a.error FROM delivery_attempts a
         WHERE a.delivery_id = deliveries.id ORDER BY a.attempted_at DESC, a.attempt DESC LIMIT 1
     ) last ON true";

/// A page of the tenant's deliveries, newest first.
///
/// # Errors
/// A database error.
pub async fn list_deliveries(
    client: &impl GenericClient,
    tenant_id: Uuid,
    f: &Filter<'_>,
    after: Option<&Cursor>,
    limit: i64,
) -> DbResult<(Vec<DeliveryRow>, Option<Cursor>)> {
    let after_id = after
        .and_then(|c| Uuid::parse_str(&c.id).ok())
        .unwrap_or_default();
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES}
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR event_type = $2)
           AND ($3::timestamptz IS NULL OR created_at >= $3)
           AND ($4::timestamptz IS NULL OR created_at < $4)
           AND ($5::uuid IS NULL OR webhook_id = $5)
           AND ($6::text IS NULL OR status = $6)
           AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8))
           AND ($10::uuid[] IS NULL OR webhook_id = ANY($10))
           AND {}
         ORDER BY created_at DESC, id DESC
         LIMIT $9",
        types_clause(11, 12)
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant_id,
                &f.event_type,
                &f.since,
                &f.until,
                &f.webhook_id,
                &f.status,
                &after.map(|c| c.at),
                &after_id,
                &(limit + 1),
                &f.webhook_ids,
                &f.exact_types(),
                &f.type_prefixes(),
            ],
        )
        .await?;
    let mut deliveries: Vec<DeliveryRow> = rows.iter().map(delivery_row).collect();
    let next = page_end(&mut deliveries, limit, |d| Cursor {
        at: d.created_at,
        id: d.id.to_string(),
    });
    Ok((deliveries, next))
}

/// # Errors
/// A database error.
pub async fn get_delivery(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> DbResult<Option<DeliveryRow>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES} WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.as_ref().map(delivery_row))
}

/// One event's deliveries (the event received at `received_at`), oldest
/// first.
///
/// # Errors
/// A database error.
pub async fn deliveries_of_event(
    client: &impl GenericClient,
    tenant_id: Uuid,
    event_id: &str,
    received_at: DateTime<Utc>,
) -> DbResult<Vec<DeliveryRow>> {
    let rows = client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES}
                 WHERE tenant_id = $1 AND event_id = $2 AND event_received_at = $3
                 ORDER BY created_at, id"
            ),
            &[&tenant_id, &event_id, &received_at],
        )
        .await?;
    Ok(rows.iter().map(delivery_row).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// Every attempt of a delivery, in order.
///
/// # Errors
/// A database error.
pub async fn attempts(client: &impl GenericClient, delivery_id: Uuid) -> DbResult<Vec<AttemptRow>> {
    let rows = client
        .query(
            "SELECT attempt, attempted_at, duration_ms, status_code, response_body, error
             FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempted_at, attempt",
            &[&delivery_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AttemptRow {
            attempt: r.get(0),
            attempted_at: r.get(1),
            duration_ms: r.get(2),
            status_code: r.get(3),
            response: r.get(4),
            error: r.get(5),
        })
        .collect())
}

/// Cuts the extra row read past `limit`; when there was one, the cursor
/// after the last row kept.
fn page_end<T>(rows: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> Cursor) -> Option<Cursor> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: "order:1|x".to_owned(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}
