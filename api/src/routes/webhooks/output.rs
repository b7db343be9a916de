//! What the webhook routes answer: a webhook as the API shows it (never a
//! credential; the secret only in the answer to create), and the answers
//! of the secret and key rotations and the test call.

use chrono::{DateTime, Utc};
use herald_delivery::formats::{Format, JSON_CONTENT_TYPE};
use herald_delivery::outbound_auth::AuthKind;
use herald_shared::db::webhooks::{Headers, Webhook, mask_headers};
use herald_shared::delivery::options::{ClientCertificate, RetrySpacing};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// A rotated secret, shown only here.
#[derive(Serialize, ToSchema)]
pub(super) struct RotatedSecret {
    pub(super) secret: String,
    /// Until then the previous secret signs beside this one.
    pub(super) previous_secret_expires_at: DateTime<Utc>,
}

/// How a test delivery went.
#[derive(Serialize, ToSchema)]
pub(super) struct TestResult {
    pub(super) success: bool,
    pub(super) status_code: Option<u16>,
    /// The first 1,000 characters of the answer.
    pub(super) response: Option<String>,
    pub(super) error: Option<String>,
    pub(super) duration_ms: u64,
    pub(super) event_id: String,
    pub(super) delivery_id: Uuid,
}

/// The signature schemes as a webhook shows them.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SigningOut {
    pub(super) standard: bool,
    pub(super) simple: bool,
    /// `null`: the server's `worker.signature_header`.
    pub(super) simple_header: Option<String>,
    ed25519: bool,
    /// A bare hex HMAC-SHA256 of the body in `hex_header`.
    hex: bool,
    hex_header: String,
    /// `whpk_…`: what receivers verify `v1a` signatures with.
    pub(super) public_key: Option<String>,
    /// After `rotate-signing-key`: the previous public key, whose `v1a`
    /// signature is still sent beside the new one until
    /// `previous_public_key_expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) previous_public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) previous_public_key_expires_at: Option<DateTime<Utc>>,
}

/// Which outbound authentication is set (never the credentials).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuthOut {
    #[serde(rename = "type")]
    pub(super) kind: AuthKind,
}

/// A webhook as the API shows it; `secret` only in the answer to create.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookOut {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) url: String,
    pub(super) event_types: Vec<String>,
    pub(super) headers: Headers,
    pub(super) timeout_seconds: i32,
    pub(super) retry_attempts: i32,
    /// The delay before the first retry, in seconds.
    #[schema(value_type = f64)]
    pub(super) retry_backoff_seconds: serde_json::Number,
    /// The delay before each retry (the last repeating), as `"5s"`,
    /// `"30m"`…; `null` for an exponential backoff.
    pub(super) retry_schedule: Option<Vec<String>>,
    /// Exponential backoff: the factor between delays; `null` for a
    /// schedule.
    pub(super) exponential_base: Option<f64>,
    /// Exponential backoff: the longest delay, in seconds.
    #[schema(value_type = Option<f64>)]
    pub(super) max_delay_seconds: Option<serde_json::Number>,
    /// Exponential backoff: whether delays are drawn from their upper half.
    pub(super) jitter: Option<bool>,
    pub(super) verify_ssl: bool,
    pub(super) is_active: bool,
    pub(super) disabled_reason: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) last_triggered_at: Option<DateTime<Utc>>,
    pub(super) delivery_success_count: i64,
    pub(super) delivery_failure_count: i64,
    pub(super) rate_limit: Option<i32>,
    /// The payload filter; `null` for none.
    pub(super) filter: Option<String>,
    pub(super) format: Format,
    pub(super) template: Option<String>,
    pub(super) content_type: String,
    pub(super) signing: SigningOut,
    pub(super) auth: Option<AuthOut>,
    /// The TLS client certificate presented (never the key).
    pub(super) client_certificate: Option<ClientCertificate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) secret: Option<String>,
    /// In answers to create and update: `event_types` entries that match
    /// no type of the tenant's event-type catalog (when it has any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) warnings: Vec<crate::error::FieldError>,
}

