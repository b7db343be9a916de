//! A webhook's statistics for a chart: attempts by outcome and latency
//! percentiles over the last hour, day or week, in even buckets, read from
//! the per-minute rollup (`db::stats`), so the cost does not grow with the
//! number of deliveries.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, DurationRound, Utc};
use herald_shared::db::stats::{self, Bucket};
use herald_shared::db::webhooks;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// The window of a chart.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
pub(super) enum Period {
    /// 60 buckets of a minute.
    #[serde(rename = "1h")]
    Hour,
    /// 96 buckets of 15 minutes.
    #[default]
    #[serde(rename = "24h")]
    Day,
    /// 84 buckets of 2 hours.
    #[serde(rename = "7d")]
    Week,
}

impl Period {
    const fn buckets(self) -> (Duration, usize) {
        match self {
            Self::Hour => (Duration::minutes(1), 60),
            Self::Day => (Duration::minutes(15), 96),
            Self::Week => (Duration::hours(2), 84),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    /// `1h`, `24h` (default) or `7d`.
    period: Option<Period>,
}

/// Attempts in one bucket (or in all of them).
#[derive(Serialize, ToSchema)]
pub(super) struct Counts {
    /// Start of the bucket (absent in the totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<DateTime<Utc>>,
    /// Attempts that delivered.
    succeeded: i64,
    /// Failed attempts with a retry to come.
    retried: i64,
    /// Failed attempts that ended their delivery.
    failed: i64,
    /// Attempt duration percentiles (ms), from the latency buckets; `null`
    /// without attempts.
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl Counts {
    fn of(b: &Bucket, start: Option<DateTime<Utc>>) -> Self {
        let q = |q: f64| b.latency_quantile(q).map(|ms| (ms * 10.0).round() / 10.0);
        Self {
            start,
            succeeded: b.succeeded,
            retried: b.retried,
            failed: b.failed,
            p50_ms: q(0.5),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
        }
    }
}

/// A webhook's statistics.
#[derive(Serialize, ToSchema)]
pub(super) struct WebhookStats {
    webhook_id: Uuid,
    period: Period,
    bucket_seconds: i64,
    since: DateTime<Utc>,
    totals: Counts,
    /// Oldest first, every bucket present.
    buckets: Vec<Counts>,
}

/// Attempts by outcome and latency percentiles over the last hour, day or
/// week, in even buckets (the last one is the current, partial one).
#[utoipa::path(get, path = "/v1/webhooks/{id}/stats", tag = "webhooks", params(("id" = Uuid, Path), StatsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookStats), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub(super) async fn webhook_stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<impl IntoResponse> {
    let scope = caller.scope_on(id)?;
    // The counts cover every event type the webhook gets.
    if scope.types().is_some() {
        return Err(ApiError::Forbidden(
            "statistics count every event type; this portal session is narrowed to some",
        ));
    }
    let tenant = scope.tenant;
    let period = q.period.unwrap_or_default();
    let (width, count) = period.buckets();
    let client = state.pool.get().await?;
    if webhooks::get(&client, tenant, id, false).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let current = Utc::now()
        .duration_trunc(width)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let since = current - width * i32::try_from(count - 1).unwrap_or_default();
    let buckets = stats::buckets(&client, id, since, width, count).await?;
    let mut total = Bucket::empty(since);
    for b in &buckets {
        total.add(b);
    }
    Ok(axum::Json(WebhookStats {
        webhook_id: id,
        period,
        bucket_seconds: width.num_seconds(),
        since,
        totals: Counts::of(&total, None),
        buckets: buckets
            .iter()
            .map(|b| Counts::of(b, Some(b.start)))
            .collect(),
    }))
}
