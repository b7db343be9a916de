//! What create and PATCH accept, and how it is checked: `merge` applies an
//! input over the stored webhook (or the defaults), one concern at a time,
//! and collects every problem so that one answer lists them all.

use axum::http::{HeaderName, HeaderValue};
use herald_delivery::formats::{self, CustomBody, Format, JSON_CONTENT_TYPE};
use herald_delivery::net_guard::check_url;
use herald_delivery::outbound_auth::OutboundAuth;
use herald_delivery::signing::{SigningKey, SigningOptions, WebhookSecret};
use herald_shared::db::webhooks::{
    Headers, WebhookFields, WebhookOptions, mask_header_value, open_headers, seal_headers,
};
use herald_shared::models::EventPattern;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::patch::Patch;
use crate::state::AppState;

const DEFAULT_TIMEOUT: i64 = 10;
const DEFAULT_RETRY_ATTEMPTS: i64 = 5;
const DEFAULT_BACKOFF: i64 = 60;
const MAX_HEADERS: usize = 32;
const MAX_PATTERNS: usize = 100;
const MAX_TEMPLATE_BYTES: usize = 65_536;

/// Headers Herald sets itself; a webhook may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Whether Herald sets this header on every delivery (`taken` names the
/// ones this webhook's signing or authentication sets).
fn herald_sets(name: &str, taken: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("x-herald-")
        || taken.contains(&lower.as_str())
}

/// A webhook's fields as sent to create (`name` and `url` required) or
/// patch it (only what changes). Also accepted: `events` for
/// `event_types`, `max_retries` for `retry_attempts`, `enabled` or
/// `active` for `is_active`. Created without a `name`, a webhook is named
/// after its URL's host (`host-2`, `host-3`… when taken).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookInput {
    name: Option<String>,
    description: Option<String>,
    url: Option<String>,
    #[serde(alias = "events")]
    event_types: Option<Vec<String>>,
    secret: Option<String>,
    headers: Option<Headers>,
    timeout_seconds: Option<i64>,
    #[serde(alias = "max_retries")]
    retry_attempts: Option<i64>,
    retry_backoff_seconds: Option<i64>,
    verify_ssl: Option<bool>,
    #[serde(alias = "enabled", alias = "active")]
    is_active: Option<bool>,
    /// Deliveries per second; an explicit `null` removes the limit.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    rate_limit: Patch<i64>,
    /// The body's shape: `json` (default), `splunk_hec`, `datadog`,
    /// `elastic`, or `custom` with `template`.
    format: Option<Format>,
    /// A minijinja template for `format: custom`, over `id`, `type`,
    /// `timestamp`, `tenant_id`, `webhook_id`, `severity`, `source` and
    /// `data`; `tojson` renders a value as JSON.
    template: Option<String>,
    /// The content type of a custom body (default `application/json`; a
    /// JSON type must render valid JSON).
    content_type: Option<String>,
    /// Which signature schemes sign (only the fields given change).
    signing: Option<SigningInput>,
    /// Outbound authentication; an explicit `null` removes it. Never
    /// answered back: reads show only its `type`.
    #[serde(default)]
    #[schema(value_type = Option<OutboundAuth>)]
    auth: Patch<OutboundAuth>,
}

/// Signature schemes to switch; the fields absent stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningInput {
    /// Standard Webhooks `v1` (HMAC-SHA256) in `webhook-signature`.
    standard: Option<bool>,
    /// `sha256=<hex>` in the simple scheme's header.
    simple: Option<bool>,
    /// The simple scheme's header name; `null`: the server's
    /// `worker.signature_header`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    simple_header: Patch<String>,
    /// Standard Webhooks `v1a` (ed25519); a key pair is made the first
    /// time, and its public key is shown as `signing.public_key`.
    ed25519: Option<bool>,
}

