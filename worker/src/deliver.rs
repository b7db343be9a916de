//! One delivery message, start to finish: skip it if it is already
//! delivered, wait if its endpoint's breaker, rate limit or in-flight bound
//! says so, send it (the [`Sender`] renders, signs and POSTs), record the
//! attempt and the delivery's new status,
//! and only then ack. A crash before the record leads to a redelivery and
//! at most a duplicate POST, which receivers deduplicate by `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald_delivery::retry::{self, Decision, Outcome, Park, Verdict};
use herald_delivery::sender::{Attempt, Sender, WebhookConfig};
use herald_shared::amqp::consumer::{Handler, HandlerError, seen_before};
use herald_shared::amqp::fairness;
use herald_shared::amqp::{REASON_HEADER, Topology, json_properties, publish_confirmed};
use herald_shared::db::deliveries::DeliveryState;
use herald_shared::db::{DbError, deliveries, webhooks};
use herald_shared::models::{DeliveryId, DeliveryMessage, DeliveryStatus, is_operational};
use herald_shared::operational;
use herald_shared::runtime::metrics::Metrics;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use tracing::Instrument;

use crate::backlog::Backlog;
use crate::breaker::Breaker;
use crate::limiter::{EndpointLimiter, Permit, Signal};
use crate::rate::RateLimiter;
use crate::recorder::Recorder;
use crate::webhook_cache::WebhookCache;

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
            .map(DeliveryId)
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

/// A delivery let through to its endpoint: the webhook, its place among
/// the endpoint's requests in flight, and the number of this attempt.
struct Admitted {
    webhook: Arc<WebhookConfig>,
    permit: Permit,
    attempt_number: i32,
}

/// What one attempt came to, and when it was made.
struct Attempted {
    attempt: Attempt,
    at: DateTime<Utc>,
}

impl Worker {
    /// One delivery message through the stages: **admit** (is it due, not
    /// already done, and may its endpoint take it now?), **attempt** (render,
    /// sign, POST), **decide** (a pure function of the result and the
    /// webhook's policy), **follow up** (the retry or the exhausted
    /// delivery, published and confirmed), **record** (the attempt and the
    /// delivery's status, then what the record says about the webhook).
    async fn deliver(
        &self,
        out: &Out<'_>,
        m: &mut DeliveryMessage,
        seen_before: bool,
    ) -> Result<(), HandlerError> {
        let Some(admitted) = self.admit(out, m, seen_before).await? else {
            return Ok(());
        };
        let webhook = Arc::clone(&admitted.webhook);
        let attempt_number = admitted.attempt_number;
        let attempted = self.attempt(m, admitted).await;
        let decision = retry::decide(
            attempted.attempt.outcome,
            attempted.attempt.status_code,
            attempted.attempt.retry_after,
            &webhook.retry_policy(self.max_retry_delay),
            u32::try_from(attempt_number).unwrap_or(u32::MAX),
            attempted.at,
            rand::random::<f64>() * 2.0 - 1.0,
        );
        log_decision(&attempted.attempt, &decision);
        self.follow_up(out, m, &webhook, &attempted, &decision, attempt_number)
            .await?;
        self.record(out, m, &webhook, &attempted, &decision).await
    }

    /// Lets a delivery through to its endpoint, or answers `None` when this
    /// message needs nothing more: it was a duplicate, its delivery is done
    /// or gone, it was parked or held for later, or its webhook is disabled
    /// (the delivery then fails unsent).
    async fn admit(
        &self,
        out: &Out<'_>,
        m: &mut DeliveryMessage,
        seen_before: bool,
    ) -> Result<Option<Admitted>, HandlerError> {
        let Some(attempts_so_far) = self.still_due(out, m, seen_before).await? else {
            return Ok(None);
        };
        let Some(webhook) = self.cache.get(m.webhook_id).await? else {
            return Ok(None);
        };
        if !webhook.is_active {
            let client = self.pool.get().await.map_err(DbError::from)?;
            deliveries::finish_unsent(&client, m.delivery_id, "the webhook is disabled").await?;
            self.metrics
                .deliveries_completed
                .with_label_values(&["failed"])
                .inc();
            return Ok(None);
        }
        // An endpoint whose breaker is open: the delivery waits, not
        // counted as an attempt, instead of taking a slot to fail again.
        // A manual retry is someone asking for it now, and goes through.
        if let Err(wait) = self.breaker.admit(webhook.id, Instant::now())
            && !m.manual
        {
            return self.hold(out, m, self.tier_for(wait)).await.map(|()| None);
        }
        // The webhook's rate limit, shared by every worker: without a token
        // the delivery waits, not counted as an attempt.
        if let Err(wait) = self
            .rate
            .check(webhook.id, webhook.rate_limit, Instant::now())
        {
            return self.hold(out, m, self.tier_for(wait)).await.map(|()| None);
        }
        // An endpoint at its bound of deliveries in flight, or a slow one
        // when the slow lane is full: this one waits a moment for a place
        // (a fast endpoint frees one at once), then in the shortest tier,
        // not counted as an attempt, so that its slot here goes to another
        // endpoint's delivery.
        let Some(permit) = self.limiter.acquire(webhook.id, LIMITER_PATIENCE).await else {
            return self
                .hold(out, m, self.tier_for(Duration::ZERO))
                .await
                .map(|()| None);
        };
        Ok(Some(Admitted {
            webhook,
            permit,
            attempt_number: attempts_so_far + 1,
        }))
    }

