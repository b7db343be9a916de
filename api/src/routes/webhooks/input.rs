//! What create and PATCH accept, and how it is checked: `merge` applies an
//! input over the stored webhook (or the defaults), one concern at a time,
//! and collects every problem so that one answer lists them all.

use axum::http::{HeaderName, HeaderValue};
use herald_delivery::client_cert::ClientIdentity;
use herald_delivery::formats::{self, CustomBody, Format, JSON_CONTENT_TYPE};
use herald_delivery::net_guard::check_url;
use herald_delivery::outbound_auth::OutboundAuth;
use herald_delivery::signing::{SigningKey, SigningOptions, WebhookSecret};
use herald_shared::db::webhooks::{
    Headers, WebhookFields, WebhookOptions, mask_header_value, open_headers, seal_headers,
};
use herald_shared::delivery::options::RetrySpacing;
use herald_shared::models::EventPattern;
use serde::Deserialize;
use std::time::Duration;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::patch::Patch;
use crate::state::AppState;

const DEFAULT_TIMEOUT: i64 = 10;
/// Retries of an exponential policy when none are asked for.
const DEFAULT_RETRY_ATTEMPTS: i64 = 5;
/// The first delay of an exponential policy when none is given.
const DEFAULT_BACKOFF_MS: u64 = 60_000;
/// Entries of a `retry_schedule` at most (as many as retries).
const MAX_RETRIES: i64 = 10;
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
/// `active` for `is_active`, `retry_backoff` or `initial_delay` for
/// `retry_backoff_seconds`, `max_delay` for `max_delay_seconds`. Created
/// without a `name`, a webhook is named after its URL's host (`host-2`,
/// `host-3`… when taken).
///
/// Retries follow either a `retry_schedule` (the default: Standard
/// Webhooks' 5s, 5m, 30m, 2h, 5h, 10h, 10h) or, when any of
/// `retry_backoff_seconds`, `exponential_base`, `max_delay_seconds` and
/// `jitter` is given, an exponential backoff.
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
    /// Retries after the first attempt, 0–10 (default: as many as the
    /// schedule has delays; 5 for an exponential backoff).
    #[serde(alias = "max_retries")]
    retry_attempts: Option<i64>,
    /// The delay before each retry, as `"30s"`, `"5m"`, `"2h"` or a number
    /// of seconds; past its end the last delay repeats.
    retry_schedule: Option<Vec<Delay>>,
    /// Exponential backoff: the first delay in seconds (default 60).
    #[serde(alias = "retry_backoff", alias = "initial_delay")]
    retry_backoff_seconds: Option<f64>,
    /// Exponential backoff: each delay is the previous one times this,
    /// 1–10 (default 2).
    exponential_base: Option<f64>,
    /// Exponential backoff: no delay longer than this many seconds; an
    /// explicit `null` removes the cap.
    #[serde(default, alias = "max_delay")]
    #[schema(value_type = Option<f64>)]
    max_delay_seconds: Patch<f64>,
    /// Exponential backoff: draw each delay from its upper half (between
    /// half the delay and all of it), so failures made together spread out.
    jitter: Option<bool>,
    verify_ssl: Option<bool>,
    #[serde(alias = "enabled", alias = "active")]
    is_active: Option<bool>,
    /// Deliveries per second; an explicit `null` removes the limit.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    rate_limit: Patch<i64>,
    /// A JSONPath filter expression (RFC 9535) over the event's `data`,
    /// such as `@.amount > 1000 && @.currency == 'EUR'`: only events it
    /// holds for are delivered; `null` removes it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    filter: Patch<String>,
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
    /// A TLS client certificate and key (PEM) presented to endpoints that
    /// require one (mTLS); an explicit `null` removes it. Sealed at rest and
    /// never answered back: reads show its `fingerprint_sha256`.
    #[serde(default)]
    #[schema(value_type = Option<ClientIdentity>)]
    client_certificate: Patch<ClientIdentity>,
}

