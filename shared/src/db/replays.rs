//! Replays of a window of stored events to one webhook (see migration
//! V18): their rows, and one batch's worth of work.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::DbResult;
use crate::filter::{Filter, wrap};
use crate::models::{EventPattern, EventType};

/// A replay as stored.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Replay {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    pub webhook_id: Uuid,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub event_types: Option<Vec<String>>,
    /// `running`, `done` or `cancelled`.
    pub state: String,
    /// Events in the window when the replay began.
    pub total: i64,
    /// Events looked at so far.
    pub processed: i64,
    /// Deliveries made so far (events the webhook matches and had no
    /// successful or pending delivery of).
    pub queued: i64,
    #[serde(skip)]
    pub cursor: Option<(DateTime<Utc>, String)>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, webhook_id, since, until, event_types, state, total,
    processed, queued, cursor_at, cursor_id, created_at, updated_at";

fn from_row(r: &Row) -> DbResult<Replay> {
    let cursor_at: Option<DateTime<Utc>> = r.try_get("cursor_at")?;
    let cursor_id: Option<String> = r.try_get("cursor_id")?;
    Ok(Replay {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        webhook_id: r.try_get("webhook_id")?,
        since: r.try_get("since")?,
        until: r.try_get("until")?,
        event_types: r.try_get("event_types")?,
        state: r.try_get("state")?,
        total: r.try_get("total")?,
        processed: r.try_get("processed")?,
        queued: r.try_get("queued")?,
        cursor: cursor_at.zip(cursor_id),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The tenant's events received in `[since, until)`, Herald's own left out.
///
/// # Errors
/// A database error.
pub async fn count_window(
    client: &impl GenericClient,
    tenant_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> DbResult<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM events
             WHERE tenant_id = $1 AND received_at >= $2 AND received_at < $3
               AND event_type NOT LIKE 'webhook.%' AND event_type NOT LIKE 'delivery.%'",
            &[&tenant_id, &since, &until],
        )
        .await?;
    Ok(row.get(0))
}

/// What a replay covers.
#[derive(Debug, Clone)]
pub struct Window {
    pub tenant_id: Uuid,
    pub webhook_id: Uuid,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub event_types: Option<Vec<String>>,
}

/// The tenant's replays still running.
///
/// # Errors
/// A database error.
pub async fn running(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM replays WHERE tenant_id = $1 AND state = 'running'",
            &[&tenant_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Starts a replay.
///
/// # Errors
/// A database error.
pub async fn create(client: &impl GenericClient, w: &Window, total: i64) -> DbResult<Replay> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO replays (id, tenant_id, webhook_id, since, until, event_types, total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &w.tenant_id,
                &w.webhook_id,
                &w.since,
                &w.until,
                &w.event_types,
                &total,
            ],
        )
        .await?;
    from_row(&row)
}

/// One replay of the tenant.
///
/// # Errors
/// A database error.
pub async fn get(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> DbResult<Option<Replay>> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM replays WHERE id = $1 AND tenant_id = $2"),
            &[&id, &tenant_id],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stops a running replay (a batch under way finishes first); a finished
/// one stays as it is. Answers the replay, `None` for no such replay.
///
/// # Errors
/// A database error.
pub async fn cancel(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> DbResult<Option<Replay>> {
    client
        .execute(
            "UPDATE replays SET state = 'cancelled', updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state = 'running'",
            &[&id, &tenant_id],
        )
        .await?;
    get(client, tenant_id, id).await
}

/// Running replays no other dispatcher holds, least recently advanced
/// first, locked until the transaction ends.
///
/// # Errors
/// A database error.
pub async fn claim_running(client: &impl GenericClient, limit: i64) -> DbResult<Vec<Replay>> {
    client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM replays WHERE state = 'running'
                 ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED"
            ),
            &[&limit],
        )
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Moves a replay on by one batch.
///
/// # Errors
/// A database error.
pub async fn advance(client: &impl GenericClient, id: Uuid, batch: &Batch) -> DbResult<()> {
    let (at, event) = batch.cursor.clone().unzip();
    client
        .execute(
            "UPDATE replays SET processed = processed + $2, queued = queued + $3,
                    cursor_at = coalesce($4, cursor_at), cursor_id = coalesce($5, cursor_id),
                    state = CASE WHEN $6 THEN 'done' ELSE state END, updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &i64::try_from(batch.scanned).unwrap_or(i64::MAX),
                &i64::try_from(batch.to_send.len()).unwrap_or(i64::MAX),
                &at,
                &event,
                &batch.finished,
            ],
        )
        .await?;
    Ok(())
}

/// An event a replay sends again.
#[derive(Debug, Clone)]
pub struct Due {
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub event_type: String,
}

/// One batch of a replay's work.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events looked at.
    pub scanned: usize,
    /// The last of them.
    pub cursor: Option<(DateTime<Utc>, String)>,
    /// The ones to deliver again.
    pub to_send: Vec<Due>,
    /// Nothing is left after this batch.
    pub finished: bool,
}

/// What the webhook takes now: its patterns (narrowed by the replay's),
/// and its filter.
#[derive(Debug)]
pub struct Taker {
    patterns: Vec<EventPattern>,
    narrowing: Option<Vec<EventPattern>>,
    filter: Option<Filter>,
}

impl Taker {
    /// `None` when the webhook's stored filter no longer compiles (it
    /// takes nothing until saved again).
    #[must_use]
    pub fn new(
        event_types: &[String],
        narrowing: Option<&[String]>,
        filter: Option<&str>,
    ) -> Option<Self> {
        let parse = |ps: &[String]| -> Vec<EventPattern> {
            ps.iter()
                .filter_map(|p| EventPattern::parse(p).ok())
                .collect()
        };
        let filter = match filter {
            Some(f) => Some(Filter::compile(f).ok()?),
            None => None,
        };
        Some(Self {
            patterns: parse(event_types),
            narrowing: narrowing.map(parse),
            filter,
        })
    }

    fn takes(&self, event_type: &str, data: &str) -> bool {
        let Ok(t) = EventType::parse(event_type) else {
            return false;
        };
        self.patterns.iter().any(|p| p.matches(&t))
            && self
                .narrowing
                .as_ref()
                .is_none_or(|n| n.iter().any(|p| p.matches(&t)))
            && self
                .filter
                .as_ref()
                .is_none_or(|f| serde_json::from_str(data).is_ok_and(|d| f.matches(&wrap(d))))
    }
}

/// The next `limit` events of the window after `cursor`, and which of them
/// the webhook takes and has no successful or pending delivery of.
///
/// # Errors
/// A database error.
pub async fn next_batch(
    client: &impl GenericClient,
    w: &Window,
    cursor: Option<&(DateTime<Utc>, String)>,
    taker: &Taker,
    limit: i64,
) -> DbResult<Batch> {
    let (cursor_at, cursor_id) = cursor.cloned().unzip();
    let rows = client
        .query(
            "SELECT id, received_at, event_type, data::text FROM events
             WHERE tenant_id = $1 AND received_at >= coalesce($4::timestamptz, $2::timestamptz) AND received_at < $3
               AND ($4::timestamptz IS NULL OR (received_at, id) > ($4::timestamptz, $5::text))
               AND event_type NOT LIKE 'webhook.%' AND event_type NOT LIKE 'delivery.%'
             ORDER BY received_at, id LIMIT $6",
            &[
                &w.tenant_id,
                &w.since,
                &w.until,
                &cursor_at,
                &cursor_id,
                &limit,
            ],
        )
        .await?;
    let mut batch = Batch {
        scanned: rows.len(),
        finished: i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit,
        ..Batch::default()
    };
    let mut candidates = Vec::new();
    for r in &rows {
        let id: String = r.try_get(0)?;
        let received_at: DateTime<Utc> = r.try_get(1)?;
        let event_type: String = r.try_get(2)?;
        let data: String = r.try_get(3)?;
        batch.cursor = Some((received_at, id.clone()));
        if taker.takes(&event_type, &data) {
            candidates.push(Due {
                event_id: id,
                received_at,
                event_type,
            });
        }
    }
    if candidates.is_empty() {
        return Ok(batch);
    }
    let ids: Vec<&str> = candidates.iter().map(|c| c.event_id.as_str()).collect();
    let delivered: std::collections::HashSet<String> = client
        .query(
            "SELECT DISTINCT event_id FROM deliveries
             WHERE tenant_id = $1 AND webhook_id = $2 AND event_id = ANY($3)
               AND status <> 'failed'",
            &[&w.tenant_id, &w.webhook_id, &ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    batch.to_send = candidates
        .into_iter()
        .filter(|c| !delivered.contains(&c.event_id))
        .collect();
    Ok(batch)
}
