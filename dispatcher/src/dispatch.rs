//! One event message, start to finish: parse and check it, match the
//! tenant's subscriptions, hand it to the [store](crate::store) (which
//! writes the event and its deliveries and publishes one delivery message
//! per webhook with confirms, in batches), and only then ack. A crash anywhere leads to a redelivery; the unique keys
//! `(tenant, event id)` and `(event, webhook)` keep that from making rows
//! twice, and a redelivered event republishes the deliveries that were
//! never attempted.

use chrono::{Datelike, Utc};
use deadpool_postgres::Pool;
use herald_shared::amqp::Topology;
use herald_shared::amqp::VIA_HEADER;
use herald_shared::amqp::consumer::{Handler, HandlerError, header_str, seen_before};
use herald_shared::amqp::fairness::{BULK, Shaper};
use herald_shared::catalog::{CatalogCache, CatalogMode};
use herald_shared::models::{EventId, EventMessage, EventType};
use herald_shared::operational;
use herald_shared::payload::{self, Limits};
use herald_shared::runtime::metrics::Metrics;
use lapin::Channel;
use lapin::message::Delivery;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::store::{Job, Store};
use crate::subscription_cache::SubscriptionCache;

#[derive(Debug)]
pub struct Dispatcher {
    pub pool: Pool,
    pub topology: Topology,
    pub cache: SubscriptionCache,
    /// Each tenant's event-type catalog, for events from producers over
    /// AMQP (the api checks its own).
    pub catalogs: CatalogCache,
    pub metrics: Metrics,
    pub max_event_bytes: usize,
    /// Stores and publishes checked events in batches.
    pub store: Store,
    /// Each tenant's deliveries' priority by its share.
    pub shaper: Shaper,
}

impl Handler for Dispatcher {
    async fn handle(&self, publisher: &Channel, delivery: &Delivery) -> Result<(), HandlerError> {
        self.dispatch(publisher, delivery).await
    }
}

/// What an event message may hold beside its `data`.
const ENVELOPE_BYTES: usize = 64 * 1024;

/// The message itself is wrong: it is parked with the reason, never retried.
fn invalid(reason: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(reason.into())
}

impl Dispatcher {
    async fn dispatch(&self, publisher: &Channel, delivery: &Delivery) -> Result<(), HandlerError> {
        // Refused before it is parsed: the envelope adds little to `data`.
        if delivery.data.len() > self.max_event_bytes + ENVELOPE_BYTES {
            return Err(invalid(format!(
                "the message is larger than {} bytes",
                self.max_event_bytes + ENVELOPE_BYTES
            )));
        }
        let message: EventMessage = serde_json::from_slice(&delivery.data)
            .map_err(|e| invalid(format!("not a valid event message: {e}")))?;
        let event_type = EventType::parse(&message.event_type)
            .map_err(|e| invalid(format!("event_type {e}")))?;
        if message.data.get().len() > self.max_event_bytes {
            return Err(invalid(format!(
                "data is larger than {} bytes",
                self.max_event_bytes
            )));
        }
        check_storable(&message)?;
        let id = match message.id.as_deref().or_else(|| {
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(lapin::types::ShortString::as_str)
        }) {
            Some(id) => EventId::parse(id).map_err(|e| invalid(format!("id {e}")))?,
            None => EventId::generate(),
        };
        let tenant_id = message.tenant_id;
        let subscriptions = if event_type.is_operational() {
            self.cache.uncached(tenant_id).await?
        } else {
            self.cache.get(tenant_id).await?
        };
        if !subscriptions.exists {
            return Err(invalid(format!("unknown tenant {tenant_id}")));
        }
        if !event_type.is_operational() && !from_api(delivery) {
            self.check_catalog(tenant_id, &message).await?;
        }
        let mut matching = subscriptions.matching(&event_type);
        subscriptions.filter(&mut matching, &message.data);
        if event_type.is_operational() {
            if !from_herald(delivery) {
                return Err(invalid(
                    "event types under webhook. and delivery. are reserved for Herald's own events",
                ));
            }
            // Never tell a webhook about itself: it is the one failing.
            if let Some(about) = about_webhook(&message.data) {
                matching.retain(|w| *w != about);
            }
            // Herald's own events are kept only for someone listening: a
            // tenant's history is its own events, not every edit it made.
            if matching.is_empty() {
                return Ok(());
            }
        }
        // An event the api already found beyond its tenant's share stays
        // bulk; otherwise the deliveries it makes are counted against the
        // tenant's share here (for producers over AMQP, the only place).
        let priority = if from_api(delivery) && delivery.properties.priority() == &Some(BULK) {
            BULK
        } else {
            self.shaper
                .priority(tenant_id, matching.len(), std::time::Instant::now())
        };
        let received_at = Utc::now();
        let job = Job {
            priority,
            tenant_id,
            id: id.as_str().to_owned(),
            event_type: event_type.as_str().to_owned(),
            occurred_at: message.occurred_at.unwrap_or(received_at),
            received_at,
            data: message.data,
            severity: message.severity,
            source: message.source,
            webhooks: matching,
            redelivered: seen_before(delivery),
            publisher: publisher.clone(),
        };
        let created = self.store.submit(job).await?;
        if from_producer_over_amqp(delivery) && created > 0 {
            self.metrics
                .events_received
                .with_label_values(&["amqp"])
                .inc();
        }
        Ok(())
    }
}

impl Dispatcher {
    /// A producer's event over AMQP, against its tenant's catalog: in
    /// `strict` mode what does not fit is parked with the reasons (the api
    /// would have answered 422); in `warn` mode it is counted and goes on.
    async fn check_catalog(
        &self,
        tenant_id: Uuid,
        message: &EventMessage,
    ) -> Result<(), HandlerError> {
        let catalog = self.catalogs.get(tenant_id).await?;
        if catalog.mode == CatalogMode::Open {
            return Ok(());
        }
        let findings = catalog.check(&message.event_type, &message.data);
        herald_shared::catalog::count(&self.metrics, catalog.mode, &findings);
        if catalog.mode == CatalogMode::Strict && !findings.is_empty() {
            let reasons: Vec<String> = findings
                .iter()
                .map(|f| format!("{}: {}", f.field, f.detail))
                .collect();
            return Err(invalid(format!(
                "the tenant's event-type catalog refuses it: {}",
                reasons.join("; ")
            )));
        }
        Ok(())
    }
}

/// What the api refuses with a 422 is refused here too, for producers that
/// publish straight to the exchange: anything Postgres could not store.
fn check_storable(message: &EventMessage) -> Result<(), HandlerError> {
    payload::check(message.data.get(), Limits::DATA)
        .map_err(|p| invalid(format!("{} {}", p.under("data"), p.detail)))?;
    if let Some(source) = &message.source
        && let Err(e) = herald_shared::models::check_source(source)
    {
        return Err(invalid(format!("source {e}")));
    }
    if let Some(at) = message.occurred_at
        && !herald_shared::models::OCCURRED_YEARS.contains(&at.year())
    {
        return Err(invalid("occurred_at must be between the years 1 and 9999"));
    }
    Ok(())
}

/// The api marks the events it publishes (and counts them itself), and
/// Herald marks its operational events; any other event came straight from
/// a producer over AMQP and is counted here.
fn from_producer_over_amqp(delivery: &Delivery) -> bool {
    header_str(delivery, VIA_HEADER).is_none()
}

fn from_api(delivery: &Delivery) -> bool {
    header_str(delivery, VIA_HEADER).as_deref() == Some("http")
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