/// One delay of a retry schedule: `"90s"`, `"5m"`, `"1h 30m"`, or seconds.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum Delay {
    Text(String),
    Seconds(f64),
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
    /// A bare lowercase hex HMAC-SHA256 of the body in `hex_header`.
    hex: Option<bool>,
    /// The hex scheme's header (default `X-Signature`); `null`: back to it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    hex_header: Patch<String>,
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

impl WebhookInput {
    /// For a full replace (`PUT`): every field the body leaves out takes
    /// its default, as on create, except `name` and the secret and keys,
    /// which stay as they are. `url` is required.
    pub(super) fn replacing(mut self) -> ApiResult<Self> {
        if self.url.is_none() {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "url",
                "is required: PUT replaces the whole webhook",
            )]));
        }
        self.description.get_or_insert_with(String::new);
        self.event_types.get_or_insert_with(|| vec!["*".to_owned()]);
        self.headers.get_or_insert_with(Headers::new);
        self.timeout_seconds.get_or_insert(DEFAULT_TIMEOUT);
        let exponential = self.retry_backoff_seconds.is_some()
            || self.exponential_base.is_some()
            || self.max_delay_seconds.is_given()
            || self.jitter.is_some();
        if exponential {
            #[allow(clippy::cast_precision_loss)]
            self.retry_backoff_seconds
                .get_or_insert(DEFAULT_BACKOFF_MS as f64 / 1000.0);
            self.exponential_base.get_or_insert(2.0);
            self.jitter.get_or_insert(false);
            if !self.max_delay_seconds.is_given() {
                self.max_delay_seconds = Patch::Null;
            }
            self.retry_attempts.get_or_insert(DEFAULT_RETRY_ATTEMPTS);
        } else if self.retry_schedule.is_none() {
            #[allow(clippy::cast_precision_loss)]
            let standard = herald_shared::delivery::options::STANDARD_SCHEDULE_SECONDS
                .iter()
                .map(|s| Delay::Seconds(*s as f64))
                .collect();
            self.retry_schedule = Some(standard);
        }
        self.verify_ssl.get_or_insert(true);
        self.is_active.get_or_insert(true);
        if !self.rate_limit.is_given() {
            self.rate_limit = Patch::Null;
        }
        if !self.filter.is_given() {
            self.filter = Patch::Null;
        }
        let format = *self.format.get_or_insert(Format::Json);
        if format == Format::Custom {
            self.content_type
                .get_or_insert_with(|| JSON_CONTENT_TYPE.to_owned());
        }
        let given = self.signing.take().unwrap_or_default();
        let defaults = SigningOptions::default();
        self.signing = Some(SigningInput {
            standard: Some(given.standard.unwrap_or(defaults.standard)),
            simple: Some(given.simple.unwrap_or(defaults.simple)),
            simple_header: if given.simple_header.is_given() {
                given.simple_header
            } else {
                Patch::Null
            },
            ed25519: Some(given.ed25519.unwrap_or(defaults.ed25519)),
            hex: Some(given.hex.unwrap_or(defaults.hex)),
            hex_header: if given.hex_header.is_given() {
                given.hex_header
            } else {
                Patch::Null
            },
        });
        if !self.auth.is_given() {
            self.auth = Patch::Null;
        }
        if !self.client_certificate.is_given() {
            self.client_certificate = Patch::Null;
        }
        Ok(self)
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
    let (mut options, auth, auth_sealed) = delivery_options(state, &mut input, b, &mut p)?;
    let (signing_key_sealed, public_key) = ed25519_key(state, b, options.signing.ed25519)?;
    let simple = simple_header(state, &options.signing);
    let auth_header = auth.as_ref().map(OutboundAuth::header_name);
    let hex = options
        .signing
        .hex
        .then(|| options.signing.hex_header_name());
    if hex.is_some() && hex == auth_header {
        p.add(
            "signing.hex_header",
            "is the header the webhook's authentication sets",
        );
    }
    let mut taken = vec![simple.as_str()];
    taken.extend(auth_header.as_deref());
    taken.extend(hex.as_deref());
    let (headers, headers_sealed) = headers(state, input.headers.take(), b, &taken, &mut p);
    let policy = policy(state, &input, b, &mut p);
    options.retry = Some(policy.retry_spacing.clone());
    let client_cert_sealed = match std::mem::take(&mut input.client_certificate) {
        Patch::Value(identity) => match identity.check() {
            Ok(info) => {
                options.client_certificate = Some(info);
                let json =
                    serde_json::to_vec(&identity).map_err(|e| ApiError::Internal(e.into()))?;
                Some(state.sealer.seal(&json))
            }
            Err((field, reason)) => {
                p.add(field, reason);
                None
            }
        },
        Patch::Null => {
            options.client_certificate = None;
            None
        }
        Patch::Absent => {
            options.client_certificate = b.and_then(|b| b.options.client_certificate.clone());
            b.and_then(|b| b.client_cert_sealed.clone())
        }
    };
    let filter = std::mem::take(&mut input.filter)
        .map(|f| {
            if let Err(e) = herald_shared::filter::Filter::compile(&f) {
                p.add("filter", e);
            }
            f
        })
        .apply(b.and_then(|b| b.filter.clone()));
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
            client_cert_sealed,
            filter,
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
    let signing = signing(
        input.signing.take(),
        base_options.signing,
        &state.settings.worker.signature_header.to_ascii_lowercase(),
        p,
    );
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
        // Set by `merge` once the retry policy and certificate are checked.
        retry: None,
        client_certificate: None,
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
    /// The first delay, whole seconds rounded up (the column the API has
    /// always shown).
    retry_backoff_seconds: i32,
    retry_spacing: RetrySpacing,
    verify_ssl: bool,
    rate_limit: Option<i32>,
}

