//! One event message, start to finish: parse and check it, match the
//! tenant's subscriptions, hand it to the [store](crate::store) (which
//! writes the event and its deliveries and publishes one delivery message
//! per webhook with confirms, in batches), and only then ack. A crash anywhere leads to a redelivery; the unique keys
//! `(tenant, event id)` and `(event, webhook)` keep that from making rows
//! twice, and a redelivered event republishes the deliveries that were
//! never attempted.

use chrono::Utc;
use deadpool_postgres::Pool;
use herald_shared::amqp::VIA_HEADER;
use herald_shared::amqp::{REASON_HEADER, Topology, json_properties, publish_confirmed};
use herald_shared::consumer::{Disposition, Handler, header_str};
use herald_shared::metrics::Metrics;
use herald_shared::models::{EventId, EventMessage, EventType};
use herald_shared::operational;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, LongString};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::store::{Job, Store, StoreError};
use crate::subscription_cache::SubscriptionCache;

#[derive(Debug)]
pub struct Dispatcher {
    pub pool: Pool,
    pub topology: Topology,
    pub cache: SubscriptionCache,
    pub metrics: Metrics,
    pub max_event_bytes: usize,
    /// Stores and publishes checked events in batches.
    pub store: Store,
}

/// Why processing stopped short.
#[derive(Debug)]
enum Failure {
    /// The message itself is wrong: park it with the reason, never retry.
    Invalid(String),
    /// Something outside the message failed: retry later.
    Transient(String),
}

impl From<herald_shared::db::DbError> for Failure {
    fn from(e: herald_shared::db::DbError) -> Self {
        Self::Transient(e.to_string())
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, publisher: &Channel, delivery: &Delivery) -> Disposition {
        match self.dispatch(publisher, delivery).await {
            Ok(()) => Disposition::Ack,
            Err(Failure::Invalid(reason)) => self.park(publisher, delivery, &reason).await,
            Err(Failure::Transient(reason)) => {
                tracing::warn!(%reason, "event not dispatched; it will be redelivered");
                // A short pause so a database outage does not become a busy
                // redelivery loop.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Disposition::Requeue
            }
        }
    }
}

impl Dispatcher {
    async fn dispatch(&self, publisher: &Channel, delivery: &Delivery) -> Result<(), Failure> {
        let message: EventMessage = serde_json::from_slice(&delivery.data)
            .map_err(|e| Failure::Invalid(format!("not a valid event message: {e}")))?;
        let event_type = EventType::parse(&message.event_type)
            .map_err(|e| Failure::Invalid(format!("event_type {e}")))?;
        if message.data.get().len() > self.max_event_bytes {
            return Err(Failure::Invalid(format!(
                "data is larger than {} bytes",
                self.max_event_bytes
            )));
        }
        let id = match message.id.as_deref().or_else(|| {
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(lapin::types::ShortString::as_str)
        }) {
            Some(id) => EventId::parse(id).map_err(|e| Failure::Invalid(format!("id {e}")))?,
            None => EventId::generate(),
        };
        let tenant_id = message.tenant_id;
        let subscriptions = self.cache.get(tenant_id).await?;
        if !subscriptions.exists {
            return Err(Failure::Invalid(format!("unknown tenant {tenant_id}")));
        }
        let mut matching = subscriptions.matching(&event_type);
        if event_type.is_operational() {
            if !from_herald(delivery) {
                return Err(Failure::Invalid(
                    "event types under webhook. and delivery. are reserved for Herald's own events"
                        .to_owned(),
                ));
            }
            // Never tell a webhook about itself: it is the one failing.
            if let Some(about) = about_webhook(&message.data) {
                matching.retain(|w| *w != about);
            }
        }
        let received_at = Utc::now();
        let job = Job {
            tenant_id,
            id: id.as_str().to_owned(),
            event_type: event_type.as_str().to_owned(),
            occurred_at: message.occurred_at.unwrap_or(received_at),
            received_at,
            data: message.data,
            severity: message.severity,
            source: message.source,
            webhooks: matching,
            redelivered: delivery.redelivered,
            publisher: publisher.clone(),
        };
        let created = self.store.submit(job).await.map_err(|e| match e {
            StoreError::Invalid(reason) => Failure::Invalid(reason),
            StoreError::Transient(reason) => Failure::Transient(reason),
        })?;
        if from_producer_over_amqp(delivery) && created > 0 {
            self.metrics
                .events_received
                .with_label_values(&["amqp"])
                .inc();
        }
        Ok(())
    }

    /// Moves a bad message to the invalid-events queue with its reason.
    async fn park(&self, publisher: &Channel, delivery: &Delivery, reason: &str) -> Disposition {
        tracing::warn!(%reason, "parking invalid event");
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.as_bytes().to_vec())),
        );
        let props = json_properties().with_headers(headers);
        let queue = self.topology.invalid_queue();
        // The default exchange routes by queue name.
        match publish_confirmed(publisher, "", &queue, &delivery.data, props).await {
            Ok(()) => {
                self.metrics.events_invalid.inc();
                Disposition::Ack
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "could not park invalid event; requeueing");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Disposition::Requeue
            }
        }
    }
}

/// The api marks the events it publishes (and counts them itself), and
/// Herald marks its operational events; any other event came straight from
/// a producer over AMQP and is counted here.
fn from_producer_over_amqp(delivery: &Delivery) -> bool {
    header_str(delivery, VIA_HEADER).is_none()
}

fn from_herald(delivery: &Delivery) -> bool {
    header_str(delivery, VIA_HEADER).as_deref() == Some(operational::VIA_HERALD)
}

/// The webhook an operational event is about (`data.webhook_id`).
fn about_webhook(data: &RawValue) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct About {
        webhook_id: Uuid,
    }
    serde_json::from_str::<About>(data.get())
        .ok()
        .map(|a| a.webhook_id)
}
