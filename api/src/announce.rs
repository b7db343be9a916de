//! Announcing what the API changed as Herald's own operational events
//! (`webhook.created`, `webhook.updated`, `webhook.deleted`,
//! `webhook.enabled`, `webhook.disabled`, `webhook.secret_rotated`), on the
//! same path as the worker's. The change is made either way: an
//! announcement the broker does not take is logged, not retried.

use chrono::Utc;
use herald_shared::db::webhooks::Webhook;
use herald_shared::models::EventMessage;
use herald_shared::operational::{self, WebhookFacts};

use crate::state::AppState;

/// Publishes one operational event, confirmed; a failure is logged.
pub async fn announce(state: &AppState, event: &EventMessage) {
    let published = async {
        let ch = state.publisher.channel().await?;
        operational::publish(&ch, &state.topology, event).await
    }
    .await;
    if let Err(e) = published {
        tracing::warn!(event_type = %event.event_type, error.message = %e, "could not announce");
    }
}

/// The webhook event `event_type` about `w` as it now stands.
pub async fn webhook(state: &AppState, event_type: &str, w: &Webhook) {
    let facts = WebhookFacts {
        tenant_id: w.tenant_id,
        webhook_id: w.id,
        name: &w.name,
        url: &w.url,
        event_types: &w.event_types,
        is_active: w.is_active,
    };
    announce(
        state,
        &operational::webhook_changed(event_type, &facts, Utc::now()),
    )
    .await;
}

/// After an update from `before` to `after`: `webhook.updated`, and
/// `webhook.enabled` or `webhook.disabled` when it was switched.
pub async fn webhook_updated(state: &AppState, before: &Webhook, after: &Webhook) {
    webhook(state, operational::WEBHOOK_UPDATED, after).await;
    match (before.is_active, after.is_active) {
        (false, true) => webhook(state, operational::WEBHOOK_ENABLED, after).await,
        (true, false) => {
            let event = operational::webhook_disabled(
                after.tenant_id,
                after.id,
                &after.url,
                "switched off through the API",
                Utc::now(),
            );
            announce(state, &event).await;
        }
        _ => {}
    }
}
