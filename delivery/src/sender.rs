//! Sending one delivery: the body rendered in the webhook's format, signed
//! with its schemes, authenticated, POSTed with the webhook's headers and
//! timeout through the guarded client, and the answer read (at most the
//! first 1,000 characters). The
//! worker sends every delivery through it, and the api's test call too, so
//! a test request is exactly what a receiver will get.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use url::Host;
use uuid::Uuid;

use crate::egress::{Egress, ResolveError, resolve_checked};
use crate::formats::{EventView, Renderer};
use crate::net_guard::{BlockedTarget, check_url, delivery_client, describe};
use crate::outbound_auth::{AuthError, OutboundAuth, TokenCache};
use crate::signing::{SigningKey, SigningOptions, WebhookSecret};
use herald_shared::crypto::Sealer;
use herald_shared::db::webhooks::Webhook;
use herald_shared::delivery::options::RetrySpacing;
pub use herald_shared::delivery::retry::Attempt;
use herald_shared::delivery::retry::{self, Outcome};
use herald_shared::models::DeliveryMessage;
use herald_shared::runtime::config::{DeliverySettings, SecuritySettings, WorkerSettings};

/// Characters of a response body kept with an attempt.
const RESPONSE_CHARS: usize = 1000;
/// Bytes read from a response body at most (enough for 1,000 characters of
/// UTF-8); the rest is not read.
const RESPONSE_BYTES: usize = 4 * RESPONSE_CHARS;

/// What one delivery attempt needs to know about its webhook.
#[derive(Debug)]
pub struct WebhookConfig {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub secret: WebhookSecret,
    /// The secret before the last rotation and when it stops signing.
    pub previous_secret: Option<(WebhookSecret, chrono::DateTime<chrono::Utc>)>,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub verify_ssl: bool,
    pub is_active: bool,
    pub retry_attempts: u32,
    pub retry_spacing: RetrySpacing,
    /// Deliveries per second across all workers.
    pub rate_limit: Option<u32>,
    pub renderer: Renderer,
    pub signing: SigningOptions,
    /// The simple scheme's header, when the webhook names its own.
    pub signature_header: Option<HeaderName>,
    /// The hex scheme's header, when `signing.hex` is on.
    pub hex_header: Option<HeaderName>,
    /// Present when `signing.ed25519` is on.
    pub signing_key: Option<SigningKey>,
    /// The key before the last rotation and when it stops signing.
    pub previous_signing_key: Option<(SigningKey, DateTime<Utc>)>,
    pub auth: Option<OutboundAuth>,
    /// The TLS client certificate it presents, if any, and the client
    /// built with it on first use (a new configuration builds a new one).
    pub identity: Option<reqwest::Identity>,
    pub identity_client: std::sync::OnceLock<reqwest::Client>,
}

impl WebhookConfig {
    #[must_use]
    pub fn retry_policy(&self, max_delay: Duration) -> herald_shared::delivery::retry::Policy {
        herald_shared::delivery::retry::Policy {
            retry_attempts: self.retry_attempts,
            spacing: self.retry_spacing.clone(),
            max_delay,
        }
    }
}

/// Why a webhook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] herald_shared::db::DbError),
    #[error("the webhook's secret cannot be opened: {0}")]
    Secret(String),
    #[error("the webhook's options are not usable: {0}")]
    Options(String),
}

impl From<LoadError> for herald_shared::amqp::consumer::HandlerError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Db(e) => e.into(),
            // A key that does not open the secret is a configuration that
            // an operator may fix: tried a few times, then parked.
            other => Self::Transient(other.to_string()),
        }
    }
}

