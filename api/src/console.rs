//! The web console and customer portal, served at `/console/` from files
//! embedded in the binary (`api/console/`, see `build.rs`). The pages call
//! the same `/v1` API as everyone, with the token kept in the browser's
//! session storage.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and connections only from this origin, no inline script or style, and
//! framing only by the origins in `api.portal_frame_ancestors` (none by
//! default), so an endpoint's answer shown in the page can never run.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

/// The routes under `/console`; `frame_ancestors` is the checked
/// `api.portal_frame_ancestors` list.
pub fn router<S: Clone + Send + Sync + 'static>(frame_ancestors: &[String]) -> Router<S> {
    let headers = security_headers(frame_ancestors);
    let index_headers = headers.clone();
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(move || async move { file("index.html", &index_headers) }),
        )
        .route(
            "/console/{*path}",
            get(move |Path(path): Path<String>| async move { file(&path, &headers) }),
        )
}

fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some((_, body)) = CONSOLE_FILES.iter().find(|(p, _)| *p == path) else {
        return ApiError::NotFound.into_response();
    };
    let mut response = (StatusCode::OK, headers.clone(), *body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// The headers of every console answer.
fn security_headers(frame_ancestors: &[String]) -> HeaderMap {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    );
    let mut headers = HeaderMap::new();
    // The list was checked at start: origins only, so the header is valid.
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if frame_ancestors.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers
}

/// Checks `api.portal_frame_ancestors`: a space-separated list of origins
/// (`https://app.example.com`, `https://*.example.com`) or `'self'`.
///
/// # Errors
/// An entry that is not an origin, which could widen the policy.
pub fn parse_frame_ancestors(list: &str) -> Result<Vec<String>, String> {
    list.split_whitespace()
        .map(|entry| {
            let origin_like = entry
                .strip_prefix("https://")
                .or_else(|| entry.strip_prefix("http://"))
                .is_some_and(|host| {
                    !host.is_empty()
                        && host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'))
                });
            if entry == "'self'" || origin_like {
                Ok(entry.to_owned())
            } else {
                Err(format!(
                    "api.portal_frame_ancestors: {entry:?} is not an origin such as https://app.example.com or 'self'"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_embedded() {
        assert!(CONSOLE_FILES.iter().any(|(p, _)| *p == "index.html"));
    }

    #[test]
    fn frame_ancestors_are_origins_only() {
        assert_eq!(parse_frame_ancestors("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_frame_ancestors("https://app.example.com 'self' https://*.example.org:8443")
                .unwrap()
                .len(),
            3
        );
        for bad in [
            "*",
            "https://a.com; script-src *",
            "javascript:alert(1)",
            "https://",
            "'unsafe-inline'",
            "https://a.com/path",
        ] {
            assert!(parse_frame_ancestors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_forbid_inline_script_and_framing_by_default() {
        let h = security_headers(&[]);
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(csp.ends_with("frame-ancestors 'none'"));
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        let h = security_headers(&["https://app.example.com".to_owned()]);
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .ends_with("frame-ancestors https://app.example.com")
        );
        assert!(h.get(header::X_FRAME_OPTIONS).is_none());
    }
}
