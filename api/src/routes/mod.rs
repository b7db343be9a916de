//! The `/v1` routes, one module per resource, plus health and metrics.

mod deliveries;
mod event_types;
mod events;
mod history;
mod overview;
mod portal;
mod resend;
mod tenants;
mod webhooks;

use std::time::Duration;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::{Extension, Router};
use herald_shared::runtime::health::{database_ready, metrics_response, readiness};

use crate::error::ApiError;
use crate::extract::BodyReadTimeout;
use crate::state::AppState;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Describes the API as a whole; every route adds itself through
/// `routes!`, so the document and the router cannot disagree.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Webhook delivery: tenants, webhooks, events and their deliveries."),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenants and API tokens"),
        (name = "webhooks", description = "Endpoints and what they subscribe to"),
        (name = "events", description = "Ingest and event history"),
        (name = "deliveries", description = "Delivery history, retries and recovery"),
        (name = "portal", description = "Customer portal sessions"),
        (name = "operations", description = "Health, readiness, metrics and this document")
    )
)]
struct ApiDoc;

/// `Authorization: Bearer <token>`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and its OpenAPI document.
pub fn router_and_document(state: AppState) -> (Router, serde_json::Value) {
    let max_event = state.settings.api.max_event_bytes;
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::router())
        .merge(deliveries::router())
        .merge(history::router())
        .merge(portal::router())
        .merge(overview::router())
        .merge(webhooks::router())
        .merge(events::router(max_event))
        .merge(event_types::router())
        .merge(resend::router())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let document = with_problem_answers(&document);
    let body_timeout = state.settings.api.body_read_timeout_seconds;
    let router = router
        .merge(crate::console::router(&state.frame_ancestors))
        // Bodies of every other route are small; event routes set their own.
        .layer(DefaultBodyLimit::max(max_event.max(64 * 1024)))
        .layer(Extension(Arc::new(document.clone())))
        .layer(Extension(BodyReadTimeout(body_timeout)))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(limit_headers))
        .with_state(state);
    (router, document)
}

/// Request headers accepted at most, in number and in bytes.
pub const MAX_HEADERS: usize = 100;
/// See [`MAX_HEADERS`].
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Answers 431 (as problem+json) for requests with too many or too large
/// headers; the server itself only cuts off those far past these limits.
async fn limit_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"
        ))
        .into_response();
    }
    next.run(request).await
}

pub fn router(state: AppState) -> Router {
    router_and_document(state).0
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    metrics_response(&s.metrics)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, body = Object)))]
async fn openapi_json(Extension(document): Extension<Arc<serde_json::Value>>) -> impl IntoResponse {
    axum::Json(document.as_ref().clone())
}

/// The document with every problem answer the api really gives: each
/// operation's own, and those any request can meet (405, 408, 431, 500;
/// 401, 429 and 503 where a token is needed; 400, 413, 415 and 422 where a
/// JSON body is read), all as `application/problem+json`.
fn with_problem_answers(document: &utoipa::openapi::OpenApi) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut doc = serde_json::to_value(document).unwrap_or(Value::Null);
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        })
    };
    let always: &[(&str, &str)] = &[
        ("405", "the method is not allowed on this path"),
        ("431", "too many or too large request headers"),
        ("500", "an internal error, logged"),
    ];
    let authenticated: &[(&str, &str)] = &[
        ("401", "no or a bad bearer token"),
        ("429", "over the tenant's rate limit (see Retry-After)"),
        (
            "503",
            "the database or broker is unavailable (see Retry-After)",
        ),
    ];
    let with_body: &[(&str, &str)] = &[
        ("400", "malformed JSON, or data after it"),
        ("408", "the body was not sent in time"),
        ("413", "the body is too large"),
        ("415", "the body is not sent as application/json"),
        ("422", "invalid fields, each named in errors"),
    ];
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let secured = op.contains_key("security");
            let body = op.contains_key("requestBody");
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            // The ones declared with the route: the problem media type.
            for answer in responses.values_mut() {
                let refs_problem = answer
                    .pointer("/content/application~1json/schema/$ref")
                    .and_then(Value::as_str)
                    == Some("#/components/schemas/Problem");
                if refs_problem && let Some(content) = answer.get_mut("content") {
                    let schema = content["application/json"].take();
                    *content = json!({"application/problem+json": schema});
                }
            }
            let mut add = |list: &[(&str, &str)]| {
                for (status, description) in list {
                    responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem(description));
                }
            };
            add(always);
            if secured {
                add(authenticated);
            }
            if body {
                add(with_body);
            }
        }
    }
    doc
}

/// Readiness: the database answers and the broker accepts a connection.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Object), (status = 503, body = Object)))]
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let db = database_ready(&s.pool).await;
    let broker = tokio::time::timeout(Duration::from_secs(2), s.publisher.channel())
        .await
        .is_ok_and(|r| r.is_ok());
    readiness(db, broker)
}
