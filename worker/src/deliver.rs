//! One delivery message, start to finish: skip it if it is already
//! delivered, render the envelope, sign it, POST it with the webhook's
//! timeout and headers, record the attempt and the delivery's new status,
//! and only then ack. A crash before the record leads to a redelivery and
//! at most a duplicate POST, which receivers deduplicate by `webhook-id`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_shared::models::EventType;

use chrono::{DateTime, Utc};
use herald_shared::amqp::{REASON_HEADER, Topology, json_properties, publish_confirmed};
use herald_shared::config::SecuritySettings;
use herald_shared::consumer::{Disposition, Handler};
use herald_shared::db::deliveries::DeliveryState;
use herald_shared::db::{DbError, deliveries, webhooks};
use herald_shared::metrics::Metrics;
use herald_shared::models::{DeliveryMessage, DeliveryStatus, Severity};
use herald_shared::net_guard::check_url;
use herald_shared::operational;
use herald_shared::retry::{self, Park, Verdict};
use herald_shared::signing::WebhookSecret;
use http::{HeaderName, HeaderValue, header};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::breaker::Breaker;
use crate::limiter::{EndpointLimiter, Signal};
use crate::rate::RateLimiter;
use crate::recorder::Recorder;
use crate::webhook_cache::{WebhookCache, WebhookConfig};

fn is_operational(event_type: &str) -> bool {
    EventType::parse(event_type).is_ok_and(|t| t.is_operational())
}

/// How long a delivery waits for a place under its endpoint's in-flight
/// bound before it is parked instead.
const LIMITER_PATIENCE: Duration = Duration::from_millis(100);

/// Characters of a response body kept with an attempt.
const RESPONSE_CHARS: usize = 1000;
/// Bytes read from a response body at most (enough for 1,000 characters of
/// UTF-8); the rest is not read.
const RESPONSE_BYTES: usize = 4 * RESPONSE_CHARS;

#[derive(Debug)]
pub struct Worker {
    pub pool: deadpool_postgres::Pool,
    pub cache: WebhookCache,
    pub metrics: Metrics,
    pub security: SecuritySettings,
    /// Name of the `sha256=<hex>` header.
    pub signature_header: HeaderName,
    /// The delivery client, and the one for webhooks with `verify_ssl` off.
    pub client: reqwest::Client,
    pub insecure_client: reqwest::Client,
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
}

/// The JSON body a receiver gets.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: DateTime<Utc>,
    tenant_id: Uuid,
    webhook_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    data: &'a RawValue,
}

/// What one HTTP attempt came to.
#[derive(Debug, Default)]
struct Attempt {
    status_code: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    duration: Duration,
    /// For the attempts counter: `success`, `http_error`, `timeout`,
    /// `network_error` or `blocked`.
    outcome: &'static str,
    /// The endpoint's `Retry-After`, if it sent one.
    retry_after: Option<Duration>,
    /// Not sent at all (a refused target, an unrenderable body): no retry
    /// would go differently.
    blocked: bool,
}

impl Handler for Worker {
    async fn handle(&self, publisher: &Channel, delivery: &Delivery) -> Disposition {
        let mut message: DeliveryMessage = match serde_json::from_slice(&delivery.data) {
            Ok(m) => m,
            Err(e) => {
                // Only Herald publishes here; a message it cannot read would
                // fail the same way forever, so it is dropped with a record
                // in the log rather than redelivered in a loop.
                tracing::error!(error.message = %e, "unreadable delivery message dropped");
                return Disposition::Ack;
            }
        };
        match self
            .deliver(publisher, &mut message, delivery.redelivered)
            .await
        {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                tracing::warn!(delivery_id = %message.delivery_id, error.message = %e, "delivery not recorded; it will be redelivered");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Disposition::Requeue
            }
        }
    }
}

