//! Webhooks: create, list (paged), read, partial update, delete.
//!
//! Input accepts the seeds' alternative names (`events`, `enabled`,
//! `max_retries`); output always uses the canonical ones. The secret is
//! answered only by create.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use herald_shared::db::webhooks::{
    self, Headers, Webhook, WebhookFields, WebhookOptions, mask_header_value, mask_headers,
    open_headers, seal_headers,
};
use herald_shared::db::{DbError, DbResult};
use herald_shared::delivery::formats::{self, CustomBody, Format, JSON_CONTENT_TYPE};
use herald_shared::delivery::net_guard::check_url;
use herald_shared::delivery::outbound_auth::{AuthKind, OutboundAuth};
use herald_shared::delivery::signing::{SigningKey, SigningOptions, WebhookSecret};
use herald_shared::models::EventPattern;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ProblemDoc as Problem;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A page of webhooks.
#[derive(Serialize, ToSchema)]
struct WebhookPage {
    data: Vec<WebhookOut>,
    page: i64,
    per_page: i64,
    total: i64,
}

/// A rotated secret, shown only here.
#[derive(Serialize, ToSchema)]
struct RotatedSecret {
    secret: String,
    /// Until then the previous secret signs beside this one.
    previous_secret_expires_at: DateTime<Utc>,
}

/// How a test delivery went.
#[derive(Serialize, ToSchema)]
struct TestResult {
    success: bool,
    status_code: Option<u16>,
    /// The first 1,000 characters of the answer.
    response: Option<String>,
    error: Option<String>,
    duration_ms: u64,
    event_id: String,
    delivery_id: Uuid,
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, patch_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(rotate_signing_key))
        .routes(routes!(test_webhook))
}

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

/// A webhook's fields as sent to create (`name` and `url` required) or
/// patch it (only what changes). Also accepted: `events` for
/// `event_types`, `max_retries` for `retry_attempts`, `enabled` for
/// `is_active`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookInput {
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
    #[serde(alias = "enabled")]
    is_active: Option<bool>,
    /// Deliveries per second; an explicit `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    rate_limit: Option<Option<i64>>,
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
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OutboundAuth>)]
    auth: Option<Option<OutboundAuth>>,
}

/// Signature schemes to switch; the fields absent stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SigningInput {
    /// Standard Webhooks `v1` (HMAC-SHA256) in `webhook-signature`.
    standard: Option<bool>,
    /// `sha256=<hex>` in the simple scheme's header.
    simple: Option<bool>,
    /// The simple scheme's header name; `null`: the server's
    /// `worker.signature_header`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    simple_header: Option<Option<String>>,
    /// Standard Webhooks `v1a` (ed25519); a key pair is made the first
    /// time, and its public key is shown as `signing.public_key`.
    ed25519: Option<bool>,
}

/// The signature schemes as a webhook shows them.
#[derive(Debug, Serialize, ToSchema)]
struct SigningOut {
    standard: bool,
    simple: bool,
    /// `null`: the server's `worker.signature_header`.
    simple_header: Option<String>,
    ed25519: bool,
    /// `whpk_…`: what receivers verify `v1a` signatures with.
    public_key: Option<String>,
    /// After `rotate-signing-key`: the previous public key, whose `v1a`
    /// signature is still sent beside the new one until
    /// `previous_public_key_expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_public_key_expires_at: Option<DateTime<Utc>>,
}

/// Which outbound authentication is set (never the credentials).
#[derive(Debug, Serialize, ToSchema)]
struct AuthOut {
    #[serde(rename = "type")]
    kind: AuthKind,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A webhook as the API shows it; `secret` only in the answer to create.
#[derive(Debug, Serialize, ToSchema)]
struct WebhookOut {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: String,
    url: String,
    event_types: Vec<String>,
    headers: Headers,
    timeout_seconds: i32,
    retry_attempts: i32,
    retry_backoff_seconds: i32,
    verify_ssl: bool,
    is_active: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_triggered_at: Option<DateTime<Utc>>,
    delivery_success_count: i64,
    delivery_failure_count: i64,
    rate_limit: Option<i32>,
    format: Format,
    template: Option<String>,
    content_type: String,
    signing: SigningOut,
    auth: Option<AuthOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<Webhook> for WebhookOut {
    fn from(w: Webhook) -> Self {
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
            retry_backoff_seconds: w.retry_backoff_seconds,
            verify_ssl: w.verify_ssl,
            is_active: w.is_active,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
            last_triggered_at: w.last_triggered_at,
            delivery_success_count: w.delivery_success_count,
            delivery_failure_count: w.delivery_failure_count,
            rate_limit: w.rate_limit,
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
                public_key: w.public_key.filter(|_| w.options.signing.ed25519),
                previous_public_key: previous_key.as_ref().map(|(k, _)| k.clone()),
                previous_public_key_expires_at: previous_key.map(|(_, until)| until),
            },
            auth: w.options.auth.map(|kind| AuthOut { kind }),
            secret: None,
        }
    }
}

