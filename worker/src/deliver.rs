//! One delivery message, start to finish: skip it if it is already
//! delivered, wait if its endpoint's breaker, rate limit or in-flight bound
//! says so, send it (the [`Sender`] renders, signs and POSTs), record the
//! attempt and the delivery's new status,
//! and only then ack. A crash before the record leads to a redelivery and
//! at most a duplicate POST, which receivers deduplicate by `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_shared::amqp::{REASON_HEADER, Topology, json_properties, publish_confirmed};
use herald_shared::consumer::{Handler, HandlerError, seen_before};
use herald_shared::db::deliveries::DeliveryState;
use herald_shared::db::{DbError, deliveries, webhooks};
use herald_shared::fairness;
use herald_shared::metrics::Metrics;
use herald_shared::models::{DeliveryMessage, DeliveryStatus, EventType};
use herald_shared::operational;
use herald_shared::retry::{self, Park, Verdict};
use herald_shared::sender::{Attempt, Sender};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use tracing::Instrument;

use crate::backlog::Backlog;
use crate::breaker::Breaker;
use crate::limiter::{EndpointLimiter, Signal};
use crate::rate::RateLimiter;
use crate::recorder::Recorder;
use crate::webhook_cache::WebhookCache;

fn is_operational(event_type: &str) -> bool {
    EventType::parse(event_type).is_ok_and(|t| t.is_operational())
}

/// How long a delivery waits for a place under its endpoint's in-flight
/// bound before it is parked instead.
const LIMITER_PATIENCE: Duration = Duration::from_millis(100);

/// Where a delivery's follow-up messages go, and at what priority.
struct Out<'a> {
    channel: &'a Channel,
    priority: u8,
}

#[derive(Debug)]
pub struct Worker {
    pub pool: deadpool_postgres::Pool,
    pub cache: WebhookCache,
    pub metrics: Metrics,
    /// Renders, signs and sends each attempt.
    pub sender: Sender,
    pub topology: Topology,
    /// No retry waits longer than this.
    pub max_retry_delay: Duration,
    /// Deliveries in flight per endpoint.
    pub limiter: Arc<EndpointLimiter>,
    /// Endpoints failing hard wait instead of taking slots.
    pub breaker: Breaker,
    /// Per-webhook rate limits, shared with the other workers.
    pub rate: Arc<RateLimiter>,
    /// Writes attempts in batches.
    pub recorder: Recorder,
    /// A webhook whose every attempt failed for this long, and at least
    /// this many times, is disabled.
    pub disable_after: (Duration, u32),
    /// How late deliveries are taken up, for the backlog-age gauge.
    pub backlog: Arc<Backlog>,
}

impl Handler for Worker {
    async fn handle(&self, publisher: &Channel, delivery: &Delivery) -> Result<(), HandlerError> {
        let mut message: DeliveryMessage = serde_json::from_slice(&delivery.data)
            .map_err(|e| HandlerError::Permanent(format!("unreadable delivery message: {e}")))?;
        // Every log line of this delivery carries its ids and attempt.
        let span = tracing::info_span!(
            "delivery",
            event_id = %message.event_id,
            delivery_id = %message.delivery_id,
            webhook_id = %message.webhook_id,
            attempt = message.attempt,
        );
        // Retries and holds keep the priority the message came with.
        let out = Out {
            channel: publisher,
            priority: delivery.properties.priority().unwrap_or(fairness::BULK),
        };
        self.deliver(&out, &mut message, seen_before(delivery))
            .instrument(span)
            .await
    }

