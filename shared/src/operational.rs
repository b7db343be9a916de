//! Herald's own operational events, published into the tenant's event
//! stream like any other:
//!
//! * `webhook.created`, `webhook.updated`, `webhook.deleted` when the API
//!   changes a webhook, `webhook.enabled` when it is switched back on,
//!   `webhook.secret_rotated` when its secret is replaced;
//! * `webhook.disabled` when a webhook is switched off (by its tenant, a
//!   410 Gone, or failing for too long);
//! * `delivery.exhausted` when a delivery runs out of retries, and
//!   `delivery.recovered` when a failed delivery, sent again, succeeds.
//!
//! They reach only webhooks that name them (`*` does not match them), never
//! the webhook they are about.

use chrono::{DateTime, Utc};
use lapin::Channel;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use uuid::Uuid;

use crate::amqp::{AmqpError, Topology, VIA_HEADER, json_properties, publish_confirmed};
use crate::models::{DeliveryMessage, EventMessage, Severity};

/// The `x-herald-via` value that marks Herald's own events; operational
/// event types from anywhere else are refused.
pub const VIA_HERALD: &str = "herald";

pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
pub const WEBHOOK_ENABLED: &str = "webhook.enabled";
pub const WEBHOOK_CREATED: &str = "webhook.created";
pub const WEBHOOK_UPDATED: &str = "webhook.updated";
pub const WEBHOOK_DELETED: &str = "webhook.deleted";
pub const WEBHOOK_SECRET_ROTATED: &str = "webhook.secret_rotated";
pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";
pub const DELIVERY_RECOVERED: &str = "delivery.recovered";

/// What the webhook events say about the webhook (never a secret).
#[derive(Debug, Clone, Copy)]
pub struct WebhookFacts<'a> {
    pub tenant_id: Uuid,
    pub webhook_id: Uuid,
    pub name: &'a str,
    pub url: &'a str,
    pub event_types: &'a [String],
    pub is_active: bool,
}

/// `webhook.created`, `webhook.updated`, `webhook.deleted` or
/// `webhook.enabled` (`event_type`): the webhook as it now stands.
#[must_use]
pub fn webhook_changed(event_type: &str, w: &WebhookFacts<'_>, at: DateTime<Utc>) -> EventMessage {
    message(
        w.tenant_id,
        event_type,
        format!("{event_type}.{}.{}", w.webhook_id, Uuid::new_v4().simple()),
        Severity::Info,
        &json!({
            "webhook_id": w.webhook_id,
            "name": w.name,
            "url": w.url,
            "event_types": w.event_types,
            "is_active": w.is_active,
            "at": at,
        }),
    )
}

/// `webhook.secret_rotated`: when, and until when the previous secret
/// still signs.
#[must_use]
pub fn secret_rotated(
    tenant_id: Uuid,
    webhook_id: Uuid,
    previous_expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> EventMessage {
    message(
        tenant_id,
        WEBHOOK_SECRET_ROTATED,
        format!(
            "{WEBHOOK_SECRET_ROTATED}.{webhook_id}.{}",
            Uuid::new_v4().simple()
        ),
        Severity::Info,
        &json!({
            "webhook_id": webhook_id,
            "rotated_at": at,
            "previous_secret_expires_at": previous_expires_at,
        }),
    )
}

/// `delivery.recovered`: a delivery that had failed succeeded when sent
/// again.
#[must_use]
pub fn delivery_recovered(
    m: &DeliveryMessage,
    attempts: i32,
    status_code: Option<u16>,
) -> EventMessage {
    message(
        m.tenant_id.get(),
        DELIVERY_RECOVERED,
        format!("{DELIVERY_RECOVERED}.{}.{attempts}", m.delivery_id),
        Severity::Info,
        &json!({
            "delivery_id": m.delivery_id,
            "webhook_id": m.webhook_id,
            "event_id": m.event_id,
            "event_type": m.event_type,
            "attempts": attempts,
            "status_code": status_code,
        }),
    )
}

fn message(
    tenant_id: Uuid,
    event_type: &str,
    id: String,
    severity: Severity,
    data: &serde_json::Value,
) -> EventMessage {
    EventMessage {
        tenant_id,
        event_type: event_type.to_owned(),
        // A `Value` always serializes; `null` stands in only if it did not.
        data: serde_json::value::to_raw_value(data)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        id: Some(id),
        occurred_at: Some(Utc::now()),
        severity: Some(severity),
        source: Some("herald".to_owned()),
    }
}

/// `webhook.disabled`: the webhook, why, and since when.
#[must_use]
pub fn webhook_disabled(
    tenant_id: Uuid,
    webhook_id: Uuid,
    url: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> EventMessage {
    message(
        tenant_id,
        WEBHOOK_DISABLED,
        format!("{WEBHOOK_DISABLED}.{webhook_id}.{}", at.timestamp_millis()),
        Severity::Error,
        &json!({ "webhook_id": webhook_id, "url": url, "reason": reason, "disabled_at": at }),
    )
}

/// `delivery.exhausted`: which delivery of which event gave up, and how the
/// last attempt ended.
#[must_use]
pub fn delivery_exhausted(
    m: &DeliveryMessage,
    attempts: i32,
    status_code: Option<u16>,
    error: Option<&str>,
) -> EventMessage {
    message(
        m.tenant_id.get(),
        DELIVERY_EXHAUSTED,
        format!("{DELIVERY_EXHAUSTED}.{}.{attempts}", m.delivery_id),
        Severity::Warning,
        &json!({
            "delivery_id": m.delivery_id,
            "webhook_id": m.webhook_id,
            "event_id": m.event_id,
            "event_type": m.event_type,
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error,
        }),
    )
}

/// Publishes an operational event to the events exchange, confirmed.
///
/// # Errors
/// A broker error.
pub async fn publish(
    ch: &Channel,
    topology: &Topology,
    event: &EventMessage,
) -> Result<(), AmqpError> {
    let body = serde_json::to_vec(event).map_err(|e| AmqpError::Encode(e.to_string()))?;
    let mut headers = FieldTable::default();
    headers.insert(VIA_HEADER.into(), AMQPValue::LongString(VIA_HERALD.into()));
    publish_confirmed(
        ch,
        &topology.events_exchange(),
        &event.event_type,
        &body,
        json_properties()
            // Herald's own events are few and someone waits for them.
            .with_priority(crate::amqp::fairness::INTERACTIVE)
            .with_message_id(event.id.clone().unwrap_or_default().into())
            .with_headers(headers),
    )
    .await
}
