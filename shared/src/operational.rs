//! Herald's own operational events, published into the tenant's event
//! stream like any other: `webhook.disabled` when a webhook is switched off
//! (410 Gone, or failing for too long) and `delivery.exhausted` when a
//! delivery runs out of retries. They reach only webhooks that name them
//! (`*` does not match them), never the webhook they are about.

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
pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";

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