    /// A parked delivery is failed in Postgres with the reason, so that
    /// its history says what happened and `recover` can send it again.
    async fn parked(&self, delivery: &Delivery, reason: &str) {
        let Some(delivery_id) = serde_json::from_slice::<serde_json::Value>(&delivery.data)
            .ok()
            .and_then(|m| m.get("delivery_id")?.as_str()?.parse::<uuid::Uuid>().ok())
        else {
            return;
        };
        let reason = format!("parked: {reason}");
        let finished = match self.pool.get().await {
            Ok(client) => deliveries::finish_unsent(&client, delivery_id, &reason)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = finished {
            tracing::warn!(%delivery_id, error.message = %e, "parked delivery not marked failed");
        }
    }
}

impl Worker {
    async fn deliver(
        &self,
        out: &Out<'_>,
        m: &mut DeliveryMessage,
        redelivered: bool,
    ) -> Result<(), HandlerError> {
        // A first attempt's message, fresh from the dispatcher, finds its
        // delivery pending and unattempted: it needs no look. Anything else
        // (a retry, a manual resend, a redelivery after a crash) checks
        // where the delivery stands, so a duplicate costs no second POST.
        let state = if m.attempt == 1 && !m.manual && !redelivered {
            DeliveryState {
                status: DeliveryStatus::Pending,
                attempt_count: 0,
                next_attempt_at: None,
            }
        } else {
            let client = self.pool.get().await.map_err(DbError::from)?;
            let Some(state) = deliveries::delivery_state(&client, m.delivery_id).await? else {
                // The delivery is gone (its webhook was deleted).
                return Ok(());
            };
            state
        };
        if !m.manual
            && matches!(
                state.status,
                DeliveryStatus::Success | DeliveryStatus::Failed
            )
        {
            return Ok(());
        }
        if state.attempt_count >= m.attempt {
            // A duplicate of a message whose attempt already happened.
            return Ok(());
        }
        // A message comes back from a retry tier shorter than its wait
        // early: it is parked again for the rest, so tiers chain to any delay.
        if let Some(due) = m.due_at {
            match retry::park(
                (due - Utc::now()).to_std().unwrap_or_default(),
                self.topology.retry_tiers(),
            ) {
                Park::Now => {}
                Park::Sleep(d) => tokio::time::sleep(d).await,
                Park::Tier(tier) => return self.park(out, m, tier).await,
            }
        }

        if !m.manual {
            // How long past its due time this delivery waited for a worker.
            let due = m.due_at.unwrap_or(m.received_at);
            self.backlog
                .observe((Utc::now() - due).to_std().unwrap_or_default());
        }

        let Some(webhook) = self.cache.get(m.webhook_id).await? else {
            return Ok(());
        };
        if !webhook.is_active {
            let client = self.pool.get().await.map_err(DbError::from)?;
            deliveries::finish_unsent(&client, m.delivery_id, "the webhook is disabled").await?;
            self.metrics
                .deliveries_completed
                .with_label_values(&["failed"])
                .inc();
            return Ok(());
        }

        // An endpoint whose breaker is open: the delivery waits, not
        // counted as an attempt, instead of taking a slot to fail again.
        // A manual retry is someone asking for it now, and goes through.
        if let Err(wait) = self.breaker.admit(webhook.id, Instant::now())
            && !m.manual
        {
            return self.hold(out, m, self.tier_for(wait)).await;
        }
        // The webhook's rate limit, shared by every worker: without a token
        // the delivery waits, not counted as an attempt.
        if let Err(wait) = self
            .rate
            .check(webhook.id, webhook.rate_limit, Instant::now())
        {
            return self.hold(out, m, self.tier_for(wait)).await;
        }
        // An endpoint at its bound of deliveries in flight: this one waits
        // a moment for a place (a fast endpoint frees one at once), then in
        // the shortest tier, not counted as an attempt, so that its slot
        // here goes to another endpoint's delivery.
        let Some(permit) = self.limiter.acquire(webhook.id, LIMITER_PATIENCE).await else {
            return self.hold(out, m, self.tier_for(Duration::ZERO)).await;
        };
        if permit.in_lane() {
            self.metrics.slow_lane_deliveries.inc();
        }
        let attempted_at = Utc::now();
        let attempt_number = state.attempt_count + 1;
        self.metrics.inflight_deliveries.inc();
        let attempt = self
            .sender
            .send(m, &webhook, attempted_at, attempt_number)
            .await;
        self.metrics.inflight_deliveries.dec();
        let signal = if attempt.outcome == "timeout" {
            Signal::Overloaded
        } else {
            Signal::from_status(attempt.status_code)
        };
        // A timeout is as slow as it gets, whatever the clock says.
        let took = if attempt.outcome == "timeout" {
            Duration::MAX
        } else {
            attempt.duration
        };
        self.limiter.feedback(webhook.id, signal, took);
        if permit.in_lane() {
            self.metrics.slow_lane_deliveries.dec();
        }
        drop(permit);
        self.metrics
            .delivery_attempts
            .with_label_values(&[attempt.outcome])
            .inc();
        self.metrics
            .delivery_duration
            .observe(attempt.duration.as_secs_f64());

        let verdict = if attempt.blocked {
            Verdict::Fail
        } else {
            retry::classify(attempt.status_code, attempt.retry_after)
        };
        let (new_status, next_attempt_at) = match verdict {
            Verdict::Delivered => (DeliveryStatus::Success, None),
            Verdict::Retry { retry_after } => {
                let jitter = rand::random::<f64>() * 2.0 - 1.0;
                let policy = webhook.retry_policy(self.max_retry_delay);
                match policy.next_delay(
                    u32::try_from(attempt_number).unwrap_or(u32::MAX),
                    retry_after,
                    jitter,
                ) {
                    Some(delay) => {
                        let due =
                            attempted_at + chrono::Duration::from_std(delay).unwrap_or_default();
                        (DeliveryStatus::Retrying, Some(due))
                    }
                    None => (DeliveryStatus::Failed, None),
                }
            }
            Verdict::Gone | Verdict::Fail => (DeliveryStatus::Failed, None),
        };

        // Inside the delivery's span: the ids and attempt come with it.
        // The error text is Herald's own (never a header or credential).
        let duration_ms = u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX);
        match new_status {
            DeliveryStatus::Success => {
                tracing::debug!(status_code = attempt.status_code, duration_ms, "delivered");
            }
            DeliveryStatus::Retrying => tracing::debug!(
                status_code = attempt.status_code,
                duration_ms,
                outcome = attempt.outcome,
                error.message = attempt.error.as_deref().unwrap_or_default(),
                next_attempt_at = ?next_attempt_at,
                "attempt failed; retry scheduled"
            ),
            _ => tracing::info!(
                status_code = attempt.status_code,
                duration_ms,
                outcome = attempt.outcome,
                error.message = attempt.error.as_deref().unwrap_or_default(),
                "delivery failed"
            ),
        }

