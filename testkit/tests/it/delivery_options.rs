//! Delivery options: each body format as a receiver gets it, custom
//! templates checked when saved, outbound authentication of every kind
//! (OAuth2 against a real token endpoint), and the signature schemes.

use std::time::Duration;

use herald_delivery::signing::{WebhookSecret, verify_v1a};
use herald_testkit::{ApiHandle, Received, Receiver, TestEnv, TokenEndpoint, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The one request that reached `path`, once it has.
async fn one_request(receiver: &Receiver, path: &str) -> Received {
    wait_until(WAIT, &format!("a request to /{path}"), || async {
        receiver.requests_to(path).into_iter().next()
    })
    .await
}

fn field_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_reaches_the_receiver_field_by_field() {
    let env = TestEnv::with(&[("HERALD__WORKER__SPLUNK_HOST", "herald-eu-1")]).await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    let mut hooks = Vec::new();
    for (name, extra) in [
        ("json", json!({})),
        ("splunk", json!({"format": "splunk_hec"})),
        ("datadog", json!({"format": "datadog"})),
        ("elastic", json!({"format": "elastic"})),
        (
            "custom",
            json!({"format": "custom", "template":
                r#"{"summary": "{{ type }} on {{ data.host }}", "level": {{ severity | tojson }}, "value": {{ data.value }}, "at": {{ timestamp | tojson }}, "ids": [{{ id | tojson }}, {{ webhook_id | tojson }}, {{ tenant_id | tojson }}]}"#}),
        ),
        (
            "text",
            json!({"format": "custom", "content_type": "text/plain; charset=utf-8",
                   "template": "{{ type }}: {{ data.host }} at {{ data.value }}%"}),
        ),
    ] {
        let mut body = json!({"name": name, "url": receiver.url(name), "event_types": ["alert.*"]});
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        let hook = api.create_webhook(&token, body).await;
        assert_eq!(
            hook["format"],
            extra.get("format").cloned().unwrap_or(json!("json"))
        );
        hooks.push((name, hook));
    }
    let id = api
        .send_event(
            &token,
            json!({"event_type": "alert.cpu", "severity": "critical", "source": "monitor",
                   "occurred_at": "2026-03-04T05:06:07.089Z",
                   "data": {"host": "db1", "value": 97}}),
        )
        .await;
    let hook_id = |name: &str| {
        hooks
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h["id"].as_str().expect("an id").to_owned())
            .expect("the webhook")
    };
    let secret = |name: &str| {
        hooks
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h["secret"].as_str().expect("a secret").to_owned())
            .expect("the webhook")
    };

    let r = one_request(&receiver, "json").await;
    assert!(r.signatures_valid(&secret("json")));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"id": id, "type": "alert.cpu", "timestamp": "2026-03-04T05:06:07.089Z",
               "tenant_id": tenant, "webhook_id": hook_id("json"), "severity": "critical",
               "source": "monitor", "data": {"host": "db1", "value": 97}})
    );

    let r = one_request(&receiver, "splunk").await;
    assert!(r.signatures_valid(&secret("splunk")));
    let v = r.json();
    assert_eq!(v["time"], json!(1_772_600_767.089));
    assert_eq!(v["host"], "herald-eu-1");
    assert_eq!(v["source"], "monitor");
    assert_eq!(v["sourcetype"], "herald:alert.cpu");
    assert_eq!(
        v["event"],
        json!({"id": id, "type": "alert.cpu", "tenant_id": tenant,
               "webhook_id": hook_id("splunk"), "severity": "critical", "source": "monitor",
               "data": {"host": "db1", "value": 97}})
    );

    let r = one_request(&receiver, "datadog").await;
    assert!(r.signatures_valid(&secret("datadog")));
    let v = r.json();
    assert_eq!(v["title"], "alert.cpu");
    assert_eq!(
        serde_json::from_str::<Value>(v["text"].as_str().expect("text")).expect("the data"),
        json!({"host": "db1", "value": 97})
    );
    assert_eq!(v["alert_type"], "error");
    assert_eq!(v["source_type_name"], "herald");
    assert_eq!(v["date_happened"], 1_772_600_767);
    let tags: Vec<&str> = v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tags.contains(&"event_type:alert.cpu"), "{tags:?}");
    assert!(tags.contains(&"severity:critical"), "{tags:?}");
    assert!(tags.contains(&"source:monitor"), "{tags:?}");

    let r = one_request(&receiver, "elastic").await;
    assert!(r.signatures_valid(&secret("elastic")));
    let v = r.json();
    assert_eq!(v["@timestamp"], "2026-03-04T05:06:07.089Z");
    assert_eq!(v["event"]["id"], id.as_str());
    assert_eq!(v["event"]["kind"], "event");
    assert_eq!(v["event"]["category"], json!(["api"]));
    assert_eq!(v["event"]["type"], json!(["error"]));
    assert_eq!(v["event"]["action"], "alert.cpu");
    assert_eq!(v["event"]["provider"], "monitor");
    assert_eq!(v["event"]["severity"], 2);
    assert_eq!(v["log"]["level"], "critical");
    assert_eq!(v["message"], format!("alert.cpu {id}"));
    assert_eq!(v["herald"]["data"], json!({"host": "db1", "value": 97}));
    assert_eq!(v["labels"]["webhook_id"], hook_id("elastic"));

    let r = one_request(&receiver, "custom").await;
    assert!(r.signatures_valid(&secret("custom")));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"summary": "alert.cpu on db1", "level": "critical", "value": 97,
               "at": "2026-03-04T05:06:07.089Z",
               "ids": [id, hook_id("custom"), tenant]})
    );

    let r = one_request(&receiver, "text").await;
    assert!(r.signatures_valid(&secret("text")));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(&r.body[..], b"alert.cpu: db1 at 97%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_does_not_parse_or_render_json_is_refused() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let create = |body: Value| {
        let api = &api;
        let token = token.clone();
        async move {
            api.call(Method::POST, "/v1/webhooks", Some(&token), Some(&body))
                .await
        }
    };
    let url = "http://127.0.0.1:9/h";
    for (body, field, detail) in [
        (
            json!({"name": "a", "url": url, "format": "custom", "template": "{{ data.x "}),
            "template",
            "syntax error",
        ),
        (
            json!({"name": "a", "url": url, "format": "custom", "template": "{\"x\": {{ data.x }}"}),
            "template",
            "invalid JSON",
        ),
        (
            json!({"name": "a", "url": url, "format": "custom"}),
            "template",
            "is required",
        ),
        (
            json!({"name": "a", "url": url, "template": "{}"}),
            "template",
            "only with format",
        ),
        (
            json!({"name": "a", "url": url, "format": "custom", "template": "{}", "content_type": "nonsense"}),
            "content_type",
            "media type",
        ),
    ] {
        let (status, problem) = create(body.clone()).await;
        assert_eq!(status, 422, "{body} -> {problem}");
        assert!(
            field_errors(&problem).contains(&field.to_owned()),
            "{problem}"
        );
        assert!(problem.to_string().contains(detail), "{detail}: {problem}");
    }
    let (status, problem) = create(json!({"name": "a", "url": url, "format": "xml"})).await;
    assert_eq!(status, 422, "{problem}");

    // A good template is kept; patching in a broken one is refused and
    // leaves it as it was.
    let (status, hook) = create(json!({"name": "a", "url": url, "format": "custom",
        "template": "{\"t\": {{ type | tojson }}}"}))
    .await;
    assert_eq!(status, 201, "{hook}");
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().expect("id"));
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"template": "{% if %}"})),
        )
        .await;
    assert_eq!(status, 422);
    let (_, read) = api.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(read["template"], "{\"t\": {{ type | tojson }}}");
    // Back to json drops the template.
    let (status, read) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"format": "json"})),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["template"], Value::Null);
    assert_eq!(read["content_type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_kind_reaches_the_receiver_and_is_never_answered() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let credentials = [
        "key-1-secret",
        "key-2-secret",
        "tok-3-secret",
        "pw-4-secret",
    ];
    let kinds = [
        ("apikey", json!({"type": "api_key", "key": credentials[0]})),
        (
            "apikey-named",
            json!({"type": "api_key", "header": "DD-API-KEY", "key": credentials[1]}),
        ),
        ("bearer", json!({"type": "bearer", "token": credentials[2]})),
        (
            "basic",
            json!({"type": "basic", "username": "herald", "password": credentials[3]}),
        ),
    ];
    for (name, auth) in &kinds {
        let hook = api
            .create_webhook(
                &token,
                json!({"name": name, "url": receiver.url(name), "auth": auth}),
            )
            .await;
        let shown = hook.to_string();
        assert_eq!(hook["auth"], json!({"type": auth["type"]}), "{shown}");
        for c in credentials {
            assert!(!shown.contains(c), "a credential in the answer: {shown}");
        }
    }
    let plain = api
        .create_webhook(
            &token,
            json!({"name": "plain", "url": receiver.url("plain")}),
        )
        .await;
    assert_eq!(plain["auth"], Value::Null);
    let (_, list) = api
        .call(Method::GET, "/v1/webhooks", Some(&token), None)
        .await;
    for c in credentials {
        assert!(!list.to_string().contains(c), "a credential in the list");
    }

    // Sealed at rest: no credential in any stored column.
    let client = env.db().await;
    for row in client
        .query(
            "SELECT coalesce(auth_sealed, ''), options::text, headers::text FROM webhooks",
            &[],
        )
        .await
        .expect("query")
    {
        let sealed: Vec<u8> = row.get(0);
        let stored = format!(
            "{} {} {}",
            String::from_utf8_lossy(&sealed),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        );
        for c in credentials {
            assert!(!stored.contains(c), "a credential stored in clear");
        }
    }
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let r = one_request(&receiver, "apikey").await;
    assert_eq!(r.header("x-api-key"), Some(credentials[0]));
    let r = one_request(&receiver, "apikey-named").await;
    assert_eq!(r.header("dd-api-key"), Some(credentials[1]));
    assert_eq!(r.header("x-api-key"), None);
    let r = one_request(&receiver, "bearer").await;
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {}", credentials[2]).as_str())
    );
    let r = one_request(&receiver, "basic").await;
    // base64("herald:pw-4-secret")
    assert_eq!(
        r.header("authorization"),
        Some("Basic aGVyYWxkOnB3LTQtc2VjcmV0")
    );
    // A webhook without credentials gets none of the others'.
    let r = one_request(&receiver, "plain").await;
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-api-key"), None);
    assert_eq!(r.header("dd-api-key"), None);
    let seen = format!("{:?} {:?}", r.headers, String::from_utf8_lossy(&r.body));
    for c in credentials {
        assert!(!seen.contains(c), "another webhook's credential leaked");
    }

    // Custom headers cannot override the authentication's header; auth can
    // be removed with null.
    let path = format!("/v1/webhooks/{}", plain["id"].as_str().expect("id"));
    let (status, problem) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&token),
            Some(&json!({"name": "x", "url": receiver.url("x"),
                "auth": {"type": "bearer", "token": "t"}, "headers": {"Authorization": "Bearer mine"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_errors(&problem).contains(&"headers.Authorization".to_owned()));
    let (status, problem) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"auth": {"type": "basic", "username": "", "password": "p"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_errors(&problem).contains(&"auth.username".to_owned()));
    let bearer = api
        .create_webhook(
            &token,
            json!({"name": "removed", "url": receiver.url("removed"),
                   "auth": {"type": "bearer", "token": "gone"}}),
        )
        .await;
    let (status, read) = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{}", bearer["id"].as_str().expect("id")),
            Some(&token),
            Some(&json!({"auth": null})),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["auth"], Value::Null);
}

async fn bearer_of(receiver: &Receiver, event_id: &str) -> Vec<String> {
    wait_until(WAIT, "the delivery", || async {
        let seen: Vec<String> = receiver
            .requests()
            .into_iter()
            .filter(|r| r.header("webhook-id") == Some(event_id))
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect();
        (!seen.is_empty()).then_some(seen)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_cached_refreshed_before_expiry_and_fetched_again_after_401() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    // 62 s: refreshed a minute early, so after about 2 s.
    let (tokens, token_url) = TokenEndpoint::start(62).await;
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "o", "url": receiver.url("o"), "auth": {"type": "oauth2",
                "token_url": token_url, "client_id": "herald client", "client_secret": "s3cr:t",
                "scope": "events:write"}}),
        )
        .await;
    assert_eq!(hook["auth"], json!({"type": "oauth2"}));
    assert!(!hook.to_string().contains("s3cr:t"));

    let first = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    assert_eq!(bearer_of(&receiver, &first).await, ["Bearer tok-1"]);
    let second = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    assert_eq!(
        bearer_of(&receiver, &second).await,
        ["Bearer tok-1"],
        "the token is cached"
    );
    assert_eq!(tokens.count(), 1);
    {
        let requests = tokens.requests();
        let (auth, body) = &requests[0];
        // client_secret_basic, both parts form-encoded first.
        assert_eq!(
            auth.as_deref(),
            Some("Basic aGVyYWxkK2NsaWVudDpzM2NyJTNBdA==")
        );
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("scope=events%3Awrite"), "{body}");
    }

    // Past the refresh point: a new token.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let third = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    assert_eq!(bearer_of(&receiver, &third).await, ["Bearer tok-2"]);

    // The endpoint refuses the token: one new token and the same attempt
    // goes again.
    receiver.script(vec![(401, Vec::new())]);
    let fourth = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let seen = wait_until(WAIT, "the resend with a new token", || async {
        let seen = bearer_of(&receiver, &fourth).await;
        (seen.len() == 2).then_some(seen)
    })
    .await;
    assert_eq!(seen, ["Bearer tok-2", "Bearer tok-3"]);
    assert_eq!(tokens.count(), 3);
    let client = env.db().await;
    let row = wait_until(WAIT, "the delivery recorded", || async {
        client
            .query_opt(
                "SELECT d.status, (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id)
                 FROM deliveries d WHERE d.event_id = $1 AND d.status = 'success'",
                &[&fourth],
            )
            .await
            .expect("query")
    })
    .await;
    assert_eq!(row.get::<_, i64>(1), 1, "one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_signatures_verify_with_the_public_key_and_schemes_switch_off() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let asym = api
        .create_webhook(
            &token,
            json!({"name": "asym", "url": receiver.url("asym"),
                   "signing": {"ed25519": true, "standard": false, "simple_header": "X-Sig"}}),
        )
        .await;
    let public_key = asym["signing"]["public_key"]
        .as_str()
        .expect("a public key")
        .to_owned();
    assert!(public_key.starts_with("whpk_"));
    let read = read_webhook(&api, &token, &asym).await;
    assert_eq!(read["signing"]["public_key"], public_key.as_str());
    let simple_off = api
        .create_webhook(
            &token,
            json!({"name": "hmac-only", "url": receiver.url("hmac"), "signing": {"simple": false}}),
        )
        .await;

    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {"n": 1}}))
        .await;
    let r = one_request(&receiver, "asym").await;
    let ts: i64 = r
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    let sig = r.header("webhook-signature").expect("a signature");
    assert!(
        sig.starts_with("v1a,") && !sig.contains(' '),
        "only v1a: {sig}"
    );
    assert!(verify_v1a(&public_key, &id, ts, &r.body, sig));
    assert!(!verify_v1a(&public_key, &id, ts + 1, &r.body, sig));
    let secret = WebhookSecret::parse(asym["secret"].as_str().expect("secret")).expect("parses");
    assert!(secret.verify_sha256_hex(&r.body, r.header("x-sig").expect("the renamed header")));
    assert_eq!(r.header("x-webhook-signature"), None);

    let r = one_request(&receiver, "hmac").await;
    let secret =
        WebhookSecret::parse(simple_off["secret"].as_str().expect("secret")).expect("parses");
    let ts: i64 = r
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    assert!(secret.verify_v1(&id, ts, &r.body, r.header("webhook-signature").expect("v1")));
    assert_eq!(r.header("x-webhook-signature"), None);

    // Turning ed25519 off and on again keeps the key; every scheme off is
    // refused.
    let path = format!("/v1/webhooks/{}", asym["id"].as_str().expect("id"));
    let (status, off) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"signing": {"ed25519": false, "standard": true}})),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["signing"]["public_key"], Value::Null);
    let (_, on) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"signing": {"ed25519": true}})),
        )
        .await;
    assert_eq!(on["signing"]["public_key"], public_key.as_str());
    let (status, problem) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"signing": {"ed25519": false, "standard": false, "simple": false}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_errors(&problem).contains(&"signing".to_owned()));
    // Custom headers cannot take the renamed signature header.
    let (status, problem) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"headers": {"X-Sig": "forged"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    // Nor can an API key's header.
    let (status, problem) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"auth": {"type": "api_key", "header": "x-sig", "key": "k"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_errors(&problem).contains(&"auth.header".to_owned()));
}