fn policy(
    state: &AppState,
    input: &WebhookInput,
    base: Option<&WebhookFields>,
    p: &mut Problems,
) -> Policy {
    let timeout_seconds = p.range(
        "timeout_seconds",
        input
            .timeout_seconds
            .unwrap_or_else(|| base.map_or(DEFAULT_TIMEOUT, |b| i64::from(b.timeout_seconds))),
        1,
        300,
    );
    let (retry_attempts, retry_spacing) = retries(state, input, base, p);
    let first_ms = retry_spacing.first_ms();
    let retry_backoff_seconds = i32::try_from(first_ms.div_ceil(1000)).unwrap_or(i32::MAX);
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
        retry_spacing,
        verify_ssl,
        rate_limit,
    }
}

/// How many retries, and how they are spaced: a given schedule, an
/// exponential backoff when any of its fields is given (over the stored
/// one's), else what is stored, else the standard schedule.
fn retries(
    state: &AppState,
    input: &WebhookInput,
    base: Option<&WebhookFields>,
    p: &mut Problems,
) -> (i32, RetrySpacing) {
    let cap = state.settings.worker.max_retry_delay_seconds;
    let exponential = input.retry_backoff_seconds.is_some()
        || input.exponential_base.is_some()
        || input.max_delay_seconds.is_given()
        || input.jitter.is_some();
    let stored = base.map(WebhookFields::retry_spacing);
    let spacing = if let Some(schedule) = &input.retry_schedule {
        if exponential {
            p.add(
                "retry_schedule",
                "cannot be combined with retry_backoff_seconds, exponential_base, \
                 max_delay_seconds or jitter",
            );
        }
        RetrySpacing::Schedule {
            delays_ms: schedule_delays(schedule, cap, p),
        }
    } else if exponential {
        let (first_ms, growth, max_ms, jitter) = match stored {
            Some(RetrySpacing::Exponential {
                first_ms,
                base,
                max_ms,
                jitter,
            }) => (first_ms, base, max_ms, jitter),
            _ => (DEFAULT_BACKOFF_MS, 2.0, None, false),
        };
        let first_ms = input.retry_backoff_seconds.map_or(first_ms, |s| {
            seconds_ms("retry_backoff_seconds", s, 0.1, cap, p)
        });
        let growth = input.exponential_base.map_or(growth, |g| {
            if !(1.0..=10.0).contains(&g) {
                p.add("exponential_base", "must be between 1 and 10");
            }
            g.clamp(1.0, 10.0)
        });
        let max_ms = input
            .max_delay_seconds
            .clone()
            .map(|s| seconds_ms("max_delay_seconds", s, 1.0, cap, p))
            .apply(max_ms);
        RetrySpacing::Exponential {
            first_ms,
            base: growth,
            max_ms,
            jitter: input.jitter.unwrap_or(jitter),
        }
    } else {
        stored.unwrap_or_else(RetrySpacing::standard)
    };
    let default_attempts = match (&input.retry_schedule, base) {
        (Some(schedule), _) => i64::try_from(schedule.len()).unwrap_or(MAX_RETRIES),
        (None, Some(b)) => i64::from(b.retry_attempts),
        (None, None) if exponential => DEFAULT_RETRY_ATTEMPTS,
        (None, None) => {
            i64::try_from(herald_shared::delivery::options::STANDARD_SCHEDULE_SECONDS.len())
                .unwrap_or(MAX_RETRIES)
        }
    };
    let attempts = p.range(
        "retry_attempts",
        input
            .retry_attempts
            .unwrap_or(default_attempts.min(MAX_RETRIES)),
        0,
        MAX_RETRIES,
    );
    (attempts, spacing)
}