        // The follow-up message is confirmed before the attempt is recorded:
        // a crash between the two repeats the attempt (a duplicate POST)
        // rather than losing the retry.
        if let Some(due) = next_attempt_at {
            m.attempt = attempt_number + 1;
            m.due_at = Some(due);
            m.manual = false;
            let tier = self.tier_for((due - Utc::now()).to_std().unwrap_or_default());
            self.park(out, m, tier).await?;
            self.metrics.retries_scheduled.inc();
        } else if new_status == DeliveryStatus::Failed && matches!(verdict, Verdict::Retry { .. }) {
            self.publish_exhausted(out, m, &attempt).await?;
            self.metrics.deliveries_exhausted.inc();
            // Herald's own events do not announce their own exhaustion, so
            // two failing webhooks cannot keep each other busy.
            if !is_operational(&m.event_type) {
                let event = operational::delivery_exhausted(
                    m,
                    attempt_number,
                    attempt.status_code,
                    attempt.error.as_deref(),
                );
                operational::publish(out.channel, &self.topology, &event).await?;
            }
        }
        self.breaker
            .record(webhook.id, verdict == Verdict::Delivered, Instant::now());

        let recorded = self
            .recorder
            .record(deliveries::AttemptRecord {
                delivery_id: m.delivery_id,
                attempted_at,
                duration_ms: i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX),
                status_code: attempt.status_code.map(i32::from),
                response_body: attempt.body.clone(),
                error: attempt.error.clone(),
                new_status,
                next_attempt_at,
            })
            .await?;
        let disable_reason = if verdict == Verdict::Gone {
            Some(format!(
                "the endpoint answered 410 Gone at {}",
                attempted_at.to_rfc3339()
            ))
        } else {
            recorded.and_then(|r| self.failing_too_long(&r))
        };
        if let Some(reason) = disable_reason
            && webhooks::disable(
                &self.pool.get().await.map_err(DbError::from)?,
                webhook.id,
                &reason,
            )
            .await?
        {
            self.metrics.webhooks_disabled.inc();
            tracing::info!(webhook_id = %webhook.id, %reason, "webhook disabled");
            let event = operational::webhook_disabled(
                webhook.tenant_id,
                webhook.id,
                &webhook.url,
                &reason,
                Utc::now(),
            );
            // The webhook is disabled either way; a lost announcement is
            // logged rather than undoing the record above.
            if let Err(e) = operational::publish(out.channel, &self.topology, &event).await {
                tracing::warn!(webhook_id = %webhook.id, error.message = %e, "could not publish webhook.disabled");
            }
        }
        if new_status != DeliveryStatus::Retrying {
            self.metrics
                .deliveries_completed
                .with_label_values(&[new_status.as_str()])
                .inc();
        }
        if new_status == DeliveryStatus::Success {
            let elapsed = (Utc::now() - m.received_at).to_std().unwrap_or_default();
            self.metrics
                .event_to_delivery
                .observe(elapsed.as_secs_f64());
        }
        Ok(())
    }

    /// The reason to disable a webhook whose every attempt has failed for
    /// the configured window and count, if that is where it stands.
    fn failing_too_long(&self, r: &deliveries::Recorded) -> Option<String> {
        let since = r.failing_since?;
        let window = chrono::Duration::from_std(self.disable_after.0).unwrap_or_default();
        (Utc::now() - since >= window
            && i64::from(r.consecutive_failures) >= i64::from(self.disable_after.1))
        .then(|| {
            format!(
                "every attempt since {} failed ({} in a row)",
                since.to_rfc3339(),
                r.consecutive_failures
            )
        })
    }

    /// The retry tier for a wait: the longest that does not overshoot, or
    /// the shortest (slightly late rather than holding a slot here).
    fn tier_for(&self, wait: Duration) -> Duration {
        match retry::park(wait, self.topology.retry_tiers()) {
            Park::Tier(t) => t,
            Park::Now | Park::Sleep(_) => self
                .topology
                .retry_tiers()
                .first()
                .copied()
                .unwrap_or_default(),
        }
    }

    /// Puts a message into a retry tier's queue, confirmed; it comes back to
    /// the deliveries queue when the tier's TTL ends.
    /// Holds a delivery back for a tier, not as an attempt (breaker, rate
    /// limit, endpoint bound): it is due again when it comes back, so its
    /// wait in the tier does not count as backlog.
    async fn hold(
        &self,
        out: &Out<'_>,
        m: &mut DeliveryMessage,
        tier: Duration,
    ) -> Result<(), HandlerError> {
        m.due_at = Some(Utc::now() + chrono::Duration::from_std(tier).unwrap_or_default());
        self.park(out, m, tier).await
    }

    async fn park(
        &self,
        out: &Out<'_>,
        m: &DeliveryMessage,
        tier: Duration,
    ) -> Result<(), HandlerError> {
        let body = encode(m)?;
        let queue = self.topology.retry_queue(tier);
        publish_confirmed(
            out.channel,
            &self.topology.retry_exchange(),
            &queue,
            &body,
            json_properties().with_priority(out.priority),
        )
        .await?;
        Ok(())
    }

    /// Hands an exhausted delivery to the failed queue, with the last error.
    async fn publish_exhausted(
        &self,
        out: &Out<'_>,
        m: &DeliveryMessage,
        attempt: &Attempt,
    ) -> Result<(), HandlerError> {
        let reason = attempt
            .error
            .clone()
            .unwrap_or_else(|| "retries exhausted".to_owned());
        let mut headers = FieldTable::default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(reason.into_bytes().into()),
        );
        let body = encode(m)?;
        publish_confirmed(
            out.channel,
            "",
            &self.topology.failed_queue(),
            &body,
            json_properties().with_headers(headers),
        )
        .await?;
        Ok(())
    }
}

fn encode(m: &DeliveryMessage) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec(m)
        .map_err(|e| HandlerError::Permanent(format!("cannot encode the delivery message: {e}")))
}