impl WebhookConfig {
    /// Opens a stored webhook's secrets and headers.
    ///
    /// # Errors
    /// A secret sealed under another key, or damaged.
    pub fn open(w: Webhook, sealer: &Sealer) -> Result<Self, LoadError> {
        let open = |sealed: &[u8]| {
            sealer
                .open(sealed)
                .map_err(|e| LoadError::Secret(e.to_string()))
        };
        let open_secret = |sealed: &[u8]| -> Result<WebhookSecret, LoadError> {
            let text =
                String::from_utf8(open(sealed)?).map_err(|e| LoadError::Secret(e.to_string()))?;
            WebhookSecret::parse(&text).map_err(|e| LoadError::Secret(e.to_owned()))
        };
        let auth = match &w.auth_sealed {
            Some(sealed) => Some(
                serde_json::from_slice::<OutboundAuth>(&open(sealed)?)
                    .map_err(|e| LoadError::Secret(format!("credentials: {e}")))?,
            ),
            None => None,
        };
        let signing_key = match (&w.signing_key_sealed, w.options.signing.ed25519) {
            (Some(sealed), true) => Some(
                SigningKey::from_seed(&open(sealed)?)
                    .map_err(|e| LoadError::Secret(e.to_owned()))?,
            ),
            _ => None,
        };
        let previous_signing_key = match (
            &w.previous_signing_key_sealed,
            w.previous_signing_key_expires_at,
            w.options.signing.ed25519,
        ) {
            (Some(sealed), Some(until), true) => Some((
                SigningKey::from_seed(&open(sealed)?)
                    .map_err(|e| LoadError::Secret(e.to_owned()))?,
                until,
            )),
            _ => None,
        };
        let renderer = Renderer::new(w.options.format, w.options.custom.as_ref())
            .map_err(|e| LoadError::Options(e.to_string()))?;
        let signature_header = match &w.options.signing.simple_header {
            Some(name) => Some(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| LoadError::Options(format!("signature header: {e}")))?,
            ),
            None => None,
        };
        let hex_header = if w.options.signing.hex {
            Some(
                HeaderName::from_bytes(w.options.signing.hex_header_name().as_bytes())
                    .map_err(|e| LoadError::Options(format!("hex signature header: {e}")))?,
            )
        } else {
            None
        };
        let secret = open_secret(&w.secret_sealed)?;
        let previous_secret = match (&w.previous_secret_sealed, w.previous_secret_expires_at) {
            (Some(sealed), Some(until)) => Some((open_secret(sealed)?, until)),
            _ => None,
        };
        let clear = herald_shared::db::webhooks::open_headers(
            sealer,
            &w.headers,
            w.headers_sealed.as_deref(),
        )
        .map_err(LoadError::Secret)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &clear {
            // Checked by the api on the way in; skip anything that no
            // longer parses rather than fail the delivery.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        // API key, bearer and basic never change: their header is made once
        // here, with the custom ones (which may not name it).
        if let Some((name, value)) = auth.as_ref().and_then(OutboundAuth::static_header) {
            headers.insert(name, value);
        }
        let identity = match &w.client_cert_sealed {
            Some(sealed) => Some(
                serde_json::from_slice::<crate::client_cert::ClientIdentity>(&open(sealed)?)
                    .map_err(|e| LoadError::Secret(format!("client certificate: {e}")))?
                    .identity()
                    .map_err(|e| LoadError::Options(format!("client certificate: {e}")))?,
            ),
            None => None,
        };
        let retry_spacing = w.retry_spacing();
        Ok(Self {
            id: w.id,
            tenant_id: w.tenant_id,
            url: w.url,
            secret,
            previous_secret,
            headers,
            timeout: Duration::from_secs(u64::try_from(w.timeout_seconds).unwrap_or(10)),
            verify_ssl: w.verify_ssl,
            is_active: w.is_active,
            retry_attempts: u32::try_from(w.retry_attempts).unwrap_or(0),
            rate_limit: w.rate_limit.and_then(|r| u32::try_from(r).ok()),
            retry_spacing,
            renderer,
            signing: w.options.signing,
            signature_header,
            hex_header,
            signing_key,
            previous_signing_key,
            auth,
            identity,
            identity_client: std::sync::OnceLock::new(),
        })
    }
}

/// The guarded HTTP clients and the signing settings.
#[derive(Debug, Clone)]
pub struct Sender {
    security: SecuritySettings,
    /// Name of the `sha256=<hex>` header.
    signature_header: HeaderName,
    /// The delivery client, and the one for webhooks with `verify_ssl` off.
    client: reqwest::Client,
    insecure_client: reqwest::Client,
    tokens: TokenCache,
    /// The `host` of `splunk_hec` bodies.
    splunk_host: String,
    /// The relay to `delivery.proxy_url` both clients go through, when one
    /// is set; held here so it runs as long as the clients that use it.
    egress: Option<Egress>,
}

impl Sender {
    /// The clients, and with `delivery.proxy_url` set the egress relay they
    /// go through (started on the current Tokio runtime).
    ///
    /// # Errors
    /// A bad signature header name, an unusable proxy URL, or a TLS backend
    /// that cannot start.
    pub fn new(
        security: &SecuritySettings,
        worker: &WorkerSettings,
        delivery: &DeliverySettings,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        use secrecy::ExposeSecret as _;
        let egress = match &delivery.proxy_url {
            Some(url) => Some(
                Egress::start(url.expose_secret(), security.allow_private_targets)
                    .context("starting the egress relay for delivery.proxy_url")?,
            ),
            None => None,
        };
        Ok(Self {
            splunk_host: if worker.splunk_host.is_empty() {
                crate::formats::HOST.clone()
            } else {
                worker.splunk_host.clone()
            },
            signature_header: HeaderName::from_bytes(worker.signature_header.as_bytes())
                .context("worker.signature_header is not a valid header name")?,
            client: delivery_client(security, true, egress.as_ref())
                .context("building the HTTP client")?,
            insecure_client: delivery_client(
                security,
                !security.allow_insecure_tls,
                egress.as_ref(),
            )
            .context("building the HTTP client")?,
            security: security.clone(),
            tokens: TokenCache::default(),
            egress,
        })
    }