impl From<Webhook> for WebhookOut {
    fn from(w: Webhook) -> Self {
        let spacing = w.retry_spacing();
        let (retry_schedule, exponential_base, max_delay_seconds, jitter) = match &spacing {
            RetrySpacing::Schedule { delays_ms } => (
                Some(
                    delays_ms
                        .iter()
                        .map(|ms| {
                            humantime::format_duration(Duration::from_millis(*ms)).to_string()
                        })
                        .collect(),
                ),
                None,
                None,
                None,
            ),
            RetrySpacing::Exponential {
                base,
                max_ms,
                jitter,
                ..
            } => (None, Some(*base), max_ms.map(seconds), Some(*jitter)),
        };
        let previous_key = match (w.previous_public_key, w.previous_signing_key_expires_at) {
            (Some(key), Some(until)) if w.options.signing.ed25519 && until > Utc::now() => {
                Some((key, until))
            }
            _ => None,
        };
        Self {
            id: w.id,
            tenant_id: w.tenant_id,
            name: w.name,
            description: w.description,
            url: w.url,
            event_types: w.event_types,
            // Masked as stored; a row from before sealing is masked here.
            headers: if w.headers_sealed.is_some() {
                w.headers
            } else {
                mask_headers(&w.headers)
            },
            timeout_seconds: w.timeout_seconds,
            retry_attempts: w.retry_attempts,
            retry_backoff_seconds: seconds(spacing.first_ms()),
            retry_schedule,
            exponential_base,
            max_delay_seconds,
            jitter,
            verify_ssl: w.verify_ssl,
            is_active: w.is_active,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
            last_triggered_at: w.last_triggered_at,
            delivery_success_count: w.delivery_success_count,
            delivery_failure_count: w.delivery_failure_count,
            rate_limit: w.rate_limit,
            filter: w.filter,
            format: w.options.format,
            content_type: w
                .options
                .custom
                .as_ref()
                .map_or_else(|| JSON_CONTENT_TYPE.to_owned(), |c| c.content_type.clone()),
            template: w.options.custom.map(|c| c.template),
            signing: SigningOut {
                standard: w.options.signing.standard,
                simple: w.options.signing.simple,
                simple_header: w.options.signing.simple_header,
                ed25519: w.options.signing.ed25519,
                hex: w.options.signing.hex,
                hex_header: w.options.signing.hex_header.clone().unwrap_or_else(|| {
                    herald_shared::delivery::options::DEFAULT_HEX_HEADER.to_owned()
                }),
                public_key: w.public_key.filter(|_| w.options.signing.ed25519),
                previous_public_key: previous_key.as_ref().map(|(k, _)| k.clone()),
                previous_public_key_expires_at: previous_key.map(|(_, until)| until),
            },
            auth: w.options.auth.map(|kind| AuthOut { kind }),
            client_certificate: w.options.client_certificate,
            secret: None,
            warnings: Vec::new(),
        }
    }
}

/// A rotated ed25519 key pair.
#[derive(Serialize, ToSchema)]
pub(super) struct RotatedSigningKey {
    /// The new `whpk_…` public key.
    pub(super) public_key: Option<String>,
    /// The previous one, whose `v1a` signature is sent beside the new one
    /// until `previous_public_key_expires_at`.
    pub(super) previous_public_key: Option<String>,
    pub(super) previous_public_key_expires_at: Option<DateTime<Utc>>,
}

/// Milliseconds as seconds: a whole number when whole.
fn seconds(ms: u64) -> serde_json::Number {
    if ms.is_multiple_of(1000) {
        serde_json::Number::from(ms / 1000)
    } else {
        #[allow(clippy::cast_precision_loss)]
        let s = ms as f64 / 1000.0;
        serde_json::Number::from_f64(s).unwrap_or_else(|| serde_json::Number::from(ms / 1000))
    }
}
