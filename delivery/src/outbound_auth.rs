//! Outbound authentication: what a webhook's requests carry so that the
//! receiver lets them in. API key (a header), bearer token, basic auth, or
//! OAuth2 client credentials (a token fetched from the token URL, cached,
//! refreshed a minute before it expires and fetched again once when the
//! endpoint answers 401).
//!
//! Credentials are sealed at rest like secrets and never answered by the
//! api, which shows only the kind; their `Debug` shows no credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use herald_shared::delivery::options::AuthKind;

/// The header an API key goes in unless the webhook names another.
pub const DEFAULT_API_KEY_HEADER: &str = "X-API-Key";
/// A token is fetched again this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Past this many webhooks' tokens, stale ones are forgotten.
const PRUNE_AT: usize = 1024;
/// How long a token without `expires_in` is kept.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How the client authenticates at the OAuth2 token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP basic auth with the client id and secret (RFC 6749 2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// A webhook's credentials, as sealed at rest (and as given to the api).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutboundAuth {
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        key: String,
    },
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        #[serde(default)]
        client_auth: ClientAuthMethod,
    },
}

fn default_api_key_header() -> String {
    DEFAULT_API_KEY_HEADER.to_owned()
}

impl std::fmt::Debug for OutboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutboundAuth::{:?}(..)", self.kind())
    }
}

impl OutboundAuth {
    #[must_use]
    pub fn kind(&self) -> AuthKind {
        match self {
            Self::ApiKey { .. } => AuthKind::ApiKey,
            Self::Bearer { .. } => AuthKind::Bearer,
            Self::Basic { .. } => AuthKind::Basic,
            Self::Oauth2 { .. } => AuthKind::Oauth2,
        }
    }

    /// The header of an API key, bearer or basic authentication (marked
    /// sensitive, so it never shows in a `Debug`); `None` for OAuth2, whose
    /// token comes from [`TokenCache::token`].
    #[must_use]
    pub fn static_header(&self) -> Option<(HeaderName, HeaderValue)> {
        let (name, mut value) = match self {
            Self::ApiKey { header, key } => (
                HeaderName::from_bytes(header.as_bytes()).ok()?,
                HeaderValue::from_str(key).ok()?,
            ),
            Self::Bearer { token } => (
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
            ),
            Self::Basic { username, password } => (
                header::AUTHORIZATION,
                HeaderValue::from_str(&basic(username, password)).ok()?,
            ),
            Self::Oauth2 { .. } => return None,
        };
        value.set_sensitive(true);
        Some((name, value))
    }

    /// The header this authentication sets, which custom headers may not
    /// override.
    #[must_use]
    pub fn header_name(&self) -> String {
        match self {
            Self::ApiKey { header, .. } => header.to_ascii_lowercase(),
            _ => "authorization".to_owned(),
        }
    }

    /// Every problem with the fields, as `(field, detail)`; the token URL
    /// is checked by the caller against the target rules.
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut p = Vec::new();
        let mut need = |field, value: &str| {
            if value.is_empty() {
                p.push((field, "is required"));
            } else if value.len() > 4096 || HeaderValue::from_str(value).is_err() {
                p.push((field, "must be at most 4,096 printable characters"));
            }
        };
        match self {
            Self::ApiKey { header, key } => {
                need("auth.key", key);
                if HeaderName::from_bytes(header.as_bytes()).is_err() {
                    p.push(("auth.header", "is not a valid HTTP header name"));
                }
            }
            Self::Bearer { token } => need("auth.token", token),
            Self::Basic { username, password } => {
                need("auth.username", username);
                need("auth.password", password);
                if username.contains(':') {
                    p.push(("auth.username", "may not contain ':'"));
                }
            }
            Self::Oauth2 {
                client_id,
                client_secret,
                ..
            } => {
                need("auth.client_id", client_id);
                need("auth.client_secret", client_secret);
            }
        }
        p
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("OAuth2 token request failed: {0}")]
    Token(String),
}

/// A fetched OAuth2 access token.
struct CachedToken {
    /// The credentials it was fetched with: changed credentials fetch anew.
    auth: OutboundAuth,
    value: HeaderValue,
    refresh_at: Instant,
}

/// One webhook's token, locked while it is fetched.
type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// OAuth2 tokens by webhook, shared by every delivery of one process. One
/// fetch at a time per webhook: concurrent deliveries wait for it.
#[derive(Clone, Default)]
pub struct TokenCache {
    slots: Arc<SyncMutex<HashMap<Uuid, Slot>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(..)")
    }
}