/// A schedule's delays in milliseconds, each checked (`retry_schedule[i]`).
fn schedule_delays(schedule: &[Delay], cap: Duration, p: &mut Problems) -> Vec<u64> {
    if schedule.is_empty() || schedule.len() > usize::try_from(MAX_RETRIES).unwrap_or(10) {
        p.add(
            "retry_schedule",
            format!("must list 1 to {MAX_RETRIES} delays"),
        );
    }
    schedule
        .iter()
        .enumerate()
        .map(|(i, delay)| {
            let field = format!("retry_schedule[{i}]");
            match delay {
                Delay::Seconds(s) => seconds_ms(&field, *s, 0.0, cap, p),
                Delay::Text(text) => match humantime::parse_duration(text.trim()) {
                    Ok(d) if d <= cap => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    Ok(_) => {
                        p.add(&field, format!("must be at most {}", humantime::format_duration(cap)));
                        0
                    }
                    Err(_) => {
                        p.add(
                            &field,
                            "must be a duration such as \"30s\", \"5m\" or \"2h\", or a number of seconds",
                        );
                        0
                    }
                },
            }
        })
        .collect()
}

/// `seconds` in milliseconds if it lies in `min..=cap`; else the problem
/// is noted.
fn seconds_ms(field: &str, seconds: f64, min: f64, cap: Duration, p: &mut Problems) -> u64 {
    if !(min..=cap.as_secs_f64()).contains(&seconds) {
        p.add(
            field,
            format!("must be between {min} and {} seconds", cap.as_secs()),
        );
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (seconds * 1000.0).round() as u64;
    ms
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

fn signing(
    input: Option<SigningInput>,
    base: SigningOptions,
    server_simple_header: &str,
    p: &mut Problems,
) -> SigningOptions {
    let mut signing = base;
    if let Some(i) = input {
        signing.standard = i.standard.unwrap_or(signing.standard);
        signing.simple = i.simple.unwrap_or(signing.simple);
        signing.ed25519 = i.ed25519.unwrap_or(signing.ed25519);
        signing.simple_header = i.simple_header.apply(signing.simple_header);
        signing.hex = i.hex.unwrap_or(signing.hex);
        signing.hex_header = i.hex_header.apply(signing.hex_header);
    }
    for (field, name) in [
        ("signing.simple_header", &signing.simple_header),
        ("signing.hex_header", &signing.hex_header),
    ] {
        if let Some(name) = name {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.add(field, "is not a valid HTTP header name");
            } else if herald_sets(name, &["authorization"]) {
                p.add(field, "names a header Herald sets otherwise");
            }
        }
    }
    let simple_header = signing
        .simple_header
        .as_deref()
        .map_or_else(|| server_simple_header.to_owned(), str::to_ascii_lowercase);
    if signing.hex && signing.simple && signing.hex_header_name() == simple_header {
        p.add(
            "signing.hex_header",
            "is the simple scheme's header; name another, or turn one scheme off",
        );
    }
    if !(signing.standard || signing.simple || signing.ed25519 || signing.hex) {
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