async fn read_webhook(api: &ApiHandle, token: &str, hook: &Value) -> Value {
    let (status, read) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{}", hook["id"].as_str().expect("id")),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{read}");
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ssl_false_reaches_a_self_signed_endpoint_and_true_refuses_it() {
    let env = TestEnv::with(&[("HERALD__SECURITY__ALLOW_INSECURE_TLS", "true")]).await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start_tls().await;
    assert!(receiver.url("x").starts_with("https://"));
    let (_, token) = api.create_tenant("acme").await;
    let insecure = api
        .create_webhook(
            &token,
            json!({"name": "insecure", "url": receiver.url("insecure"), "verify_ssl": false}),
        )
        .await;
    assert_eq!(insecure["verify_ssl"], false);
    let strict = api
        .create_webhook(
            &token,
            json!({"name": "strict", "url": receiver.url("strict"), "retry_attempts": 0}),
        )
        .await;
    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let r = one_request(&receiver, "insecure").await;
    assert_eq!(r.header("webhook-id"), Some(id.as_str()));
    assert!(r.signatures_valid(insecure["secret"].as_str().expect("secret")));

    let client = env.db().await;
    let error: String = wait_until(WAIT, "the strict delivery failed", || async {
        client
            .query_opt(
                "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE d.webhook_id = $1::text::uuid AND d.status = 'failed'",
                &[&strict["id"].as_str().expect("id")],
            )
            .await
            .expect("query")
            .map(|row| row.get(0))
    })
    .await;
    assert!(error.contains("certificate"), "{error}");
    assert!(receiver.requests_to("strict").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_stay_with_their_webhook_and_credentials() {
    let env = TestEnv::new().await;
    let (api, _d, worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (first_tokens, first_url) = TokenEndpoint::start_with(3600, "first").await;
    let (second_tokens, second_url) = TokenEndpoint::start_with(3600, "second").await;
    let (_, token) = api.create_tenant("acme").await;
    let oauth2 = |url: &str, secret: &str| json!({"type": "oauth2", "token_url": url, "client_id": "c", "client_secret": secret});
    let a = api
        .create_webhook(
            &token,
            json!({"name": "a", "url": receiver.url("a"), "auth": oauth2(&first_url, "one")}),
        )
        .await;
    api.create_webhook(
        &token,
        json!({"name": "b", "url": receiver.url("b"), "auth": oauth2(&second_url, "two")}),
    )
    .await;
    api.create_webhook(&token, json!({"name": "none", "url": receiver.url("none")}))
        .await;
    let seen = |path: &'static str, n: usize| {
        let receiver = &receiver;
        async move {
            wait_until(WAIT, &format!("{n} requests to /{path}"), || async {
                let got: Vec<Option<String>> = receiver
                    .requests_to(path)
                    .iter()
                    .map(|r| r.header("authorization").map(str::to_owned))
                    .collect();
                (got.len() == n).then_some(got)
            })
            .await
        }
    };
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    assert_eq!(seen("a", 1).await, [Some("Bearer first-1".to_owned())]);
    assert_eq!(seen("b", 1).await, [Some("Bearer second-1".to_owned())]);
    assert_eq!(seen("none", 1).await, [None]);

    // New credentials: a new token, though the old one has not expired.
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{}", a["id"].as_str().expect("id")),
            Some(&token),
            Some(&json!({"auth": oauth2(&first_url, "rotated")})),
        )
        .await;
    assert_eq!(status, 200);
    // Webhook changes reach the workers within 2 seconds.
    env.wait_config_seen(&[&worker]).await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    assert_eq!(
        seen("a", 2).await[1],
        Some("Bearer first-2".to_owned()),
        "fetched again with the new secret"
    );
    assert_eq!(seen("b", 2).await[1], Some("Bearer second-1".to_owned()));
    assert_eq!(first_tokens.count(), 2);
    assert_eq!(second_tokens.count(), 1);
    assert!(
        first_tokens.requests()[1]
            .0
            .as_deref()
            .is_some_and(|h| h.ends_with(&base64_of("c:rotated")))
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