/// A token endpoint's answer (RFC 6749 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenCache {
    fn slot(&self, webhook: Uuid) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slots.len() >= PRUNE_AT && !slots.contains_key(&webhook) {
            // Forget the tokens past their refresh time (webhooks deleted
            // or idle), keeping any being fetched right now.
            let now = Instant::now();
            slots.retain(|_, slot| {
                slot.try_lock()
                    .map_or(true, |t| t.as_ref().is_some_and(|t| now < t.refresh_at))
            });
        }
        Arc::clone(slots.entry(webhook).or_default())
    }

    /// The OAuth2 token of a webhook: the cached one, or a new one.
    /// `rejected` is a token the endpoint refused (a 401): if the cache
    /// still holds it, a new one is fetched; if another delivery has
    /// replaced it already, that one is used.
    ///
    /// # Errors
    /// The token endpoint failed or answered without a token.
    pub async fn token(
        &self,
        webhook: Uuid,
        auth: &OutboundAuth,
        client: &reqwest::Client,
        timeout: Duration,
        rejected: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        let slot = self.slot(webhook);
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && t.auth == *auth
            && Instant::now() < t.refresh_at
            && rejected != Some(&t.value)
        {
            return Ok(t.value.clone());
        }
        let token = fetch_token(auth, client, timeout).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn fetch_token(
    auth: &OutboundAuth,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<CachedToken, AuthError> {
    let OutboundAuth::Oauth2 {
        token_url,
        client_id,
        client_secret,
        scope,
        audience,
        client_auth,
    } = auth
    else {
        return Err(AuthError::Token("not an OAuth2 webhook".to_owned()));
    };
    let mut request = client
        .post(token_url)
        .timeout(timeout)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match client_auth {
        ClientAuthMethod::ClientSecretBasic => {
            // RFC 6749 2.3.1: both parts form-encoded before the base64.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let mut value = HeaderValue::from_str(&basic(&enc(client_id), &enc(client_secret)))
                .map_err(|_| AuthError::Token("the client credentials are not valid".to_owned()))?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        ClientAuthMethod::ClientSecretPost => {}
    }
    // The serializer is not `Send`: the body is finished before any await.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = audience {
            form.append_pair("audience", audience);
        }
        if *client_auth == ClientAuthMethod::ClientSecretPost {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret);
        }
        form.finish()
    };
    let started = Instant::now();
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| AuthError::Token(crate::net_guard::describe(&e, timeout)))?;
    let status = response.status();
    let body = read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
        .await
        .map_err(|e| AuthError::Token(crate::net_guard::describe(&e, timeout)))?
        .ok_or_else(|| {
            AuthError::Token(format!(
                "the token endpoint's answer is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"
            ))
        })?;
    if !status.is_success() {
        let text = herald_shared::text::excerpt(&body, 200);
        return Err(AuthError::Token(format!(
            "the token endpoint answered {}: {text}",
            status.as_u16()
        )));
    }
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        AuthError::Token(format!(
            "the token endpoint's answer is not a token: {}",
            herald_shared::text::excerpt(e.to_string().as_bytes(), 200)
        ))
    })?;
    if let Some(kind) = &token.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(AuthError::Token(format!(
            "the token endpoint gave a {} token; only bearer tokens are supported",
            herald_shared::text::excerpt(kind.as_bytes(), 40)
        )));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
        .map_err(|_| AuthError::Token("the access token is not a valid header value".to_owned()))?;
    value.set_sensitive(true);
    let lifetime = token
        .expires_in
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok(CachedToken {
        auth: auth.clone(),
        value,
        refresh_at: started + lifetime.saturating_sub(REFRESH_BEFORE),
    })
}

/// A token endpoint's answer is small; a larger one is refused unread.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Reads a body of at most `max` bytes; `None` when it is longer.
async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credential() {
        let auth = OutboundAuth::Basic {
            username: "user".to_owned(),
            password: "hunter2".to_owned(),
        };
        let text = format!("{auth:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("user"),
            "{text}"
        );
        assert!(text.contains("Basic"), "{text}");
    }

    #[test]
    fn api_key_header_defaults() {
        let auth: OutboundAuth =
            serde_json::from_str(r#"{"type": "api_key", "key": "k1"}"#).expect("parses");
        assert_eq!(auth.header_name(), "x-api-key");
        assert!(auth.problems().is_empty());
        let bad: OutboundAuth =
            serde_json::from_str(r#"{"type": "basic", "username": "a:b", "password": ""}"#)
                .expect("parses");
        assert_eq!(bad.problems().len(), 2);
    }
}
