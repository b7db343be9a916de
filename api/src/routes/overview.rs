//! `GET /v1/overview`: the operator's view of the whole system.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, DurationRound, Utc};
use herald_shared::db::overview::{self, DisabledWebhook, Minute};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_overview))
}

/// Totals over the hour.
#[derive(Serialize, ToSchema)]
struct Totals {
    events: i64,
    succeeded: i64,
    retried: i64,
    failed: i64,
    /// Failed and retried attempts over all attempts; `null` without any.
    failure_ratio: Option<f64>,
}

/// Messages ready in Herald's queues; `null` when the broker could not be
/// asked.
#[derive(Serialize, ToSchema)]
struct Queues {
    dispatch: Option<u32>,
    deliveries: Option<u32>,
    /// In every retry tier together.
    retrying: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct Overview {
    since: DateTime<Utc>,
    bucket_seconds: i64,
    /// The last 60 minutes, oldest first, every one present.
    minutes: Vec<Minute>,
    totals: Totals,
    queues: Queues,
    tenants: i64,
    webhooks: i64,
    webhooks_disabled: i64,
    /// The latest 20.
    disabled_webhooks: Vec<DisabledWebhook>,
}

/// Events and attempts per minute over the last hour, the queues' backlog,
/// and the webhooks switched off. Admin token.
#[utoipa::path(get, path = "/v1/overview", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = Overview), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn get_overview(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let now = Utc::now()
        .duration_trunc(Duration::minutes(1))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let since = now - Duration::minutes(59);
    let client = state.pool.get().await?;
    let minutes = overview::minutes(&client, since, 60).await?;
    let (tenants, webhooks, webhooks_disabled) = overview::counts(&client).await?;
    let disabled_webhooks = overview::disabled_webhooks(&client, 20).await?;
    drop(client);
    let sum = |f: fn(&Minute) -> i64| minutes.iter().map(f).sum::<i64>();
    let (succeeded, retried, failed) =
        (sum(|m| m.succeeded), sum(|m| m.retried), sum(|m| m.failed));
    let attempts = succeeded + retried + failed;
    #[allow(clippy::cast_precision_loss)]
    let failure_ratio = (attempts > 0).then(|| (retried + failed) as f64 / attempts as f64);
    Ok(axum::Json(Overview {
        since,
        bucket_seconds: 60,
        totals: Totals {
            events: sum(|m| m.events),
            succeeded,
            retried,
            failed,
            failure_ratio,
        },
        minutes,
        queues: queues(&state).await,
        tenants,
        webhooks,
        webhooks_disabled,
        disabled_webhooks,
    }))
}

async fn queues(state: &AppState) -> Queues {
    let t = &state.topology;
    let mut names = vec![t.dispatch_queue(), t.deliveries()];
    names.extend(t.retry_tiers().iter().map(|tier| t.retry_queue(*tier)));
    match state.publisher.queue_depths(&names).await {
        Ok(depths) => Queues {
            dispatch: depths.first().copied().flatten(),
            deliveries: depths.get(1).copied().flatten(),
            retrying: depths
                .get(2..)
                .and_then(|tiers| tiers.iter().copied().sum::<Option<u32>>()),
        },
        Err(_) => Queues {
            dispatch: None,
            deliveries: None,
            retrying: None,
        },
    }
}
