//! Customer portal sessions: what a session reaches, and what it cannot.

use std::time::Duration;

use herald_testkit::{ADMIN_TOKEN, ApiHandle, Receiver, TestEnv, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn session(api: &ApiHandle, token: &str, body: Value) -> (String, Value) {
    let (status, s) = api
        .call(
            Method::POST,
            "/v1/portal-sessions",
            Some(token),
            Some(&body),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    (s["token"].as_str().expect("a token").to_owned(), s)
}

async fn status(
    api: &ApiHandle,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> u16 {
    api.call(method, path, Some(token), body.as_ref())
        .await
        .0
        .as_u16()
}

/// Ids of a list answer's `data`.
fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|x| x[key].as_str().expect("an id").to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_session_reaches_its_slice_and_nothing_more() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let orders = api
        .create_webhook(
            &token,
            json!({"name": "orders", "url": receiver.url("o"), "event_types": ["order.*"]}),
        )
        .await;
    let all = api
        .create_webhook(&token, json!({"name": "all", "url": receiver.url("a")}))
        .await;
    let foreign = api
        .create_webhook(&other, json!({"name": "theirs", "url": receiver.url("t")}))
        .await;
    let (orders_id, all_id) = (orders["id"].as_str().unwrap(), all["id"].as_str().unwrap());
    let order_event = api
        .send_event(&token, json!({"event_type": "order.paid", "data": {}}))
        .await;
    let user_event = api
        .send_event(&token, json!({"event_type": "user.created", "data": {}}))
        .await;
    wait_until(WAIT, "three deliveries", || async {
        (receiver.requests().len() == 3).then_some(())
    })
    .await;

    // Who may open one, and what it may be narrowed to.
    for (caller, body, expected) in [
        (ADMIN_TOKEN, json!({}), 403),
        (token.as_str(), json!({"webhook_ids": [foreign["id"]]}), 422),
        (token.as_str(), json!({"event_types": ["bad type!"]}), 422),
        (token.as_str(), json!({"expires_in_seconds": 5}), 422),
        (token.as_str(), json!({"webhook_ids": []}), 422),
        (token.as_str(), json!({"admin": true}), 422),
    ] {
        let (got, answer) = api
            .call(
                Method::POST,
                "/v1/portal-sessions",
                Some(caller),
                Some(&body),
            )
            .await;
        assert_eq!(got, expected, "{body}: {answer}");
    }
    let (_, refused) = api
        .call(
            Method::POST,
            "/v1/portal-sessions",
            Some(&token),
            Some(&json!({"webhook_ids": [foreign["id"]]})),
        )
        .await;
    assert_eq!(refused["errors"][0]["field"], "webhook_ids[0]");

    // Narrowed to one webhook: it sees that webhook, its deliveries and
    // the events sent to it, and nothing else of the tenant's.
    let (narrow, created) = session(&api, &token, json!({"webhook_ids": [orders_id]})).await;
    assert!(narrow.starts_with("hrlp_"));
    assert_eq!(created["url"], format!("/console/#portal={narrow}"));
    let (_, list) = api
        .call(Method::GET, "/v1/webhooks", Some(&narrow), None)
        .await;
    assert_eq!(ids(&list, "id"), [orders_id.to_owned()]);
    assert_eq!(list["total"], 1);
    assert_eq!(
        status(
            &api,
            Method::GET,
            &format!("/v1/webhooks/{all_id}"),
            &narrow,
            None
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            Method::GET,
            &format!("/v1/webhooks/{all_id}/stats"),
            &narrow,
            None
        )
        .await,
        404
    );
    let (_, deliveries) = api
        .call(Method::GET, "/v1/deliveries", Some(&narrow), None)
        .await;
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 1);
    assert_eq!(deliveries["data"][0]["webhook_id"], orders_id);
    let (_, events) = api
        .call(Method::GET, "/v1/events", Some(&narrow), None)
        .await;
    assert_eq!(ids(&events, "id"), std::slice::from_ref(&order_event));
    assert_eq!(
        status(
            &api,
            Method::GET,
            &format!("/v1/events/{user_event}"),
            &narrow,
            None
        )
        .await,
        404
    );
    let (_, detail) = api
        .call(
            Method::GET,
            &format!("/v1/events/{order_event}"),
            Some(&narrow),
            None,
        )
        .await;
    assert_eq!(
        detail["deliveries"].as_array().unwrap().len(),
        1,
        "only its webhook's delivery"
    );
    // It may test, retry and change its own webhook, but not create
    // webhooks, nor reach anything of the whole tenant's.
    assert_eq!(
        status(
            &api,
            Method::POST,
            &format!("/v1/webhooks/{orders_id}/test"),
            &narrow,
            None
        )
        .await,
        200
    );
    let delivery = deliveries["data"][0]["id"].as_str().unwrap();
    assert_eq!(
        status(
            &api,
            Method::POST,
            &format!("/v1/deliveries/{delivery}/retry"),
            &narrow,
            None
        )
        .await,
        202
    );
    let (status_code, changed) = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{orders_id}"),
            Some(&narrow),
            Some(&json!({"description": "changed from the portal"})),
        )
        .await;
    assert_eq!(status_code, 200, "{changed}");
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(json!({"name": "x", "url": receiver.url("x")})),
        ),
        (
            Method::POST,
            "/v1/events".to_owned(),
            Some(json!({"event_type": "a.b", "data": {}})),
        ),
        (Method::GET, "/v1/tokens".to_owned(), None),
        (
            Method::POST,
            "/v1/portal-sessions".to_owned(),
            Some(json!({})),
        ),
        (Method::GET, "/v1/portal-sessions".to_owned(), None),
        (Method::GET, "/v1/tenants".to_owned(), None),
        (Method::GET, "/v1/overview".to_owned(), None),
    ] {
        assert_eq!(
            status(&api, method.clone(), &path, &narrow, body).await,
            403,
            "{method} {path}"
        );
    }
    // Out of its slice is not found, not forbidden.
    assert_eq!(
        status(
            &api,
            Method::PATCH,
            &format!("/v1/webhooks/{all_id}"),
            &narrow,
            Some(json!({"name": "y"}))
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            Method::GET,
            &format!("/v1/webhooks/{}", foreign["id"].as_str().unwrap()),
            &narrow,
            None
        )
        .await,
        404
    );

    // Narrowed to event types: deliveries and events of those types only.
    let (typed, _) = session(&api, &token, json!({"event_types": ["user.*"]})).await;
    let (_, deliveries) = api
        .call(Method::GET, "/v1/deliveries", Some(&typed), None)
        .await;
    let types: Vec<&str> = deliveries["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["user.created"]);
    let (_, events) = api
        .call(Method::GET, "/v1/events", Some(&typed), None)
        .await;
    assert_eq!(ids(&events, "id"), std::slice::from_ref(&user_event));
    let (stats_status, _) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{all_id}/stats"),
            Some(&typed),
            None,
        )
        .await;
    assert_eq!(stats_status, 403, "counts of every type are not for it");
    assert_eq!(
        status(
            &api,
            Method::GET,
            &format!("/v1/events/{order_event}"),
            &typed,
            None
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            Method::PATCH,
            &format!("/v1/webhooks/{all_id}"),
            &typed,
            Some(json!({"name": "y"}))
        )
        .await,
        403
    );

    // Read-only, unnarrowed: everything of the tenant to read, nothing to do.
    let (reader, _) = session(&api, &token, json!({"read_only": true})).await;
    let (_, current) = api
        .call(
            Method::GET,
            "/v1/portal-sessions/current",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(current["read_only"], true);
    let (_, list) = api
        .call(Method::GET, "/v1/webhooks", Some(&reader), None)
        .await;
    assert_eq!(list["total"], 2);
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(json!({"name": "x", "url": receiver.url("x")})),
        ),
        (
            Method::PATCH,
            format!("/v1/webhooks/{all_id}"),
            Some(json!({"name": "y"})),
        ),
        (Method::POST, format!("/v1/webhooks/{all_id}/test"), None),
        (
            Method::POST,
            format!("/v1/deliveries/{delivery}/retry"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/webhooks/{all_id}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z", "dry_run": true})),
        ),
    ] {
        assert_eq!(
            status(&api, method.clone(), &path, &reader, body).await,
            403,
            "{method} {path}"
        );
    }

    // The tenant sees its sessions (never their tokens) and revokes one:
    // refused within 2 seconds.
    let (_, sessions) = api
        .call(Method::GET, "/v1/portal-sessions", Some(&token), None)
        .await;
    assert_eq!(sessions["data"].as_array().unwrap().len(), 3);
    assert!(!sessions.to_string().contains("hrlp_"));
    let (_, other_sessions) = api
        .call(Method::GET, "/v1/portal-sessions", Some(&other), None)
        .await;
    assert_eq!(other_sessions["data"].as_array().unwrap().len(), 0);
    let reader_id = current["id"].as_str().unwrap();
    assert_eq!(
        status(
            &api,
            Method::DELETE,
            &format!("/v1/portal-sessions/{reader_id}"),
            &other,
            None
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            Method::DELETE,
            &format!("/v1/portal-sessions/{reader_id}"),
            &token,
            None
        )
        .await,
        204
    );
    env.wait_config_seen(&[&api.process]).await;
    assert_eq!(
        status(&api, Method::GET, "/v1/webhooks", &reader, None).await,
        401
    );

    // An expired session is refused, even when the api has it cached.
    assert_eq!(
        status(&api, Method::GET, "/v1/webhooks", &typed, None).await,
        200
    );
    env.db()
        .await
        .execute(
            "UPDATE portal_sessions SET expires_at = now() - interval '1 second'
             WHERE event_types IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    env.wait_config_seen(&[&api.process]).await;
    assert_eq!(
        status(&api, Method::GET, "/v1/webhooks", &typed, None).await,
        401
    );
    // A made-up token of the portal's form opens nothing.
    assert_eq!(
        status(
            &api,
            Method::GET,
            "/v1/webhooks",
            "hrlp_not-a-real-session-token-at-all-000000000",
            None
        )
        .await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_the_last_hour_for_operators() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let disabled = api
        .create_webhook(
            &token,
            json!({"name": "off", "url": receiver.url("off"), "event_types": ["x.y"]}),
        )
        .await;
    api.call(
        Method::PATCH,
        &format!("/v1/webhooks/{}", disabled["id"].as_str().unwrap()),
        Some(&token),
        Some(&json!({"is_active": false})),
    )
    .await;
    for n in 0..3 {
        api.send_event(&token, json!({"event_type": "a.b", "data": {"n": n}}))
            .await;
    }
    wait_until(WAIT, "three deliveries", || async {
        (receiver.requests().len() == 3).then_some(())
    })
    .await;
    let overview = wait_until(WAIT, "the attempts counted", || async {
        let (status, o) = api
            .call(Method::GET, "/v1/overview", Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(status, 200, "{o}");
        (o["totals"]["succeeded"] == 3).then_some(o)
    })
    .await;
    assert_eq!(overview["minutes"].as_array().unwrap().len(), 60);
    assert_eq!(overview["totals"]["events"], 3);
    assert_eq!(overview["totals"]["failure_ratio"], 0.0);
    assert_eq!(overview["tenants"], 1);
    assert_eq!(overview["webhooks"], 2);
    assert_eq!(overview["webhooks_disabled"], 1);
    assert_eq!(overview["disabled_webhooks"][0]["name"], "off");
    assert!(
        overview["queues"]["deliveries"].is_u64(),
        "{}",
        overview["queues"]
    );
    assert!(overview["queues"]["retrying"].is_u64());
    assert_eq!(
        status(&api, Method::GET, "/v1/overview", &token, None).await,
        403
    );
}
