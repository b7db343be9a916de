//! Logs: the api and the worker as real processes, logging everything at
//! debug level as JSON, through webhook creation, secret rotation, a test
//! call and deliveries with every kind of credential (including failures
//! and retries). Every line of a delivery carries its ids and attempt, and
//! no secret, token or credential appears anywhere in either log.

use std::time::Duration;

use base64::Engine as _;

use herald_testkit::{
    ADMIN_TOKEN, ChildProcess, Receiver, TestEnv, TokenEndpoint, free_port, wait_until,
    workspace_binary,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const WORKER: &str = env!("CARGO_BIN_EXE_herald-worker");
const WAIT: Duration = Duration::from_secs(40);

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the api answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }
}

fn secret_of(v: &Value, key: &str) -> String {
    v[key].as_str().expect("a secret in the answer").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_logs_carry_their_ids_and_never_a_secret() {
    let env = TestEnv::with(&[("HERALD__LOG__FORMAT", "json")]).await;
    let _dispatcher = env.start_dispatcher().await;
    let dir = std::env::temp_dir().join(format!("herald-logs-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a log directory");
    let (api_log, worker_log) = (dir.join("api.log"), dir.join("worker.log"));
    let debug = "debug";

    let api_port = free_port();
    let mut api_vars = env.vars.clone();
    api_vars.insert(
        "HERALD__API__LISTEN".to_owned(),
        format!("127.0.0.1:{api_port}"),
    );
    let mut api_process = ChildProcess::spawn_logged(
        workspace_binary("herald-api"),
        &["serve"],
        &api_vars,
        debug,
        &api_log,
    );
    let mut worker_vars = env.vars.clone();
    worker_vars.insert(
        "HERALD__WORKER__LISTEN".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut worker = ChildProcess::spawn_logged(WORKER, &[], &worker_vars, debug, &worker_log);
    let api = Api {
        base: format!("http://127.0.0.1:{api_port}"),
        http: reqwest::Client::new(),
    };
    wait_until(WAIT, "the api", || async {
        api.http
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;

    let unique = || Uuid::new_v4().simple().to_string();
    let (api_key, bearer, password, client_secret, token_prefix) = (
        unique(),
        unique(),
        unique(),
        unique(),
        format!("acc{}", unique()),
    );
    let (tokens, token_url) = TokenEndpoint::start_with(3600, &token_prefix).await;
    let receiver = Receiver::start().await;

    let tenant = api
        .call(
            Method::POST,
            "/v1/tenants",
            ADMIN_TOKEN,
            Some(json!({"name": "acme"})),
        )
        .await;
    let token = secret_of(&tenant, "token");
    let mut secrets = vec![token.clone(), ADMIN_TOKEN.to_owned()];
    secrets.push(env.vars["HERALD__SECURITY__ENCRYPTION_KEY"].clone());
    let hooks = [
        ("apikey", json!({"type": "api_key", "key": api_key})),
        ("bearer", json!({"type": "bearer", "token": bearer})),
        (
            "basic",
            json!({"type": "basic", "username": "u", "password": password}),
        ),
        (
            "oauth2",
            json!({"type": "oauth2", "token_url": token_url, "client_id": "herald",
                   "client_secret": client_secret}),
        ),
        (
            "unreachable",
            json!({"type": "oauth2", "token_url": "http://127.0.0.1:9/token",
                   "client_id": "herald", "client_secret": client_secret}),
        ),
    ];
    // A credential in a custom header, as some endpoints want it.
    let header_secret = format!("hdr-{}", Uuid::new_v4().simple());
    let mut hook_ids = Vec::new();
    for (name, auth) in hooks {
        let hook = api
            .call(
                Method::POST,
                "/v1/webhooks",
                &token,
                Some(
                    json!({"name": name, "url": receiver.url(name), "auth": auth,
                    "retry_attempts": 1, "retry_backoff_seconds": 1,
                    "headers": {"X-Partner-Key": header_secret}}),
                ),
            )
            .await;
        secrets.push(secret_of(&hook, "secret"));
        hook_ids.push(hook["id"].as_str().expect("an id").to_owned());
    }
    let rotated = api
        .call(
            Method::POST,
            &format!("/v1/webhooks/{}/rotate-secret", hook_ids[1]),
            &token,
            None,
        )
        .await;
    secrets.push(secret_of(&rotated, "secret"));
    api.call(
        Method::POST,
        &format!("/v1/webhooks/{}/test", hook_ids[2]),
        &token,
        None,
    )
    .await;
    // The event's first answer fails: a retry, and an error in the log.
    receiver.script(vec![(500, Vec::new())]);
    let event = api
        .call(
            Method::POST,
            "/v1/events",
            &token,
            Some(json!({"event_type": "a.b", "data": {"n": 1}})),
        )
        .await;
    let event_id = event["id"].as_str().expect("an event id").to_owned();

    // Four delivered (one after a retry), the unreachable token endpoint's
    // failed after its retry.
    wait_until(WAIT, "every delivery settled", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 5
            && env
                .count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
                .await
                == 1)
            .then_some(())
    })
    .await;
    assert!(tokens.count() >= 1);
    secrets.extend((1..=tokens.count()).map(|n| format!("{token_prefix}-{n}")));
    // The encoded forms too: the basic credentials, and the client's at
    // the token endpoint.
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    secrets.push(b64(format!("u:{password}")));
    secrets.push(b64(format!("herald:{client_secret}")));
    secrets.extend([api_key, bearer, password, client_secret, header_secret]);

    worker.terminate();
    api_process.terminate();
    for p in [&mut worker, &mut api_process] {
        let status = p.wait_exit(Duration::from_secs(30)).await.expect("exits");
        assert!(status.success(), "clean exit, got {status}");
    }
    let worker_text = std::fs::read_to_string(&worker_log).expect("the worker's log");
    let api_text = std::fs::read_to_string(&api_log).expect("the api's log");
    let _ = std::fs::remove_dir_all(&dir);

    // The logs are real: JSON lines, the deliveries' among them.
    let lines: Vec<Value> = worker_text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_deliveries: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            [
                "delivered",
                "attempt failed; retry scheduled",
                "delivery failed",
            ]
            .contains(&l["message"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        of_deliveries.len() >= 7,
        "one line per attempt (5 delivered, 2 retried, 1 failed): {of_deliveries:?}"
    );
    for line in &of_deliveries {
        let span = &line["span"];
        for field in ["event_id", "delivery_id", "webhook_id", "attempt"] {
            assert!(!span[field].is_null(), "{field} missing in {line}");
        }
    }
    assert!(
        of_deliveries
            .iter()
            .any(|l| l["span"]["event_id"] == event_id.as_str() && l["span"]["attempt"] == 2),
        "the retry is logged as attempt 2"
    );
    assert!(
        of_deliveries
            .iter()
            .any(|l| l["message"] == "delivery failed"
                && l["error.message"]
                    .as_str()
                    .is_some_and(|e| e.contains("OAuth2 token request failed"))),
        "the token failure is explained"
    );
    assert!(!api_text.is_empty(), "the api logged at debug level");

    // The database driver's statement parameters (payloads, sealed values,
    // response bodies) are never logged, whatever the level.
    for text in [&worker_text, &api_text] {
        assert!(
            !text.contains("with parameters"),
            "query parameters in a log"
        );
    }
    for secret in &secrets {
        assert!(
            !worker_text.contains(secret.as_str()),
            "a secret in the worker's log: {secret}"
        );
        assert!(
            !api_text.contains(secret.as_str()),
            "a secret in the api's log: {secret}"
        );
        // Nor its base64 body alone (a `whsec_` secret's key).
        if let Some(key) = secret.strip_prefix("whsec_") {
            assert!(!worker_text.contains(key) && !api_text.contains(key));
        }
    }
}
