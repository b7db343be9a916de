//! Request extractors whose rejections are [`ApiError`]s, so that every
//! malformed request is answered with problem+json instead of axum's plain
//! text.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use herald_shared::payload::{self, Limits};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// How long a client has to send a request's body (an extension the router
/// sets from `api.body_read_timeout_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// A JSON body: a media type other than JSON is 415, syntax errors and
/// trailing data 400, type errors and content Herald cannot store 422
/// naming the field, bodies over the route's limit 413, a body not sent
/// within the read timeout 408.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_media_type(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`;
/// anything else is read as [`ApiJson`] reads it.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        check_media_type(&headers)?;
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The body, within the read timeout and the route's size limit.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let timeout = req
        .extensions()
        .get::<BodyReadTimeout>()
        .map_or(Duration::from_secs(30), |t| t.0);
    tokio::time::timeout(timeout, Bytes::from_request(req, state))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is too large".to_owned())
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })
}

/// `application/json`, or any `application/*+json`, with any parameters.
fn check_media_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let refuse = || {
        ApiError::UnsupportedMediaType(
            "the body must be JSON, sent with Content-Type: application/json".to_owned(),
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refuse)?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json { Ok(()) } else { Err(refuse()) }
}

/// Parses JSON with the path of the first bad field.
///
/// # Errors
/// 400 for malformed JSON or data after the document, 422 for a well-formed
/// document of the wrong shape or one Herald cannot store (a `\u0000`, a
/// lone surrogate, a number out of range, too deep).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { String::new() } else { path };
                ApiError::Invalid(vec![FieldError::new(
                    field,
                    strip_position(&inner.to_string()),
                )])
            }
            _ => ApiError::BadRequest(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("the body has data after its JSON: {e}")))?;
    // Valid JSON is valid UTF-8.
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    payload::check(text, Limits::BODY).map_err(|p| ApiError::invalid(p.under(""), p.detail))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A path parameter; one that does not parse names nothing that exists, so
/// it is a 404.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::NotFound)
    }
}

/// A query string; a bad one is 422 with the parser's reason.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}