    /// Where the delivery stands: `None` when this message needs nothing
    /// more (a duplicate, a delivery that is over or gone, or one parked
    /// again because it came back from its retry tier early), else how many
    /// attempts it has had.
    async fn still_due(
        &self,
        out: &Out<'_>,
        m: &DeliveryMessage,
        seen_before: bool,
    ) -> Result<Option<i32>, HandlerError> {
        // A first attempt's message, fresh from the dispatcher, finds its
        // delivery pending and unattempted: it needs no look. Anything else
        // (a retry, a manual resend, a message seen before or published
        // again by the sweeper) checks where the delivery stands, so a
        // duplicate costs no second POST.
        let state = if m.attempt == 1 && !m.manual && !m.republished && !seen_before {
            DeliveryState {
                status: DeliveryStatus::Pending,
                attempt_count: 0,
                next_attempt_at: None,
            }
        } else {
            let client = self.pool.get().await.map_err(DbError::from)?;
            let Some(state) = deliveries::delivery_state(&client, m.delivery_id).await? else {
                // The delivery is gone (its webhook was deleted).
                return Ok(None);
            };
            state
        };
        let done = matches!(
            state.status,
            DeliveryStatus::Success | DeliveryStatus::Failed
        );
        // A duplicate of a message whose attempt already happened, or one
        // for a delivery that is over (a manual retry reopens it).
        if (done && !m.manual) || state.attempt_count >= m.attempt {
            return Ok(None);
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
                Park::Tier(tier) => return self.park(out, m, tier).await.map(|()| None),
            }
        }
        if !m.manual {
            // How long past its due time this delivery waited for a worker.
            let due = m.due_at.unwrap_or(m.received_at);
            self.backlog
                .observe((Utc::now() - due).to_std().unwrap_or_default());
        }
        Ok(Some(state.attempt_count))
    }

    /// Renders, signs and sends the request, and tells the endpoint's
    /// limiter how it went; the place in flight frees when this returns.
    async fn attempt(&self, m: &DeliveryMessage, admitted: Admitted) -> Attempted {
        let Admitted {
            webhook,
            permit,
            attempt_number,
        } = admitted;
        let lane = permit
            .in_lane()
            .then(|| self.metrics.slow_lane_deliveries.clone());
        let at = Utc::now();
        self.metrics.inflight_deliveries.inc();
        if let Some(gauge) = &lane {
            gauge.inc();
        }
        let attempt = self.sender.send(m, &webhook, at, attempt_number).await;
        self.metrics.inflight_deliveries.dec();
        if let Some(gauge) = &lane {
            gauge.dec();
        }
        let (signal, took) = match attempt.outcome {
            // A timeout is as slow as it gets, whatever the clock says.
            Outcome::Timeout => (Signal::Overloaded, Duration::MAX),
            _ => (Signal::from_status(attempt.status_code), attempt.duration),
        };
        self.limiter.feedback(webhook.id, signal, took);
        drop(permit);
        self.metrics
            .delivery_attempts
            .with_label_values(&[attempt.outcome.label()])
            .inc();
        self.metrics
            .delivery_duration
            .observe(attempt.duration.as_secs_f64());
        Attempted { attempt, at }
    }

    /// Publishes what comes next, confirmed, before the attempt is
    /// recorded: a crash between the two repeats the attempt (a duplicate
    /// POST) rather than losing the retry. A retry goes to its tier; an
    /// exhausted delivery to the failed queue, with `delivery.exhausted`.
    async fn follow_up(
        &self,
        out: &Out<'_>,
        m: &mut DeliveryMessage,
        webhook: &WebhookConfig,
        attempted: &Attempted,
        decision: &Decision,
        attempt_number: i32,
    ) -> Result<(), HandlerError> {
        let attempt = &attempted.attempt;
        if let Some(due) = decision.next_attempt_at {
            m.attempt = attempt_number + 1;
            m.due_at = Some(due);
            m.manual = false;
            let tier = self.tier_for((due - Utc::now()).to_std().unwrap_or_default());
            self.park(out, m, tier).await?;
            self.metrics.retries_scheduled.inc();
        } else if decision.status == DeliveryStatus::Success
            && m.reopened
            && !is_operational(&m.event_type)
        {
            let event = operational::delivery_recovered(m, attempt_number, attempt.status_code);
            // Delivered either way; a lost announcement is logged.
            if let Err(e) = operational::publish(out.channel, &self.topology, &event).await {
                tracing::warn!(delivery_id = %m.delivery_id, error.message = %e, "could not publish delivery.recovered");
            }
        } else if decision.exhausted {
            self.publish_exhausted(out, m, attempt).await?;
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
        self.breaker.record(
            webhook.id,
            decision.verdict == Verdict::Delivered,
            Instant::now(),
        );
        Ok(())
    }

    /// Records the attempt and the delivery's new status (in a batch with
    /// other workers' tasks), disables the webhook when its endpoint is gone
    /// or has failed too long, and counts the outcome.
    async fn record(
        &self,
        out: &Out<'_>,
        m: &DeliveryMessage,
        webhook: &WebhookConfig,
        attempted: &Attempted,
        decision: &Decision,
    ) -> Result<(), HandlerError> {
        let attempt = &attempted.attempt;
        let recorded = self
            .recorder
            .record(deliveries::AttemptRecord::new(
                m.delivery_id,
                attempted.at,
                attempt,
                decision,
            ))
            .await?;
        let disable_reason = if decision.verdict == Verdict::Gone {
            Some(format!(
                "the endpoint answered 410 Gone at {}",
                attempted.at.to_rfc3339()
            ))
        } else {
            recorded.and_then(|r| self.failing_too_long(&r))
        };
        if let Some(reason) = disable_reason {
            self.disable(out, webhook, &reason).await?;
        }
        if decision.status != DeliveryStatus::Retrying {
            self.metrics
                .deliveries_completed
                .with_label_values(&[decision.status.as_str()])
                .inc();
        }
        if decision.status == DeliveryStatus::Success {
            let elapsed = (Utc::now() - m.received_at).to_std().unwrap_or_default();
            self.metrics
                .event_to_delivery
                .observe(elapsed.as_secs_f64());
        }
        Ok(())
    }

    /// Disables a webhook and announces it with `webhook.disabled`.
    async fn disable(
        &self,
        out: &Out<'_>,
        webhook: &WebhookConfig,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        if !webhooks::disable(&client, webhook.id, reason).await? {
            // Disabled already (by another worker, or by its tenant).
            return Ok(());
        }
        self.metrics.webhooks_disabled.inc();
        tracing::info!(webhook_id = %webhook.id, %reason, "webhook disabled");
        let event = operational::webhook_disabled(
            webhook.tenant_id,
            webhook.id,
            &webhook.url,
            reason,
            Utc::now(),
        );
        // The webhook is disabled either way; a lost announcement is logged
        // rather than undoing the record.
        if let Err(e) = operational::publish(out.channel, &self.topology, &event).await {
            tracing::warn!(webhook_id = %webhook.id, error.message = %e, "could not publish webhook.disabled");
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

/// One line per attempt, inside the delivery's span (its ids and attempt
/// come with it). The error text is Herald's own, never a header or a
/// credential.
fn log_decision(attempt: &Attempt, decision: &Decision) {
    let duration_ms = u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX);
    let outcome = attempt.outcome.label();
    let error = attempt.error.as_deref().unwrap_or_default();
    match decision.status {
        DeliveryStatus::Success => {
            tracing::debug!(status_code = attempt.status_code, duration_ms, "delivered");
        }
        DeliveryStatus::Retrying => tracing::debug!(
            status_code = attempt.status_code,
            duration_ms,
            outcome,
            error.message = error,
            next_attempt_at = ?decision.next_attempt_at,
            "attempt failed; retry scheduled"
        ),
        _ => tracing::info!(
            status_code = attempt.status_code,
            duration_ms,
            outcome,
            error.message = error,
            "delivery failed"
        ),
    }
}

fn encode(m: &DeliveryMessage) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec(m)
        .map_err(|e| HandlerError::Permanent(format!("cannot encode the delivery message: {e}")))
}