/// Collects every problem of an input, so one answer lists them all.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, detail: impl Into<String>) {
        self.0.push(FieldError::new(field, detail));
    }

    fn range(&mut self, field: &str, value: i64, min: i64, max: i64) -> i32 {
        if !(min..=max).contains(&value) {
            self.add(field, format!("must be between {min} and {max}"));
        }
        i32::try_from(value.clamp(min, max)).unwrap_or_default()
    }

    fn finish(self) -> ApiResult<()> {
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
fn merge(
    state: &AppState,
    input: WebhookInput,
    base: Option<WebhookFields>,
) -> ApiResult<(WebhookFields, Option<String>)> {
    let mut p = Problems::default();
    let creating = base.is_none();

    let name = match (input.name, &base) {
        (Some(n), _) => {
            let n = n.trim().to_owned();
            if n.is_empty() || n.len() > 255 {
                p.add("name", "must be 1 to 255 characters");
            }
            n
        }
        (None, Some(b)) => b.name.clone(),
        (None, None) => {
            p.add("name", "is required");
            String::new()
        }
    };

    let description = input
        .description
        .or_else(|| base.as_ref().map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.len() > 1000 {
        p.add("description", "must be at most 1000 characters");
    }

    let url = match (input.url, &base) {
        (Some(u), _) => {
            if let Err(e) = check_url(u.trim(), &state.settings.security) {
                p.add("url", e);
            }
            u.trim().to_owned()
        }
        (None, Some(b)) => b.url.clone(),
        (None, None) => {
            p.add("url", "is required");
            String::new()
        }
    };

    let event_types = match (input.event_types, &base) {
        (Some(types), _) => {
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
            let mut types = types;
            types.dedup();
            types
        }
        (None, Some(b)) => b.event_types.clone(),
        (None, None) => vec!["*".to_owned()],
    };

    let mut shown_secret = None;
    let secret_sealed = match (input.secret, &base) {
        (Some(s), _) => match WebhookSecret::parse(s.trim()) {
            Ok(secret) => {
                if creating {
                    shown_secret = Some(secret.expose().to_owned());
                }
                state.sealer.seal(secret.expose().as_bytes())
            }
            Err(e) => {
                p.add("secret", e);
                Vec::new()
            }
        },
        (None, Some(b)) => b.secret_sealed.clone(),
        (None, None) => {
            let secret = WebhookSecret::generate();
            shown_secret = Some(secret.expose().to_owned());
            state.sealer.seal(secret.expose().as_bytes())
        }
    };

    let base_options = base.as_ref().map(|b| b.options.clone()).unwrap_or_default();
    let format = input.format.unwrap_or(base_options.format);
    let custom = custom_body(
        format,
        input.template,
        input.content_type,
        base_options.custom,
        &mut p,
    );
    let signing = signing(input.signing, base_options.signing, &mut p);
    let (signing_key_sealed, public_key) = match base.as_ref() {
        Some(b) if b.signing_key_sealed.is_some() || !signing.ed25519 => {
            (b.signing_key_sealed.clone(), b.public_key.clone())
        }
        // The first time ed25519 is switched on: a key pair for good.
        _ if signing.ed25519 => {
            let (key, seed) =
                SigningKey::generate().map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
            (Some(state.sealer.seal(&seed)), Some(key.public_key()))
        }
        _ => (None, None),
    };
    let simple_header = signing
        .simple_header
        .clone()
        .unwrap_or_else(|| state.settings.worker.signature_header.clone())
        .to_ascii_lowercase();
    let auth_given = input.auth.is_some();
    let (auth_sealed, auth) = match input.auth {
        Some(Some(auth)) => {
            check_auth(&auth, state, &simple_header, &mut p);
            let json = serde_json::to_vec(&auth).map_err(|e| ApiError::Internal(e.into()))?;
            (Some(state.sealer.seal(&json)), Some(auth))
        }
        Some(None) => (None, None),
        None => match base.as_ref().and_then(|b| b.auth_sealed.clone()) {
            Some(sealed) => {
                // Opened only to know which header it sets.
                let auth = state
                    .sealer
                    .open(&sealed)
                    .ok()
                    .and_then(|json| serde_json::from_slice::<OutboundAuth>(&json).ok());
                (Some(sealed), auth)
            }
            None => (None, None),
        },
    };

    if !auth_given
        && auth
            .as_ref()
            .is_some_and(|a| a.header_name() == simple_header)
    {
        p.add(
            "signing.simple_header",
            "is the header the webhook's authentication sets",
        );
    }

    let mut reserved = vec![simple_header];
    reserved.extend(auth.as_ref().map(OutboundAuth::header_name));
    let (headers, headers_sealed) = match (input.headers, &base) {
        (Some(given), _) => {
            // A value sent back as the API showed it (masked) keeps the
            // value stored under that name.
            let current = base
                .as_ref()
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
            check_headers(&clear, &reserved, &mut p);
            seal_headers(&state.sealer, &clear)
        }
        (None, Some(b)) => {
            check_headers(&b.headers, &reserved, &mut p);
            (b.headers.clone(), b.headers_sealed.clone())
        }
        (None, None) => (Headers::new(), None),
    };

    let timeout_seconds = p.range(
        "timeout_seconds",
        input.timeout_seconds.unwrap_or_else(|| {
            base.as_ref()
                .map_or(DEFAULT_TIMEOUT, |b| i64::from(b.timeout_seconds))
        }),
        1,
        300,
    );
    let retry_attempts = p.range(
        "retry_attempts",
        input.retry_attempts.unwrap_or_else(|| {
            base.as_ref()
                .map_or(DEFAULT_RETRY_ATTEMPTS, |b| i64::from(b.retry_attempts))
        }),
        0,
        10,
    );
    let retry_backoff_seconds = p.range(
        "retry_backoff_seconds",
        input.retry_backoff_seconds.unwrap_or_else(|| {
            base.as_ref()
                .map_or(DEFAULT_BACKOFF, |b| i64::from(b.retry_backoff_seconds))
        }),
        1,
        86_400,
    );
    let verify_ssl = input
        .verify_ssl
        .unwrap_or_else(|| base.as_ref().is_none_or(|b| b.verify_ssl));
    if !verify_ssl && !state.settings.security.allow_insecure_tls {
        p.add(
            "verify_ssl",
            "cannot be turned off on this server (security.allow_insecure_tls)",
        );
    }
    let (is_active, disabled_reason) = match input.is_active {
        // Re-enabling clears the reason an automatic disable left.
        Some(true) => (true, None),
        Some(false) => (false, base.as_ref().and_then(|b| b.disabled_reason.clone())),
        None => base
            .as_ref()
            .map_or((true, None), |b| (b.is_active, b.disabled_reason.clone())),
    };

    let rate_limit = match input.rate_limit {
        Some(Some(n)) => Some(p.range("rate_limit", n, 1, 10_000)),
        Some(None) => None,
        None => base.as_ref().and_then(|b| b.rate_limit),
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
            timeout_seconds,
            retry_attempts,
            retry_backoff_seconds,
            verify_ssl,
            is_active,
            disabled_reason,
            rate_limit,
            options: WebhookOptions {
                format,
                custom,
                signing,
                auth: auth.as_ref().map(OutboundAuth::kind),
            },
            auth_sealed,
            signing_key_sealed,
            public_key,
        },
        shown_secret,
    ))
}

