//! What a webhook's delivery options are, as stored with the webhook and
//! shown by the api: the body format, the signature schemes, the kind of
//! outbound authentication. Plain values; sending them is the
//! `herald-delivery` crate's work.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a webhook's request body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    SplunkHec,
    Datadog,
    Elastic,
    Custom,
}

/// The content type of every format but `custom`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Template source and content type of a `custom` webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomBody {
    pub template: String,
    pub content_type: String,
}

/// `application/json` and the `+json` types (`application/cloudevents+json`).
#[must_use]
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Which kind of authentication a webhook sends (all the api shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    ApiKey,
    Bearer,
    Basic,
    Oauth2,
}

/// Which schemes sign a webhook's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SigningOptions {
    /// Standard Webhooks `v1` (HMAC) in `webhook-signature`.
    pub standard: bool,
    /// `sha256=<hex>` in the simple scheme's header.
    pub simple: bool,
    /// The simple scheme's header; the worker's `signature_header` when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple_header: Option<String>,
    /// Standard Webhooks `v1a` (ed25519) in `webhook-signature`, checked
    /// with the webhook's public key.
    pub ed25519: bool,
}

impl Default for SigningOptions {
    fn default() -> Self {
        Self {
            standard: true,
            simple: true,
            simple_header: None,
            ed25519: false,
        }
    }
}