impl WebhookInput {
    /// For a webhook created without a name: its URL's host, then
    /// `host-2`, `host-3`… (`attempt` counts from 1). `None` when a name
    /// was given, or the URL has no host (merge then names the problem).
    pub(super) fn named_after_host(&self, attempt: u32) -> Option<Self> {
        if self.name.is_some() {
            return None;
        }
        let uri: axum::http::Uri = self.url.as_deref()?.trim().parse().ok()?;
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        let name = if attempt == 1 {
            host
        } else {
            format!("{host}-{attempt}")
        };
        Some(Self {
            name: Some(name),
            ..self.clone()
        })
    }
}

/// Collects every problem of an input, so one answer lists them all.
#[derive(Default)]
pub(super) struct Problems(Vec<FieldError>);

impl Problems {
    pub(super) fn add(&mut self, field: &str, detail: impl Into<String>) {
        self.0.push(FieldError::new(field, detail));
    }

    /// `value` if it lies in `min..=max`; else the problem is noted and
    /// the nearest bound stands in.
    pub(super) fn range(&mut self, field: &str, value: i64, min: i64, max: i64) -> i32 {
        if !(min..=max).contains(&value) {
            self.add(field, format!("must be between {min} and {max}"));
        }
        i32::try_from(value.clamp(min, max)).unwrap_or_default()
    }

