//! The management API: auth, tenants and tokens, webhook CRUD and
//! validation, and what bad input gets back.

use herald_testkit::{ADMIN_TOKEN, TestEnv};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_every_call_to_one_tenant() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;

    let (status, body) = api.call(Method::GET, "/v1/webhooks", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], 401);
    let (status, _) = api
        .call(Method::GET, "/v1/webhooks", Some("hrld_nope"), None)
        .await;
    assert_eq!(status, 401);
    // Only the admin creates tenants.
    let (a_id, a) = api.create_tenant("a").await;
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&a),
            Some(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 403);

    let (_, b) = api.create_tenant("b").await;
    let hook = api
        .create_webhook(&a, json!({"name": "h", "url": "http://127.0.0.1:1/x"}))
        .await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(api.call(Method::GET, &path, Some(&a), None).await.0, 200);
    // Another tenant's webhook does not exist for b.
    assert_eq!(api.call(Method::GET, &path, Some(&b), None).await.0, 404);
    assert_eq!(api.call(Method::DELETE, &path, Some(&b), None).await.0, 404);
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(&b),
            Some(&json!({"name": "stolen"})),
        )
        .await;
    assert_eq!(status, 404, "another tenant cannot change it");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{path}/recover"),
            Some(&b),
            Some(&json!({"since": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 404, "nor recover its deliveries");
    let (_, unchanged) = api.call(Method::GET, &path, Some(&a), None).await;
    assert_eq!(unchanged["name"], "h");
    let (_, list) = api.call(Method::GET, "/v1/webhooks", Some(&b), None).await;
    assert_eq!(list["total"], 0);

    // A second token for tenant a, listed without its secret, then revoked.
    let (status, created) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{a_id}/tokens"),
            Some(ADMIN_TOKEN),
            Some(&json!({"name": "ci"})),
        )
        .await;
    assert_eq!(status, 201);
    let second = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call(Method::GET, &path, Some(&second), None).await.0,
        200
    );
    let (_, tokens) = api.call(Method::GET, "/v1/tokens", Some(&a), None).await;
    let tokens = tokens["data"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.get("token").is_none()));
    let token_id = created["id"].as_str().unwrap();
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/v1/tokens/{token_id}"),
            Some(&b),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/v1/tokens/{token_id}"),
            Some(&a),
            None
        )
        .await
        .0,
        204
    );
    // Revocation is seen within 2 seconds.
    env.wait_config_seen(&[&api.process]).await;
    assert_eq!(
        api.call(Method::GET, &path, Some(&second), None).await.0,
        401
    );
    assert_eq!(api.call(Method::GET, &path, Some(&a), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_can_be_created_listed_read_patched_and_deleted() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;

    let created = api
        .create_webhook(
            &token,
            json!({"name": "billing", "url": "http://127.0.0.1:9/in", "events": ["invoice.*", "order.created"],
                   "headers": {"X-Env": "test"}, "timeout_seconds": 30, "max_retries": 3}),
        )
        .await;
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(
        created["event_types"],
        json!(["invoice.*", "order.created"])
    );
    // Standard Webhooks' schedule by default, its first `max_retries`
    // delays used.
    assert_eq!(created["retry_attempts"], 3);
    assert_eq!(created["retry_backoff_seconds"], 5);
    assert_eq!(
        created["retry_schedule"],
        json!(["5s", "5m", "30m", "2h", "5h", "10h", "10h"])
    );
    assert_eq!(created["jitter"], Value::Null);
    assert_eq!(created["timeout_seconds"], 30);
    assert_eq!(created["is_active"], true);
    assert_eq!(created["verify_ssl"], true);
    assert_eq!(created["delivery_success_count"], 0);
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}");

    // The secret is shown only at creation, and stored sealed.
    let (_, read) = api.call(Method::GET, &path, Some(&token), None).await;
    assert!(read.get("secret").is_none());
    let sealed: Vec<u8> = env
        .db()
        .await
        .query_one("SELECT secret_sealed FROM webhooks", &[])
        .await
        .unwrap()
        .get(0);
    let secret = created["secret"].as_str().unwrap().as_bytes();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret));

    // A given secret is kept; defaults apply.
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let second = api
        .create_webhook(
            &token,
            json!({"name": "second", "url": "http://127.0.0.1:9/2", "secret": given}),
        )
        .await;
    assert_eq!(second["secret"], given);
    assert_eq!(second["event_types"], json!(["*"]));
    assert_eq!(second["timeout_seconds"], 10);
    assert_eq!(
        second["retry_attempts"], 7,
        "the standard schedule's length"
    );

    // Names are unique within the tenant.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&token),
            Some(&json!({"name": "billing", "url": "http://127.0.0.1:9/3"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Paged list.
    for i in 0..3 {
        api.create_webhook(
            &token,
            json!({"name": format!("n{i}"), "url": "http://127.0.0.1:9/n"}),
        )
        .await;
    }
    let (_, page) = api
        .call(
            Method::GET,
            "/v1/webhooks?page=2&per_page=2",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 2);
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n0", "n1"]);

    // Partial update leaves the rest alone.
    let (status, patched) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"description": "invoices", "is_active": false})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["description"], "invoices");
    assert_eq!(patched["is_active"], false);
    assert_eq!(
        patched["event_types"],
        json!(["invoice.*", "order.created"])
    );
    // Header values are answered masked (they may hold credentials).
    assert_eq!(patched["headers"], json!({"X-Env": "****"}));
    assert_eq!(patched["timeout_seconds"], 30);

    assert_eq!(
        api.call(Method::DELETE, &path, Some(&token), None).await.0,
        204
    );
    assert_eq!(
        api.call(Method::GET, &path, Some(&token), None).await.0,
        404
    );
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&token), None).await.0,
        404
    );
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_document_never_a_500() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(&token, json!({"name": "h", "url": "http://127.0.0.1:9/x"}))
        .await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());

    let cases: Vec<(Method, String, &str, u16, Vec<&str>)> = vec![
        (
            Method::POST,
            "/v1/webhooks".into(),
            "{not json",
            400,
            vec![],
        ),
        (Method::POST, "/v1/webhooks".into(), "[1, 2]", 422, vec![]),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "timeout_seconds": "ten"}"#,
            422,
            vec!["timeout_seconds"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "timeout_seconds": 0}"#,
            422,
            vec!["timeout_seconds"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "retry_attempts": 11}"#,
            422,
            vec!["retry_attempts"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/",
                "retry_schedule": ["1m", "soon", -3, "400h", 1e300]}"#,
            422,
            vec![
                "retry_schedule[1]",
                "retry_schedule[2]",
                "retry_schedule[3]",
                "retry_schedule[4]",
            ],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "retry_schedule": []}"#,
            422,
            vec!["retry_schedule"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/",
                "retry_schedule": ["1s","1s","1s","1s","1s","1s","1s","1s","1s","1s","1s"]}"#,
            422,
            vec!["retry_schedule"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "retry_schedule": ["1m"], "jitter": true}"#,
            422,
            vec!["retry_schedule"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "retry_backoff_seconds": 0,
                "exponential_base": 0.5, "max_delay_seconds": 1e9}"#,
            422,
            vec![
                "retry_backoff_seconds",
                "exponential_base",
                "max_delay_seconds",
            ],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "retry_schedule": "1m"}"#,
            422,
            vec!["retry_schedule"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "not a url"}"#,
            422,
            vec!["url"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "ftp://example.com/"}"#,
            422,
            vec!["url"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            // No name is fine (the URL's host names it); no name and no
            // URL is not.
            r#"{"description": "nameless"}"#,
            422,
            vec!["name", "url"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "event_types": ["a..b", "ok.*", "*.x"]}"#,
            422,
            vec!["event_types[0]", "event_types[2]"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "event_types": []}"#,
            422,
            vec!["event_types"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "secret": "plain"}"#,
            422,
            vec!["secret"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "headers": {"webhook-id": "x"}}"#,
            422,
            vec!["headers.webhook-id"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "verify_ssl": false}"#,
            422,
            vec!["verify_ssl"],
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            r#"{"name": "x", "url": "http://127.0.0.1:9/", "colour": "red"}"#,
            422,
            vec![],
        ),
        (
            Method::PATCH,
            hook_path.clone(),
            r#"{"timeout_seconds": 301}"#,
            422,
            vec!["timeout_seconds"],
        ),
        (
            Method::PATCH,
            hook_path.clone(),
            r#"{"url": 5}"#,
            422,
            vec!["url"],
        ),
        (
            Method::GET,
            "/v1/webhooks/not-a-uuid".into(),
            "",
            404,
            vec![],
        ),
        (
            Method::GET,
            "/v1/webhooks?per_page=1000".into(),
            "",
            422,
            vec!["per_page"],
        ),
        (Method::GET, "/v1/webhooks?page=abc".into(), "", 422, vec![]),
        (Method::POST, "/v1/events".into(), "{", 400, vec![]),
        (
            Method::POST,
            "/v1/events".into(),
            r#"{"data": {}}"#,
            422,
            vec![],
        ),
        (
            Method::POST,
            "/v1/events".into(),
            r#"{"event_type": "a b", "data": {}}"#,
            422,
            vec!["event_type"],
        ),
        (
            Method::POST,
            "/v1/events".into(),
            r#"{"event_type": "a.b", "data": {}, "id": "no spaces allowed"}"#,
            422,
            vec!["id"],
        ),
        (
            Method::POST,
            "/v1/events".into(),
            r#"{"event_type": "a.b", "data": {}, "severity": "loud"}"#,
            422,
            vec!["severity"],
        ),
        (
            Method::POST,
            "/v1/events".into(),
            r#"{"event_type": "a.b", "data": {}, "occurred_at": "yesterday"}"#,
            422,
            vec!["occurred_at"],
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            r#"{"events": []}"#,
            422,
            vec!["events"],
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            r#"{"events": [{"event_type": "a.b", "data": 1}, {"event_type": "", "data": 2}]}"#,
            422,
            vec!["events[1].event_type"],
        ),
        (Method::POST, "/v1/nowhere".into(), "{}", 404, vec![]),
    ];
    for (method, path, body, status, expected_fields) in cases {
        let (got, content_type, problem) = api.call_raw(method.clone(), &path, &token, body).await;
        assert_eq!(got.as_u16(), status, "{method} {path} {body}: {problem}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{method} {path} {body}"
        );
        assert_eq!(problem["status"], status, "{problem}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
        let got_fields = fields(&problem);
        for f in expected_fields {
            assert!(
                got_fields.iter().any(|g| g == f),
                "{method} {path} {body}: {f} in {got_fields:?}"
            );
        }
    }

    // Too large: one event over the limit, and a batch over 1,000 events.
    let big = "x".repeat(env.settings.api.max_event_bytes + 10);
    let (status, content_type, _) = api
        .call_raw(
            Method::POST,
            "/v1/events",
            &token,
            &format!(r#"{{"event_type": "a.b", "data": "{big}"}}"#),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let events: Vec<Value> = (0..1001)
        .map(|_| json!({"event_type": "a.b", "data": {}}))
        .collect();
    let (status, problem) = api
        .call(
            Method::POST,
            "/v1/events/batch",
            Some(&token),
            Some(&json!({"events": events})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    // Nothing invalid was published.
    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_accepted_whole_with_ids_in_order() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let _dispatcher = env.start_dispatcher().await;
    let (_, token) = api.create_tenant("acme").await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/events/batch",
            Some(&token),
            Some(&json!({"events": [
                {"event_type": "a.b", "data": {"n": 0}, "id": "first"},
                {"event_type": "a.c", "data": {"n": 1}},
                {"event_type": "a.d", "data": {"n": 2}, "id": "third"},
            ]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], "first");
    assert_eq!(ids[2], "third");
    let generated = ids[1].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(generated).unwrap().get_version_num(),
        7
    );
    herald_testkit::wait_until(
        std::time::Duration::from_secs(20),
        "three stored events",
        || async { (env.count("SELECT count(*) FROM events").await == 3).then_some(()) },
    )
    .await;
    let types: i64 = env
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE id = $1 AND event_type = 'a.c'",
            &[&generated],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(types, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_show_when_they_were_last_used() {
    let env = TestEnv::with(&[("HERALD__API__TOKEN_USE_FLUSH_SECONDS", "1")]).await;
    let api = env.start_api().await;
    let (tenant, used) = api.create_tenant("acme").await;
    let (status, idle) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{tenant}/tokens"),
            Some(ADMIN_TOKEN),
            Some(&json!({"name": "idle"})),
        )
        .await;
    assert_eq!(status, 201);
    assert!(idle["last_used_at"].is_null());
    assert_eq!(
        api.call(Method::GET, "/v1/webhooks", Some(&used), None)
            .await
            .0,
        200
    );
    let tokens = herald_testkit::wait_until(
        std::time::Duration::from_secs(20),
        "last use recorded",
        || async {
            let (_, list) = api
                .call(
                    Method::GET,
                    &format!("/v1/tokens?tenant_id={tenant}"),
                    Some(ADMIN_TOKEN),
                    None,
                )
                .await;
            let tokens = list["data"].as_array().cloned().unwrap_or_default();
            tokens
                .iter()
                .any(|t| t["name"] == "default" && t["last_used_at"].is_string())
                .then_some(tokens)
        },
    )
    .await;
    let idle = tokens.iter().find(|t| t["name"] == "idle").unwrap();
    assert!(
        idle["last_used_at"].is_null(),
        "an unused token has no last use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_past_its_rate_limit_is_told_when_to_come_back() {
    let env = TestEnv::with(&[("HERALD__API__RATE_LIMIT_PER_SECOND", "5")]).await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let mut limited = None;
    for _ in 0..20 {
        let resp = api
            .http
            .get(format!("{}/v1/webhooks", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("a burst past 5/s is limited");
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 429);
    // Another tenant is not affected, and the limited one may come back.
    assert_eq!(
        api.call(Method::GET, "/v1/webhooks", Some(&other), None)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        api.call(Method::GET, "/v1/webhooks", Some(&token), None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_stored_without_tls_checks_stays_editable_after_the_server_forbids_them() {
    // Made when security.allow_insecure_tls was on; the server now refuses
    // turning verification off, but not every other change to it.
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(&token, json!({"name": "old", "url": "http://127.0.0.1:9/"}))
        .await;
    env.db()
        .await
        .execute("UPDATE webhooks SET verify_ssl = false", &[])
        .await
        .unwrap();
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let (status, body) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verify_ssl"], false);
    // Asking for it is still refused.
    let (status, body) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"verify_ssl": false})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "verify_ssl");
}
