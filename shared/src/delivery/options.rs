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
    /// VaulTLS's envelope: `event`, Unix `timestamp`, `tenant_id`,
    /// `webhook_id`, `data`.
    #[serde(rename = "vaultls")]
    VaulTls,
    /// SecureBase's envelope: `event`, `timestamp`, `data`.
    #[serde(rename = "securebase")]
    SecureBase,
    /// Vaulytica's envelope (`timestamp`, `source`, `event_type`,
    /// `severity`, `data`) as Python's `json.dumps(sort_keys=True)`.
    Vaulytica,
    /// webnet's envelope: `event_timestamp`, `event_type` and the data's
    /// fields beside them.
    Webnet,
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
    /// A bare lowercase hex HMAC-SHA256 of the body (no `sha256=`) in
    /// `hex_header`.
    pub hex: bool,
    /// The hex scheme's header; [`DEFAULT_HEX_HEADER`] when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hex_header: Option<String>,
}

/// The hex scheme's header when the webhook names none.
pub const DEFAULT_HEX_HEADER: &str = "x-signature";

impl SigningOptions {
    /// The hex scheme's header, lowercase.
    #[must_use]
    pub fn hex_header_name(&self) -> String {
        self.hex_header
            .as_deref()
            .unwrap_or(DEFAULT_HEX_HEADER)
            .to_ascii_lowercase()
    }
}

impl Default for SigningOptions {
    fn default() -> Self {
        Self {
            standard: true,
            simple: true,
            simple_header: None,
            ed25519: false,
            hex: false,
            hex_header: None,
        }
    }
}

/// How a webhook's retries are spaced (the `retry` of its options). A
/// webhook stored before spacing was chosen has none: its retries double
/// from `retry_backoff_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RetrySpacing {
    /// Retry `n` waits the `n`-th delay; past the end, the last repeats.
    Schedule { delays_ms: Vec<u64> },
    /// Retry `n` waits `first × base^(n-1)`, at most `max` when set; with
    /// `jitter`, each delay is drawn from its upper half.
    Exponential {
        first_ms: u64,
        base: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_ms: Option<u64>,
        #[serde(default)]
        jitter: bool,
    },
}

/// The schedule users of Standard Webhooks expect (Svix's): after the
/// first attempt, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h — about 28
/// hours in all.
pub const STANDARD_SCHEDULE_SECONDS: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

impl RetrySpacing {
    /// The default for a new webhook: [`STANDARD_SCHEDULE_SECONDS`].
    #[must_use]
    pub fn standard() -> Self {
        Self::Schedule {
            delays_ms: STANDARD_SCHEDULE_SECONDS.iter().map(|s| s * 1000).collect(),
        }
    }

    /// What a webhook stored before spacing was chosen does: doubling from
    /// its `retry_backoff_seconds`.
    #[must_use]
    pub fn doubling(first_seconds: u64) -> Self {
        Self::Exponential {
            first_ms: first_seconds.saturating_mul(1000),
            base: 2.0,
            max_ms: None,
            jitter: false,
        }
    }

    /// The delay before the first retry.
    #[must_use]
    pub fn first_ms(&self) -> u64 {
        match self {
            Self::Schedule { delays_ms } => delays_ms.first().copied().unwrap_or_default(),
            Self::Exponential { first_ms, .. } => *first_ms,
        }
    }
}

/// A webhook's TLS client certificate as the API shows it (the certificate
/// and key themselves are sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientCertificate {
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    pub fingerprint_sha256: String,
}
