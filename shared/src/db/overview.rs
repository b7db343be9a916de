//! The whole system at a glance, for operators: events and attempts per
//! minute over the last hour (from the events' arrival index and the
//! per-minute webhook statistics), how many tenants and webhooks there
//! are, and the webhooks that were switched off.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use uuid::Uuid;

use super::DbResult;

/// One minute of the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Minute {
    pub start: DateTime<Utc>,
    pub events: i64,
    pub succeeded: i64,
    pub retried: i64,
    pub failed: i64,
}

/// Every minute from `since`, `count` of them, oldest first.
///
/// # Errors
/// A database error.
pub async fn minutes(
    client: &impl GenericClient,
    since: DateTime<Utc>,
    count: usize,
) -> DbResult<Vec<Minute>> {
    let mut out: Vec<Minute> = (0..count)
        .map(|i| Minute {
            start: since + Duration::minutes(i64::try_from(i).unwrap_or_default()),
            events: 0,
            succeeded: 0,
            retried: 0,
            failed: 0,
        })
        .collect();
    let slot = |out: &mut Vec<Minute>, at: DateTime<Utc>| -> Option<usize> {
        let i = usize::try_from((at - since).num_minutes()).ok()?;
        (i < out.len()).then_some(i)
    };
    let events = client
        .query(
            "SELECT date_trunc('minute', received_at), count(*) FROM events
             WHERE received_at >= $1 GROUP BY 1",
            &[&since],
        )
        .await?;
    for row in events {
        if let Some(i) = slot(&mut out, row.get(0)) {
            out[i].events = row.get(1);
        }
    }
    let attempts = client
        .query(
            "SELECT minute, sum(succeeded)::int8, sum(retried)::int8, sum(failed)::int8
             FROM webhook_stats_minutely WHERE minute >= $1 GROUP BY 1",
            &[&since],
        )
        .await?;
    for row in attempts {
        if let Some(i) = slot(&mut out, row.get(0)) {
            out[i].succeeded = row.get(1);
            out[i].retried = row.get(2);
            out[i].failed = row.get(3);
        }
    }
    Ok(out)
}

/// How many tenants (not being deleted), webhooks and disabled webhooks.
///
/// # Errors
/// A database error.
pub async fn counts(client: &impl GenericClient) -> DbResult<(i64, i64, i64)> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM tenants WHERE deleted_at IS NULL),
                    (SELECT count(*) FROM webhooks),
                    (SELECT count(*) FROM webhooks WHERE NOT is_active)",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// A webhook that is switched off.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DisabledWebhook {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub url: String,
    pub disabled_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The latest disabled webhooks, at most `limit`.
///
/// # Errors
/// A database error.
pub async fn disabled_webhooks(
    client: &impl GenericClient,
    limit: i64,
) -> DbResult<Vec<DisabledWebhook>> {
    let rows = client
        .query(
            "SELECT id, tenant_id, name, url, disabled_reason, updated_at FROM webhooks
             WHERE NOT is_active ORDER BY updated_at DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DisabledWebhook {
            id: r.get(0),
            tenant_id: r.get(1),
            name: r.get(2),
            url: r.get(3),
            disabled_reason: r.get(4),
            updated_at: r.get(5),
        })
        .collect())
}