    pub(super) fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

/// Applies `input` over `base` (create: defaults; patch: the stored
/// webhook), checks the result, and seals a new secret if one is given.
/// Answers the fields and, on create, the secret in clear.
pub(super) fn merge(
    state: &AppState,
    mut input: WebhookInput,
    base: Option<WebhookFields>,
) -> ApiResult<(WebhookFields, Option<String>)> {
    let mut p = Problems::default();
    let b = base.as_ref();
    let name = required(
        "name",
        input.name.take(),
        b.map(|b| &b.name),
        &mut p,
        |n, p| {
            let n = n.trim().to_owned();
            if n.is_empty() || n.len() > 255 {
                p.add("name", "must be 1 to 255 characters");
            }
            n
        },
    );
    let description = input
        .description
        .take()
        .or_else(|| b.map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.len() > 1000 {
        p.add("description", "must be at most 1000 characters");
    }
    let url = required(
        "url",
        input.url.take(),
        b.map(|b| &b.url),
        &mut p,
        |u, p| {
            if let Err(e) = check_url(u.trim(), &state.settings.security) {
                p.add("url", e);
            }
            u.trim().to_owned()
        },
    );
    let event_types = input.event_types.take().map_or_else(
        || b.map_or_else(|| vec!["*".to_owned()], |b| b.event_types.clone()),
        |types| event_types(types, &mut p),
    );
    let (secret_sealed, shown_secret) = secret(state, input.secret.take(), b, &mut p);
    let (options, auth, auth_sealed) = delivery_options(state, &mut input, b, &mut p)?;
    let (signing_key_sealed, public_key) = ed25519_key(state, b, options.signing.ed25519)?;
    let simple = simple_header(state, &options.signing);
    let auth_header = auth.as_ref().map(OutboundAuth::header_name);
    let mut taken = vec![simple.as_str()];
    taken.extend(auth_header.as_deref());
    let (headers, headers_sealed) = headers(state, input.headers.take(), b, &taken, &mut p);
    let policy = policy(state, &input, b, &mut p);
    let (is_active, disabled_reason) = match input.is_active {
        // Re-enabling clears the reason an automatic disable left.
        Some(true) => (true, None),
        Some(false) => (false, b.and_then(|b| b.disabled_reason.clone())),
        None => b.map_or((true, None), |b| (b.is_active, b.disabled_reason.clone())),
    };
    p.finish()?;
    Ok((
        WebhookFields {
            name,
            description,
            url,
            event_types,
            secret_sealed,
            headers,
            headers_sealed,
            timeout_seconds: policy.timeout_seconds,
            retry_attempts: policy.retry_attempts,
            retry_backoff_seconds: policy.retry_backoff_seconds,
            verify_ssl: policy.verify_ssl,
            is_active,
            disabled_reason,
            rate_limit: policy.rate_limit,
            options,
            auth_sealed,
            signing_key_sealed,
            public_key,
        },
        shown_secret,
    ))
}

/// A field create requires: the given value checked by `check`, else the
/// stored one, else a problem.
fn required(
    field: &str,
    given: Option<String>,
    stored: Option<&String>,
    p: &mut Problems,
    check: impl FnOnce(String, &mut Problems) -> String,
) -> String {
    match (given, stored) {
        (Some(v), _) => check(v, p),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            p.add(field, "is required");
            String::new()
        }
    }
}

fn event_types(mut types: Vec<String>, p: &mut Problems) -> Vec<String> {
    if types.is_empty() {
        p.add(
            "event_types",
            "must name at least one type or pattern; \"*\" matches every type",
        );
    }
    if types.len() > MAX_PATTERNS {
        p.add("event_types", format!("at most {MAX_PATTERNS} patterns"));
    }
    for (i, t) in types.iter().enumerate() {
        if let Err(e) = EventPattern::parse(t) {
            p.add(&format!("event_types[{i}]"), e.0);
        }
    }
    types.dedup();
    types
}

/// The sealed signing secret, and the secret in clear when create shows
/// it: the one given, the stored one, or a new one.
fn secret(
    state: &AppState,
    given: Option<String>,
    base: Option<&WebhookFields>,
    p: &mut Problems,
) -> (Vec<u8>, Option<String>) {
    let creating = base.is_none();
    match (given, base) {
        (Some(s), _) => match WebhookSecret::parse(s.trim()) {
            Ok(secret) => (
                state.sealer.seal(secret.expose().as_bytes()),
                creating.then(|| secret.expose().to_owned()),
            ),
            Err(e) => {
                p.add("secret", e);
                (Vec::new(), None)
            }
        },
        (None, Some(b)) => (b.secret_sealed.clone(), None),
        (None, None) => {
            let secret = WebhookSecret::generate();
            (
                state.sealer.seal(secret.expose().as_bytes()),
                Some(secret.expose().to_owned()),
            )
        }
    }
}

/// The body format, signature schemes and outbound authentication (the
/// credentials opened only to know which header they set, and sealed).
fn delivery_options(
    state: &AppState,
    input: &mut WebhookInput,
    base: Option<&WebhookFields>,
    p: &mut Problems,
) -> ApiResult<(WebhookOptions, Option<OutboundAuth>, Option<Vec<u8>>)> {
    let base_options = base.map(|b| b.options.clone()).unwrap_or_default();
    let format = input.format.unwrap_or(base_options.format);
    let custom = custom_body(
        format,
        input.template.take(),
        input.content_type.take(),
        base_options.custom,
        p,
    );
    let signing = signing(input.signing.take(), base_options.signing, p);
    let simple_header = simple_header(state, &signing);
    let (auth, auth_sealed) = match std::mem::take(&mut input.auth) {
        Patch::Value(auth) => {
            check_auth(&auth, state, &simple_header, p);
            let json = serde_json::to_vec(&auth).map_err(|e| ApiError::Internal(e.into()))?;
            (Some(auth), Some(state.sealer.seal(&json)))
        }
        Patch::Null => (None, None),
        Patch::Absent => match base.and_then(|b| b.auth_sealed.clone()) {
            Some(sealed) => {
                let auth = state
                    .sealer
                    .open(&sealed)
                    .ok()
                    .and_then(|json| serde_json::from_slice::<OutboundAuth>(&json).ok());
                if auth
                    .as_ref()
                    .is_some_and(|a| a.header_name() == simple_header)
                {
                    p.add(
                        "signing.simple_header",
                        "is the header the webhook's authentication sets",
                    );
                }
                (auth, Some(sealed))
            }
            None => (None, None),
        },
    };
    let options = WebhookOptions {
        format,
        custom,
        signing,
        auth: auth.as_ref().map(OutboundAuth::kind),
    };
    Ok((options, auth, auth_sealed))
}

/// The simple scheme's header, lowercase: the webhook's or the server's.
fn simple_header(state: &AppState, signing: &SigningOptions) -> String {
    signing
        .simple_header
        .as_deref()
        .unwrap_or(&state.settings.worker.signature_header)
        .to_ascii_lowercase()
}

/// The ed25519 key pair, sealed, and its public key: made the first time
/// the scheme is switched on, and kept for good.
fn ed25519_key(
    state: &AppState,
    base: Option<&WebhookFields>,
    ed25519: bool,
) -> ApiResult<(Option<Vec<u8>>, Option<String>)> {
    match base {
        Some(b) if b.signing_key_sealed.is_some() || !ed25519 => {
            Ok((b.signing_key_sealed.clone(), b.public_key.clone()))
        }
        _ if ed25519 => {
            let (key, seed) =
                SigningKey::generate().map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
            Ok((Some(state.sealer.seal(&seed)), Some(key.public_key())))
        }
        _ => Ok((None, None)),
    }
}

/// The custom headers, masked for reads and sealed for sending. A value
/// sent back as the API showed it (masked) keeps the value stored under
/// that name.
fn headers(
    state: &AppState,
    given: Option<Headers>,
    base: Option<&WebhookFields>,
    taken: &[&str],
    p: &mut Problems,
) -> (Headers, Option<Vec<u8>>) {
    match (given, base) {
        (Some(given), _) => {
            let current = base
                .and_then(|b| {
                    open_headers(&state.sealer, &b.headers, b.headers_sealed.as_deref()).ok()
                })
                .unwrap_or_default();
            let clear: Headers = given
                .into_iter()
                .map(|(name, value)| match current.get(&name) {
                    Some(old) if mask_header_value(old) == value => (name, old.clone()),
                    _ => (name, value),
                })
                .collect();
            check_headers(&clear, taken, p);
            seal_headers(&state.sealer, &clear)
        }
        (None, Some(b)) => {
            check_headers(&b.headers, taken, p);
            (b.headers.clone(), b.headers_sealed.clone())
        }
        (None, None) => (Headers::new(), None),
    }
}

/// How a webhook's deliveries are made and retried.
struct Policy {
    timeout_seconds: i32,
    retry_attempts: i32,
    retry_backoff_seconds: i32,
    verify_ssl: bool,
    rate_limit: Option<i32>,
}

fn policy(
    state: &AppState,
    input: &WebhookInput,
    base: Option<&WebhookFields>,
    p: &mut Problems,
) -> Policy {
    let stored = |default: i64, field: fn(&WebhookFields) -> i32| {
        base.map_or(default, |b| i64::from(field(b)))
    };
    let timeout_seconds = p.range(
        "timeout_seconds",
        input
            .timeout_seconds
            .unwrap_or_else(|| stored(DEFAULT_TIMEOUT, |b| b.timeout_seconds)),
        1,
        300,
    );
    let retry_attempts = p.range(
        "retry_attempts",
        input
            .retry_attempts
            .unwrap_or_else(|| stored(DEFAULT_RETRY_ATTEMPTS, |b| b.retry_attempts)),
        0,
        10,
    );
    let retry_backoff_seconds = p.range(
        "retry_backoff_seconds",
        input
            .retry_backoff_seconds
            .unwrap_or_else(|| stored(DEFAULT_BACKOFF, |b| b.retry_backoff_seconds)),
        1,
        86_400,
    );
    let verify_ssl = input
        .verify_ssl
        .unwrap_or_else(|| base.is_none_or(|b| b.verify_ssl));
    // Refused when asked for; a webhook stored while the server allowed it
    // keeps it, and stays editable.
    if input.verify_ssl == Some(false) && !state.settings.security.allow_insecure_tls {
        p.add(
            "verify_ssl",
            "cannot be turned off on this server (security.allow_insecure_tls)",
        );
    }
    let rate_limit = input
        .rate_limit
        .clone()
        .map(|n| p.range("rate_limit", n, 1, 10_000))
        .apply(base.and_then(|b| b.rate_limit));
    Policy {
        timeout_seconds,
        retry_attempts,
        retry_backoff_seconds,
        verify_ssl,
        rate_limit,
    }
}

/// The template and content type of a `custom` webhook, checked by
/// rendering a sample event; `None` for the other formats.
pub(super) fn custom_body(
    format: Format,
    template: Option<String>,
    content_type: Option<String>,
    base: Option<CustomBody>,
    p: &mut Problems,
) -> Option<CustomBody> {
    if format != Format::Custom {
        if template.is_some() {
            p.add("template", "is used only with format \"custom\"");
        }
        if content_type.is_some() {
            p.add("content_type", "is set only with format \"custom\"");
        }
        return None;
    }
    let Some(template) = template.or_else(|| base.as_ref().map(|b| b.template.clone())) else {
        p.add("template", "is required with format \"custom\"");
        return None;
    };
    let content_type = content_type
        .or_else(|| base.map(|b| b.content_type))
        .unwrap_or_else(|| JSON_CONTENT_TYPE.to_owned());
    let custom = CustomBody {
        template,
        content_type,
    };
    if custom.template.len() > MAX_TEMPLATE_BYTES {
        p.add(
            "template",
            format!("must be at most {MAX_TEMPLATE_BYTES} bytes"),
        );
    } else if let Err(e) = formats::check_template(&custom) {
        p.add("template", e);
    }
    if HeaderValue::from_str(&custom.content_type).is_err() || !custom.content_type.contains('/') {
        p.add(
            "content_type",
            "must be a media type such as application/json",
        );
    }
    Some(custom)
}

fn signing(input: Option<SigningInput>, base: SigningOptions, p: &mut Problems) -> SigningOptions {
    let mut signing = base;
    if let Some(i) = input {
        signing.standard = i.standard.unwrap_or(signing.standard);
        signing.simple = i.simple.unwrap_or(signing.simple);
        signing.ed25519 = i.ed25519.unwrap_or(signing.ed25519);
        signing.simple_header = i.simple_header.apply(signing.simple_header);
    }
    if let Some(name) = &signing.simple_header {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.add("signing.simple_header", "is not a valid HTTP header name");
        } else if herald_sets(name, &["authorization"]) {
            p.add(
                "signing.simple_header",
                "names a header Herald sets otherwise",
            );
        }
    }
    if !(signing.standard || signing.simple || signing.ed25519) {
        p.add("signing", "at least one scheme must stay on");
    }
    signing
}