impl Worker {
    async fn deliver(
        &self,
        publisher: &Channel,
        m: &mut DeliveryMessage,
        redelivered: bool,
    ) -> anyhow::Result<()> {
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
                Park::Tier(tier) => return self.park(publisher, m, tier).await,
            }
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
            return self.park(publisher, m, self.tier_for(wait)).await;
        }
        // The webhook's rate limit, shared by every worker: without a token
        // the delivery waits, not counted as an attempt.
        if let Err(wait) = self
            .rate
            .check(webhook.id, webhook.rate_limit, Instant::now())
        {
            return self.park(publisher, m, self.tier_for(wait)).await;
        }
        // An endpoint at its bound of deliveries in flight: this one waits
        // a moment for a place (a fast endpoint frees one at once), then in
        // the shortest tier, not counted as an attempt, so that its slot
        // here goes to another endpoint's delivery.
        let Some(permit) = self.limiter.acquire(webhook.id, LIMITER_PATIENCE).await else {
            return self.park(publisher, m, self.tier_for(Duration::ZERO)).await;
        };
        let attempted_at = Utc::now();
        let attempt_number = state.attempt_count + 1;
        self.metrics.inflight_deliveries.inc();
        let attempt = self.post(m, &webhook, attempted_at, attempt_number).await;
        self.metrics.inflight_deliveries.dec();
        let signal = if attempt.outcome == "timeout" {
            Signal::Overloaded
        } else {
            Signal::from_status(attempt.status_code)
        };
        self.limiter.feedback(webhook.id, signal);
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

        // The follow-up message is confirmed before the attempt is recorded:
        // a crash between the two repeats the attempt (a duplicate POST)
        // rather than losing the retry.
        if let Some(due) = next_attempt_at {
            m.attempt = attempt_number + 1;
            m.due_at = Some(due);
            m.manual = false;
            let tier = self.tier_for((due - Utc::now()).to_std().unwrap_or_default());
            self.park(publisher, m, tier).await?;
            self.metrics.retries_scheduled.inc();
        } else if new_status == DeliveryStatus::Failed && matches!(verdict, Verdict::Retry { .. }) {
            self.publish_exhausted(publisher, m, &attempt).await?;
            // Herald's own events do not announce their own exhaustion, so
            // two failing webhooks cannot keep each other busy.
            if !is_operational(&m.event_type) {
                let event = operational::delivery_exhausted(
                    m,
                    attempt_number,
                    attempt.status_code,
                    attempt.error.as_deref(),
                );
                operational::publish(publisher, &self.topology, &event).await?;
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
            if let Err(e) = operational::publish(publisher, &self.topology, &event).await {
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
    async fn park(
        &self,
        publisher: &Channel,
        m: &DeliveryMessage,
        tier: Duration,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_vec(m)?;
        let queue = self.topology.retry_queue(tier);
        publish_confirmed(
            publisher,
            &self.topology.retry_exchange(),
            &queue,
            &body,
            json_properties(),
        )
        .await?;
        Ok(())
    }

    /// Hands an exhausted delivery to the failed queue, with the last error.
    async fn publish_exhausted(
        &self,
        publisher: &Channel,
        m: &DeliveryMessage,
        attempt: &Attempt,
    ) -> anyhow::Result<()> {
        let reason = attempt
            .error
            .clone()
            .unwrap_or_else(|| "retries exhausted".to_owned());
        let mut headers = FieldTable::default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(reason.into_bytes().into()),
        );
        let body = serde_json::to_vec(m)?;
        publish_confirmed(
            publisher,
            "",
            &self.topology.failed_queue(),
            &body,
            json_properties().with_headers(headers),
        )
        .await?;
        Ok(())
    }

    /// Renders, signs and sends one request.
    async fn post(
        &self,
        m: &DeliveryMessage,
        webhook: &WebhookConfig,
        attempted_at: DateTime<Utc>,
        attempt_number: i32,
    ) -> Attempt {
        // Checked again here: the settings may have tightened since the
        // webhook was saved. Host names are checked as they resolve.
        if let Err(e) = check_url(&webhook.url, &self.security) {
            return Attempt {
                error: Some(format!("blocked: the URL {e}")),
                outcome: "blocked",
                blocked: true,
                ..Attempt::default()
            };
        }
        let body = match serde_json::to_vec(&Envelope {
            id: &m.event_id,
            event_type: &m.event_type,
            timestamp: m.occurred_at,
            tenant_id: m.tenant_id,
            webhook_id: m.webhook_id,
            severity: m.severity,
            source: m.source.as_deref(),
            data: &m.data,
        }) {
            Ok(b) => b,
            Err(e) => {
                return Attempt {
                    error: Some(format!("cannot render the body: {e}")),
                    outcome: "blocked",
                    blocked: true,
                    ..Attempt::default()
                };
            }
        };
        let timestamp = attempted_at.timestamp();
        // A rotated-out secret signs beside the new one until it expires.
        let older: Vec<&WebhookSecret> = webhook
            .previous_secret
            .iter()
            .filter(|(_, until)| *until > attempted_at)
            .map(|(secret, _)| secret)
            .collect();
        let mut headers = webhook.headers.clone();
        let fixed: [(HeaderName, String); 7] = [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (HeaderName::from_static("webhook-id"), m.event_id.clone()),
            (
                HeaderName::from_static("webhook-timestamp"),
                timestamp.to_string(),
            ),
            (
                HeaderName::from_static("webhook-signature"),
                webhook
                    .secret
                    .sign_v1_all(&older, &m.event_id, timestamp, &body),
            ),
            (
                self.signature_header.clone(),
                webhook.secret.sign_sha256_hex(&body),
            ),
            (
                HeaderName::from_static("x-herald-event"),
                m.event_type.clone(),
            ),
            (
                HeaderName::from_static("x-herald-delivery"),
                m.delivery_id.to_string(),
            ),
        ];
        for (name, value) in fixed {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        headers.insert(
            HeaderName::from_static("x-herald-attempt"),
            HeaderValue::from(attempt_number),
        );

        let client = if webhook.verify_ssl {
            &self.client
        } else {
            &self.insecure_client
        };
        let started = Instant::now();
        let sent = client
            .post(&webhook.url)
            .headers(headers)
            .timeout(webhook.timeout)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    error: Some(describe(&e, webhook.timeout)),
                    outcome: if e.is_timeout() {
                        "timeout"
                    } else {
                        "network_error"
                    },
                    duration: started.elapsed(),
                    ..Attempt::default()
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, Utc::now()));
        let mut bytes = Vec::new();
        let mut error = None;
        while bytes.len() < RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e, webhook.timeout));
                    break;
                }
            }
        }
        let duration = started.elapsed();
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .take(RESPONSE_CHARS)
            .collect();
        let success = (200..300).contains(&status);
        Attempt {
            status_code: Some(status),
            body: Some(text),
            error: error.or_else(|| (!success).then(|| format!("the endpoint answered {status}"))),
            duration,
            outcome: if success { "success" } else { "http_error" },
            retry_after,
            blocked: false,
        }
    }
}

/// A transport error with its causes, e.g. "connection error: tcp connect
/// error: Connection refused (os error 111)".
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs());
    }
    let mut text = if e.is_connect() {
        "connection error".to_owned()
    } else {
        "request error".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
