//! The event-type catalog: its API and what bad schemas get back, and what
//! each `catalog_mode` does with events it does not describe — over HTTP
//! (422 or warnings) and over AMQP (parked or counted).

use std::time::Duration;

use herald_testkit::{TestEnv, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn invoice_paid() -> Value {
    json!({
        "name": "invoice.paid",
        "description": "An invoice was paid in full.",
        "group": "billing",
        "schema": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}
            }
        },
        "examples": [{"amount": 1250, "currency": "EUR"}]
    })
}

/// The fields a 422 names.
fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect()
}

/// A counter's value in a process's `/metrics` (0 when absent).
async fn metric(port: u16, line_start: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_refuses_bad_schemas_and_names_the_field() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let create = |body: Value| {
        let api = &api;
        let token = token.clone();
        async move {
            api.call(Method::POST, "/v1/event-types", Some(&token), Some(&body))
                .await
        }
    };

    let (status, created) = create(invoice_paid()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "invoice.paid");
    assert_eq!(created["group"], "billing");
    assert_eq!(created["examples"][0]["currency"], "EUR");
    let (status, _) = create(invoice_paid()).await;
    assert_eq!(status, StatusCode::CONFLICT, "a name is catalogued once");

    // Hostile and broken definitions, each refused naming its field.
    let cases = [
        (json!({"name": "bad name!"}), "name"),
        (json!({"name": "webhook.disabled"}), "name"),
        (
            json!({"name": "a.b", "schema": {"type": "nonsense"}}),
            "schema",
        ),
        (
            json!({"name": "a.b", "schema": {"$ref": "http://169.254.169.254/latest"}}),
            "schema",
        ),
        (
            json!({"name": "a.b", "schema": {"$ref": "file:///etc/passwd"}}),
            "schema",
        ),
        (
            json!({"name": "a.b", "schema": {"type": "string", "pattern": "(x)\\1"}}),
            "schema",
        ),
        (
            json!({"name": "a.b", "schema": {"properties": {"n": {"type": "integer"}}},
                   "examples": [{"n": 1}, {"n": "one"}]}),
            "examples[1]/n",
        ),
        (
            json!({"name": "a.b", "examples": (0..11).map(|i| json!(i)).collect::<Vec<_>>()}),
            "examples",
        ),
        (json!({"name": "a.b", "group": ""}), "group"),
        (
            json!({"name": "a.b", "description": "d".repeat(5000)}),
            "description",
        ),
        (
            json!({"name": "a.b", "examples": [{"text": "nul \u{0000} byte"}]}),
            "examples[0].text",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = create(body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert!(
            fields(&problem).iter().any(|f| f == field),
            "{body}: expected {field} in {problem}"
        );
    }
    let (status, _) = create(json!({"name": "a.b", "unknown": 1})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );

    // Read, change, remove; another tenant sees none of it.
    let (status, list) = api
        .call(Method::GET, "/v1/event-types", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, theirs) = api
        .call(Method::GET, "/v1/event-types", Some(&other), None)
        .await;
    assert_eq!(theirs["data"], json!([]));
    let path = "/v1/event-types/invoice.paid";
    assert_eq!(
        api.call(Method::GET, path, Some(&other), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::DELETE, path, Some(&other), None).await.0,
        StatusCode::NOT_FOUND
    );
    // A change whose example no longer passes the schema is refused whole.
    let (status, problem) = api
        .call(
            Method::PATCH,
            path,
            Some(&token),
            Some(&json!({"examples": [{"amount": -5, "currency": "EUR"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["examples[0]/amount"]);
    let (status, patched) = api
        .call(
            Method::PATCH,
            path,
            Some(&token),
            Some(&json!({"deprecated": true, "group": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["deprecated"], true);
    assert_eq!(patched["group"], Value::Null);
    assert_eq!(
        patched["schema"]["required"],
        json!(["amount", "currency"]),
        "what the patch did not name stays"
    );
    let (status, catalog) = api
        .call(Method::GET, "/v1/catalog", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalog, json!({"mode": "open", "event_types": 1}));
    let (status, _) = api
        .call(
            Method::PATCH,
            "/v1/catalog",
            Some(&token),
            Some(&json!({"mode": "paranoid"})),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(
        api.call(Method::DELETE, path, Some(&token), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::GET, path, Some(&token), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_tenant_refuses_over_http_and_parks_over_amqp() {
    let env = TestEnv::new().await;
    let receiver = herald_testkit::Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (tenant, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("/hook"), "event_types": ["invoice.*"]}),
    )
    .await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/event-types",
            Some(&token),
            Some(&invoice_paid()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/catalog",
            Some(&token),
            Some(&json!({"mode": "strict"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "strict");
    env.wait_config_seen(&[&api.process, &dispatcher]).await;

    // Over HTTP: a payload that fails its schema, and an unknown type.
    let send = |body: Value| {
        let (api, token) = (&api, &token);
        async move {
            api.call(Method::POST, "/v1/events", Some(token), Some(&body))
                .await
        }
    };
    let (status, problem) = send(json!({"event_type": "invoice.paid",
        "data": {"amount": -1, "currency": "EUR"}}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["data/amount"]);
    let (status, problem) =
        send(json!({"event_type": "invoice.paid", "data": {"amount": 3}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&problem),
        ["data"],
        "a missing property is the object's fault"
    );
    let (status, problem) = send(json!({"event_type": "invoice.voided", "data": {}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["event_type"]);
    // A batch with one bad event is refused whole, the event named.
    let (status, problem) = api
        .call(
            Method::POST,
            "/v1/events/batch",
            Some(&token),
            Some(&json!({"events": [
                {"event_type": "invoice.paid", "data": {"amount": 1, "currency": "EUR"}},
                {"event_type": "invoice.paid", "data": {"amount": 1, "currency": "euro"}}
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["events[1].data/currency"]);
    // A pattern that would backtrack for ever elsewhere answers at once.
    let (status, _) = send(json!({"event_type": "invoice.paid",
        "data": {"amount": 1, "currency": format!("{}!", "A".repeat(100_000))}}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // What fits goes through.
    let (status, accepted) = send(json!({"event_type": "invoice.paid", "id": "good-http",
        "data": {"amount": 10, "currency": "EUR"}}))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert!(accepted.get("warnings").is_none(), "{accepted}");

    // Over AMQP: the dispatcher parks what the catalog refuses, with why.
    let (_conn, ch) = env.amqp().await;
    let event = |id: &str, event_type: &str, data: Value| {
        json!({"tenant_id": tenant, "id": id, "event_type": event_type, "data": data}).to_string()
    };
    env.publish_event(
        &ch,
        "invoice.paid",
        event(
            "bad-amqp",
            "invoice.paid",
            json!({"amount": "ten", "currency": "EUR"}),
        )
        .as_bytes(),
    )
    .await;
    env.publish_event(
        &ch,
        "invoice.voided",
        event("unknown-amqp", "invoice.voided", json!({})).as_bytes(),
    )
    .await;
    env.publish_event(
        &ch,
        "invoice.paid",
        event(
            "good-amqp",
            "invoice.paid",
            json!({"amount": 2, "currency": "USD"}),
        )
        .as_bytes(),
    )
    .await;
    // A value that fails its schema and would make an enormous reason.
    env.publish_event(
        &ch,
        "invoice.paid",
        event(
            "long-amqp",
            "invoice.paid",
            json!({"amount": 1, "currency": "A".repeat(500_000)}),
        )
        .as_bytes(),
    )
    .await;
    let parked = env
        .take_parked(&ch, &env.topology.invalid_queue(), 3, WAIT)
        .await;
    let reason = |id: &str| {
        parked
            .iter()
            .find(|p| String::from_utf8_lossy(&p.body).contains(id))
            .map(|p| p.reason.clone())
            .unwrap_or_else(|| panic!("{id} parked"))
    };
    assert!(
        reason("bad-amqp").contains("data/amount"),
        "{}",
        reason("bad-amqp")
    );
    let long = reason("long-amqp");
    assert!(long.contains("data/currency"), "{}", &long[..200]);
    assert!(
        long.len() < 4096,
        "the reason is bounded: {} bytes",
        long.len()
    );
    assert!(
        reason("unknown-amqp").contains("event_type"),
        "{}",
        reason("unknown-amqp")
    );

    // Exactly the two good events reach the endpoint.
    let delivered = wait_until(WAIT, "both good events delivered", || async {
        let r = receiver.requests_to("/hook");
        (r.len() >= 2).then_some(r)
    })
    .await;
    let mut ids: Vec<String> = delivered
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["good-amqp", "good-http"]);
    assert!(
        metric(
            dispatcher.port,
            "herald_events_off_catalog_total{finding=\"schema\",mode=\"strict\"} "
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            api.process.port,
            "herald_events_off_catalog_total{finding=\"unknown_type\",mode=\"strict\"} "
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_tenant_accepts_and_says_what_is_wrong() {
    let env = TestEnv::new().await;
    let receiver = herald_testkit::Receiver::start().await;
    let (api, dispatcher, _worker) = env.start_all().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("/hook"), "event_types": ["*"]}),
    )
    .await;
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/event-types",
            Some(&token),
            Some(&invoice_paid()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .call(
            Method::PATCH,
            "/v1/catalog",
            Some(&token),
            Some(&json!({"mode": "warn"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    env.wait_config_seen(&[&api.process, &dispatcher]).await;

    let (status, accepted) = api
        .call(
            Method::POST,
            "/v1/events/batch",
            Some(&token),
            Some(&json!({"events": [
                {"event_type": "invoice.paid", "id": "w-1", "data": {"amount": "lots", "currency": "EUR"}},
                {"event_type": "order.created", "id": "w-2", "data": {}},
                {"event_type": "invoice.paid", "id": "w-3", "data": {"amount": 1, "currency": "EUR"}}
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(
        fields(&json!({"errors": accepted["warnings"]})),
        ["events[0].data/amount", "events[1].event_type"]
    );
    // All three are delivered.
    wait_until(WAIT, "the three events delivered", || async {
        (receiver.requests_to("/hook").len() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        metric(
            api.process.port,
            "herald_events_off_catalog_total{finding=\"schema\",mode=\"warn\"} "
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            api.process.port,
            "herald_events_off_catalog_total{finding=\"unknown_type\",mode=\"warn\"} "
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_test_calls_follow_the_catalog() {
    let env = TestEnv::new().await;
    let receiver = herald_testkit::Receiver::start().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let (api, token) = (&api, &token);
        async move { api.call(method, &path, Some(token), body.as_ref()).await }
    };

    // An empty catalog says nothing about subscriptions.
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("/hook"), "event_types": ["invoce.paid"]}),
        )
        .await;
    assert!(hook.get("warnings").is_none(), "{hook}");
    let (status, _) = call(
        Method::POST,
        "/v1/event-types".to_owned(),
        Some(invoice_paid()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // With one, a pattern that matches none of its types is pointed out.
    let (status, created) = call(
        Method::POST,
        "/v1/webhooks".to_owned(),
        Some(json!({"name": "typo", "url": receiver.url("/hook"),
                    "event_types": ["invoice.*", "invoce.paid"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        fields(&json!({"errors": created["warnings"]})),
        ["event_types[1]"]
    );
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let (status, patched) = call(
        Method::PATCH,
        hook_path.clone(),
        Some(json!({"event_types": ["*"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched.get("warnings").is_none(), "`*` matches: {patched}");

    // The test call: the catalog's example for a type, given data, or the
    // plain webhook.test event.
    let test_path = format!("{hook_path}/test");
    let (status, result) = call(
        Method::POST,
        test_path.clone(),
        Some(json!({"event_type": "invoice.paid"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["success"], true, "{result}");
    let (status, result) = call(
        Method::POST,
        test_path.clone(),
        Some(json!({"event_type": "order.created", "data": {"n": 7}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let (status, result) = call(Method::POST, test_path.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let got: Vec<(String, Value)> = receiver
        .requests_to("/hook")
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["type"].as_str().unwrap_or_default().to_owned(),
                body["data"].clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        (
            "invoice.paid".to_owned(),
            json!({"amount": 1250, "currency": "EUR"})
        )
    );
    assert_eq!(got[1], ("order.created".to_owned(), json!({"n": 7})));
    assert_eq!(got[2].0, "webhook.test");

    // What a test call cannot send.
    for (body, field) in [
        (json!({"event_type": "order.created"}), "data"),
        (json!({"data": {}}), "event_type"),
        (json!({"event_type": "webhook.disabled"}), "event_type"),
        (
            json!({"event_type": "a.b", "data": {"k": "\u{0000}"}}),
            "data.k",
        ),
    ] {
        let (status, problem) = call(Method::POST, test_path.clone(), Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(fields(&problem), [field], "{body}");
    }
    let (status, _, _) = api
        .call_raw(Method::POST, &test_path, &token, "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Strict: subscriptions to nothing catalogued, and test data that fails
    // its schema, are refused.
    let (status, _) = call(
        Method::PATCH,
        "/v1/catalog".to_owned(),
        Some(json!({"mode": "strict"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    env.wait_config_seen(&[&api.process]).await;
    let (status, problem) = call(
        Method::POST,
        "/v1/webhooks".to_owned(),
        Some(json!({"url": receiver.url("/hook"), "event_types": ["invoce.*"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["event_types[0]"]);
    let (status, problem) = call(
        Method::PATCH,
        hook_path.clone(),
        Some(json!({"event_types": ["nope"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, problem) = call(
        Method::POST,
        test_path.clone(),
        Some(json!({"event_type": "invoice.paid", "data": {"amount": -1, "currency": "EUR"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["data/amount"]);
    assert_eq!(
        receiver.requests_to("/hook").len(),
        3,
        "nothing more was sent"
    );
}