fn check_auth(auth: &OutboundAuth, state: &AppState, simple_header: &str, p: &mut Problems) {
    for (field, detail) in auth.problems() {
        p.add(field, detail);
    }
    if let OutboundAuth::Oauth2 { token_url, .. } = auth
        && let Err(e) = check_url(token_url, &state.settings.security)
    {
        p.add("auth.token_url", e);
    }
    if let OutboundAuth::ApiKey { header, .. } = auth
        && herald_sets(header, &[simple_header])
    {
        p.add("auth.header", "names a header Herald sets itself");
    }
}

fn check_headers(headers: &Headers, taken: &[&str], p: &mut Problems) {
    if headers.len() > MAX_HEADERS {
        p.add("headers", format!("at most {MAX_HEADERS} headers"));
    }
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.add(&field, "is not a valid HTTP header name");
        } else if herald_sets(name, taken) {
            p.add(&field, "is set by Herald and cannot be overridden");
        }
        if HeaderValue::from_str(value).is_err() || value.len() > 4096 {
            p.add(&field, "is not a valid HTTP header value");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_sets_its_own_headers_whatever_their_case() {
        assert!(herald_sets("Content-Type", &[]));
        assert!(herald_sets("X-Herald-Anything", &[]));
        assert!(herald_sets("X-Signature", &["x-signature"]));
        assert!(!herald_sets("X-Tenant", &["x-signature"]));
    }
}
