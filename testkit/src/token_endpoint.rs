//! A real OAuth2 token endpoint on a random loopback port, for the
//! client-credentials webhooks.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;

/// A token request's `Authorization` header and form body.
pub type TokenRequest = (Option<String>, String);

/// A real OAuth2 token endpoint: every request gets a new token
/// (`tok-1`, `tok-2`, …) valid for `expires_in` seconds.
#[derive(Clone, Default)]
pub struct TokenEndpoint {
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenEndpoint {
    /// Answers the endpoint and its token URL.
    pub async fn start(expires_in: u64) -> (Self, String) {
        Self::start_with(expires_in, "tok").await
    }

    /// Tokens named `<prefix>-1`, `<prefix>-2`, ….
    pub async fn start_with(expires_in: u64, prefix: &str) -> (Self, String) {
        let prefix = prefix.to_owned();
        let endpoint = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the token endpoint");
        let addr = listener.local_addr().expect("an address");
        let app = Router::new()
            .route(
                "/token",
                post(
                    move |State(e): State<TokenEndpoint>, headers: HeaderMap, body: String| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let n = {
                            let mut requests = e.requests.lock().expect("lock");
                            requests.push((auth, body));
                            requests.len()
                        };
                        axum::Json(json!({"access_token": format!("{prefix}-{n}"),
                            "token_type": "Bearer", "expires_in": expires_in}))
                    },
                ),
            )
            .with_state(endpoint.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (endpoint, format!("http://{addr}/token"))
    }

    /// Every request so far: its `Authorization` header and form body.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}