/// The template and content type of a `custom` webhook, checked by
/// rendering a sample event; `None` for the other formats.
fn custom_body(
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
        if let Some(header) = i.simple_header {
            signing.simple_header = header;
        }
    }
    if let Some(name) = &signing.simple_header {
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.add("signing.simple_header", "is not a valid HTTP header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-herald-")
            || lower == "authorization"
        {
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
    if let OutboundAuth::ApiKey { header, .. } = auth {
        let lower = header.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-herald-")
            || lower == simple_header
        {
            p.add("auth.header", "names a header Herald sets itself");
        }
    }
}

fn check_headers(headers: &Headers, reserved: &[String], p: &mut Problems) {
    if headers.len() > MAX_HEADERS {
        p.add("headers", format!("at most {MAX_HEADERS} headers"));
    }
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.add(&field, "is not a valid HTTP header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-herald-")
            || reserved.contains(&lower)
        {
            p.add(&field, "is set by Herald and cannot be overridden");
        }
        if HeaderValue::from_str(value).is_err() || value.len() > 4096 {
            p.add(&field, "is not a valid HTTP header value");
        }
    }
}

fn conflict(e: DbError) -> ApiError {
    match e {
        DbError::Conflict { .. } => {
            ApiError::Conflict("a webhook with this name already exists".to_owned())
        }
        other => other.into(),
    }
}