    /// The client for this webhook: the shared one for its TLS checks, or
    /// its own when it presents a client certificate.
    fn client_for<'a>(
        &'a self,
        webhook: &'a WebhookConfig,
    ) -> reqwest::Result<&'a reqwest::Client> {
        let Some(identity) = &webhook.identity else {
            return Ok(if webhook.verify_ssl {
                &self.client
            } else {
                &self.insecure_client
            });
        };
        if let Some(client) = webhook.identity_client.get() {
            return Ok(client);
        }
        let built = crate::net_guard::client_with_identity(
            &self.security,
            webhook.verify_ssl || !self.security.allow_insecure_tls,
            self.egress.as_ref(),
            Some(identity.clone()),
        )?;
        Ok(webhook.identity_client.get_or_init(|| built))
    }

    /// Renders, signs and sends one request; never fails, the attempt
    /// says how it went.
    pub async fn send(
        &self,
        m: &DeliveryMessage,
        webhook: &WebhookConfig,
        attempted_at: DateTime<Utc>,
        attempt_number: i32,
    ) -> Attempt {
        // Checked again here: the settings may have tightened since the
        // webhook was saved. Host names are checked as they resolve.
        let url = match check_url(&webhook.url, &self.security) {
            Ok(url) => url,
            Err(e) => {
                return Attempt {
                    error: Some(format!("blocked: the URL {e}")),
                    outcome: Outcome::Blocked,
                    ..Attempt::default()
                };
            }
        };
        // Through the proxy the client resolves nothing itself: the name is
        // resolved and checked here, so a refused target fails at once and
        // never reaches the proxy (the relay checks again as it opens the
        // tunnel, to the address it checked).
        if self.egress.is_some()
            && !self.security.allow_private_targets
            && let Some(Host::Domain(host)) = url.host()
        {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Err(e) = resolve_checked(host, port, false).await {
                return Attempt {
                    error: Some(herald_shared::text::clean(&e.to_string()).into_owned()),
                    outcome: match e {
                        ResolveError::Blocked(_) => Outcome::Blocked,
                        ResolveError::Lookup { .. } => Outcome::NetworkError,
                    },
                    ..Attempt::default()
                };
            }
        }
        let event = EventView {
            id: &m.event_id,
            event_type: &m.event_type,
            timestamp: m.occurred_at,
            tenant_id: m.tenant_id.get(),
            webhook_id: m.webhook_id.get(),
            severity: m.severity,
            source: m.source.as_deref(),
            data: &m.data,
            host: &self.splunk_host,
        };
        let body = match webhook.renderer.render(&event) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                return Attempt {
                    error: Some(e.to_string()),
                    outcome: Outcome::Blocked,
                    ..Attempt::default()
                };
            }
        };
        let mut headers = webhook.headers.clone();
        for (name, value) in self.signed_headers(m, webhook, attempted_at, &body) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        headers.insert(
            HeaderName::from_static("x-herald-attempt"),
            HeaderValue::from(attempt_number),
        );

        let client = match self.client_for(webhook) {
            Ok(client) => client,
            Err(e) => {
                return Attempt {
                    error: Some(format!("the client certificate cannot be used: {e}")),
                    outcome: Outcome::Blocked,
                    ..Attempt::default()
                };
            }
        };
        let started = Instant::now();
        // Token fetch, request and any resend share the webhook's timeout.
        let deadline = started + webhook.timeout;
        let sent = if matches!(webhook.auth, Some(OutboundAuth::Oauth2 { .. })) {
            let (first, used) = self
                .post(
                    client,
                    webhook,
                    headers.clone(),
                    body.clone(),
                    None,
                    deadline,
                )
                .await;
            // A token the endpoint no longer takes: a new one (unless
            // another delivery already replaced it) and one more send,
            // within the same attempt.
            if matches!(&first, Ok(r) if r.status() == http::StatusCode::UNAUTHORIZED) {
                self.post(client, webhook, headers, body, used.as_ref(), deadline)
                    .await
                    .0
            } else {
                first
            }
        } else {
            self.post(client, webhook, headers, body, None, deadline)
                .await
                .0
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(SendError::Auth(e)) => {
                return Attempt {
                    error: Some(e.to_string()),
                    outcome: Outcome::NetworkError,
                    duration: started.elapsed(),
                    ..Attempt::default()
                };
            }
            // A host name that resolves only to refused addresses fails the
            // same way every time, as a refused literal address does.
            Err(SendError::Http(e)) if BlockedTarget::find(&e).is_some() => {
                return Attempt {
                    error: BlockedTarget::find(&e).map(ToString::to_string),
                    outcome: Outcome::Blocked,
                    duration: started.elapsed(),
                    ..Attempt::default()
                };
            }
            Err(SendError::Http(e)) => {
                return Attempt {
                    error: Some(describe(&e, webhook.timeout)),
                    outcome: if e.is_timeout() {
                        Outcome::Timeout
                    } else {
                        Outcome::NetworkError
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
        // Whatever the endpoint sent (NUL, invalid UTF-8, escape codes) is
        // kept as clean, bounded text: it is stored and shown.
        let text = herald_shared::text::excerpt(&bytes, RESPONSE_CHARS);
        let success = (200..300).contains(&status);
        Attempt {
            status_code: Some(status),
            body: Some(text),
            error: error.or_else(|| (!success).then(|| format!("the endpoint answered {status}"))),
            duration,
            outcome: if success {
                Outcome::Success
            } else {
                Outcome::HttpError
            },
            retry_after,
        }
    }
}

impl Sender {
    /// The headers Herald sets on every request, over any custom ones:
    /// content type, ids, and the signatures of the webhook's schemes.
    fn signed_headers(
        &self,
        m: &DeliveryMessage,
        webhook: &WebhookConfig,
        attempted_at: DateTime<Utc>,
        body: &[u8],
    ) -> Vec<(HeaderName, String)> {
        let timestamp = attempted_at.timestamp();
        let mut headers = vec![
            (
                header::CONTENT_TYPE,
                webhook.renderer.content_type().to_owned(),
            ),
            (HeaderName::from_static("webhook-id"), m.event_id.clone()),
            (
                HeaderName::from_static("webhook-timestamp"),
                timestamp.to_string(),
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
        // Standard Webhooks signatures share one header, space-separated:
        // v1 with the current secret and any rotated-out one still valid,
        // then v1a with the ed25519 key.
        let mut standard = Vec::new();
        if webhook.signing.standard {
            let older: Vec<&WebhookSecret> = webhook
                .previous_secret
                .iter()
                .filter(|(_, until)| *until > attempted_at)
                .map(|(secret, _)| secret)
                .collect();
            standard.push(
                webhook
                    .secret
                    .sign_v1_all(&older, &m.event_id, timestamp, body),
            );
        }
        if let Some(key) = &webhook.signing_key {
            standard.push(key.sign_v1a(&m.event_id, timestamp, body));
            if let Some((previous, until)) = &webhook.previous_signing_key
                && *until > attempted_at
            {
                standard.push(previous.sign_v1a(&m.event_id, timestamp, body));
            }
        }
        if !standard.is_empty() {
            headers.push((
                HeaderName::from_static("webhook-signature"),
                standard.join(" "),
            ));
        }
        if webhook.signing.simple {
            headers.push((
                webhook
                    .signature_header
                    .clone()
                    .unwrap_or_else(|| self.signature_header.clone()),
                webhook.secret.sign_sha256_hex(body),
            ));
        }
        if let Some(name) = &webhook.hex_header {
            headers.push((name.clone(), webhook.secret.sign_hex(body)));
        }
        headers
    }

    /// One POST by `deadline`, with an OAuth2 token if the webhook uses
    /// one (the other kinds' header is among `headers` already); `rejected` is an OAuth2
    /// token the endpoint refused. Answers the response and the OAuth2
    /// token it carried.
    async fn post(
        &self,
        client: &reqwest::Client,
        webhook: &WebhookConfig,
        mut headers: HeaderMap,
        body: bytes::Bytes,
        rejected: Option<&HeaderValue>,
        deadline: Instant,
    ) -> (Result<reqwest::Response, SendError>, Option<HeaderValue>) {
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut used = None;
        if let Some(auth @ OutboundAuth::Oauth2 { token_url, .. }) = &webhook.auth {
            if let Err(e) = check_url(token_url, &self.security) {
                return (
                    Err(SendError::Auth(AuthError::Token(format!(
                        "blocked: the token URL {e}"
                    )))),
                    None,
                );
            }
            // Tokens are fetched with certificates checked, whatever the
            // webhook's `verify_ssl`: the client secret goes there.
            match self
                .tokens
                .token(webhook.id, auth, &self.client, left(), rejected)
                .await
            {
                Ok(token) => {
                    headers.insert(header::AUTHORIZATION, token.clone());
                    used = Some(token);
                }
                Err(e) => return (Err(SendError::Auth(e)), None),
            }
        }
        let sent = client
            .post(&webhook.url)
            .headers(headers)
            .timeout(left())
            .body(body)
            .send()
            .await
            .map_err(SendError::Http);
        (sent, used)
    }
}

enum SendError {
    Auth(crate::outbound_auth::AuthError),
    Http(reqwest::Error),
}