/// Creates a webhook; the answer holds its secret, shown only here.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookInput, security(("bearer" = [])),
    responses((status = 201, body = WebhookOut), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let (fields, secret) = merge(&state, input, None)?;
    let client = state.pool.get().await?;
    let webhook = webhooks::create(&client, tenant, &fields)
        .await
        .map_err(conflict)?;
    let mut out = WebhookOut::from(webhook);
    out.secret = secret;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    per_page: Option<i64>,
}

/// The tenant's webhooks, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = WebhookPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    let mut p = Problems::default();
    p.range("page", page, 1, 1_000_000);
    p.range("per_page", per_page, 1, 100);
    p.finish()?;
    let client = state.pool.get().await?;
    let (rows, total) = webhooks::list(&client, tenant, page, per_page).await?;
    let data: Vec<WebhookOut> = rows.into_iter().map(WebhookOut::from).collect();
    Ok(axum::Json(WebhookPage {
        data,
        page,
        per_page,
        total,
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookOut), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    let webhook = webhooks::get(&client, tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(WebhookOut::from(webhook)))
}

/// Changes the fields given; the rest stay. Checked like create.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), request_body = WebhookInput, security(("bearer" = [])),
    responses((status = 200, body = WebhookOut), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn patch_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let current = webhooks::get(&tx, tenant, id, true)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (fields, _) = merge(&state, input, Some(current.into()))?;
    let updated: DbResult<Option<Webhook>> = webhooks::update(&tx, tenant, id, &fields).await;
    let webhook = updated.map_err(conflict)?.ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(axum::Json(WebhookOut::from(webhook)))
}

/// Deletes a webhook and its deliveries; new events stop reaching it
/// within 2 seconds.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let client = state.pool.get().await?;
    if webhooks::delete(&client, tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateInput {
    /// The new secret; generated when absent.
    secret: Option<String>,
}

/// A new secret, answered once; the previous one keeps signing beside it
/// (both in `webhook-signature`) for `api.secret_rotation_overlap_seconds`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path)),
    request_body(content = RotateInput, description = "optional"), security(("bearer" = [])),
    responses((status = 200, body = RotatedSecret), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    crate::extract::OptionalJson(input): crate::extract::OptionalJson<RotateInput>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let secret = match input.secret {
        Some(s) => WebhookSecret::parse(s.trim()).map_err(|e| ApiError::invalid("secret", e))?,
        None => WebhookSecret::generate(),
    };
    let client = state.pool.get().await?;
    let expires = webhooks::rotate_secret(
        &client,
        tenant,
        id,
        &state.sealer.seal(secret.expose().as_bytes()),
        overlap_until(&state),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(RotatedSecret {
        secret: secret.expose().to_owned(),
        previous_secret_expires_at: expires,
    }))
}

/// When a rotated-out secret or key stops signing.
fn overlap_until(state: &AppState) -> DateTime<Utc> {
    let overlap = chrono::Duration::seconds(
        i64::try_from(state.settings.api.secret_rotation_overlap_seconds)
            .unwrap_or(i64::MAX / 1000),
    );
    Utc::now() + overlap
}

/// A rotated ed25519 key pair.
#[derive(Serialize, ToSchema)]
struct RotatedSigningKey {
    /// The new `whpk_…` public key.
    public_key: Option<String>,
    /// The previous one, whose `v1a` signature is sent beside the new one
    /// until `previous_public_key_expires_at`.
    previous_public_key: Option<String>,
    previous_public_key_expires_at: Option<DateTime<Utc>>,
}

/// A new ed25519 key pair for `v1a` signatures; the previous key keeps
/// signing beside it (two `v1a` in `webhook-signature`) for
/// `api.secret_rotation_overlap_seconds`, so receivers can switch public
/// keys without a gap. Only for webhooks with `signing.ed25519` on.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-signing-key", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RotatedSigningKey), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let webhook = webhooks::get(&tx, tenant, id, true)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !webhook.options.signing.ed25519 {
        return Err(ApiError::invalid(
            "signing.ed25519",
            "is off: switch it on (PATCH signing.ed25519) to get a key pair",
        ));
    }
    let (key, seed) = SigningKey::generate().map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let rotated = webhooks::rotate_signing_key(
        &tx,
        tenant,
        id,
        &state.sealer.seal(&seed),
        &key.public_key(),
        overlap_until(&state),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(axum::Json(RotatedSigningKey {
        public_key: rotated.public_key,
        previous_public_key: rotated.previous_public_key,
        previous_public_key_expires_at: rotated.previous_expires_at,
    }))
}

/// Delivers a `webhook.test` event now, through the same rendering, signing
/// and HTTP code as every delivery, and answers how it went. The event and
/// its delivery are recorded like any other (not retried).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = TestResult), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem, description = "the tenant has its most test calls in flight")))]
async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    use herald_shared::db::deliveries::{self, AttemptRecord, NewDelivery, NewEvent};
    use herald_shared::delivery::sender::WebhookConfig;
    use herald_shared::models::{DeliveryMessage, DeliveryStatus, Severity};

    let tenant = caller.tenant()?;
    // The call waits on the tenant's endpoint: a few at a time per tenant.
    let _slot = state
        .test_slots
        .try_take(tenant)
        .ok_or(ApiError::RateLimited(1))?;
    let mut client = state.pool.get().await?;
    let webhook = webhooks::get(&client, tenant, id, false)
        .await?
        .ok_or(ApiError::NotFound)?;
    let config =
        WebhookConfig::open(webhook, &state.sealer).map_err(|e| ApiError::Internal(e.into()))?;
    let now = Utc::now();
    let event_id = format!("test_{}", Uuid::now_v7().simple());
    let data = serde_json::value::to_raw_value(&serde_json::json!({
        "message": "A test event from Herald",
        "webhook_id": id,
    }))
    .map_err(|e| ApiError::Internal(e.into()))?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    deliveries::insert_events(
        &tx,
        &[NewEvent {
            tenant_id: tenant,
            id: &event_id,
            event_type: "webhook.test",
            data: &data,
            severity: Some(Severity::Info),
            source: Some("herald"),
            occurred_at: now,
            received_at: now,
        }],
    )
    .await?;
    let created = deliveries::insert_deliveries(
        &tx,
        &[NewDelivery {
            tenant_id: tenant,
            event_id: &event_id,
            webhook_id: id,
            event_type: "webhook.test",
        }],
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    let delivery_id = created
        .first()
        .map(|c| c.0)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the test delivery was not created")))?;
    let message = DeliveryMessage {
        delivery_id,
        tenant_id: tenant,
        webhook_id: id,
        event_id: event_id.clone(),
        event_type: "webhook.test".to_owned(),
        occurred_at: now,
        received_at: now,
        severity: Some(Severity::Info),
        source: Some("herald".to_owned()),
        data,
        attempt: 1,
        due_at: None,
        manual: true,
    };
    // No pooled connection is held while the endpoint takes its time.
    drop(client);
    let attempt = state.sender.send(&message, &config, now, 1).await;
    let success = attempt.status_code.is_some_and(|s| (200..300).contains(&s));
    deliveries::record_attempts(
        &state.pool.get().await?,
        &[AttemptRecord {
            delivery_id,
            attempted_at: now,
            duration_ms: i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX),
            status_code: attempt.status_code.map(i32::from),
            response_body: attempt.body.clone(),
            error: attempt.error.clone(),
            new_status: if success {
                DeliveryStatus::Success
            } else {
                DeliveryStatus::Failed
            },
            next_attempt_at: None,
        }],
    )
    .await?;
    Ok(axum::Json(TestResult {
        success,
        status_code: attempt.status_code,
        response: attempt.body,
        error: attempt.error,
        duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
        event_id,
        delivery_id,
    }))
}
