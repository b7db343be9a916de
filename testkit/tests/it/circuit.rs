//! Endpoints failing hard: the breaker makes their deliveries wait, a long
//! run of failures disables the webhook, and Herald tells the tenant with
//! its own operational events.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_failing_endpoint_wait_until_a_probe_succeeds() {
    let env = TestEnv::with(&[
        ("HERALD__WORKER__BREAKER_THRESHOLD", "3"),
        ("HERALD__WORKER__BREAKER_OPEN_SECONDS", "2"),
    ])
    .await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "retry_attempts": 0}),
    )
    .await;
    for _ in 0..3 {
        api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
            .await;
    }
    wait_until(WAIT, "three failures", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            .await
            == 3)
            .then_some(())
    })
    .await;

    // The breaker is open: new deliveries wait instead of failing.
    for _ in 0..6 {
        api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
            .await;
    }
    wait_until(WAIT, "six more deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries").await == 9).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "nothing sent while the breaker is open"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries WHERE status = 'pending' AND attempt_count = 0")
            .await,
        6,
        "waiting is not an attempt"
    );

    // The endpoint recovers; a probe closes the breaker and the rest flow.
    receiver.respond_with(200);
    wait_until(WAIT, "the waiting deliveries delivered", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 6)
            .then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 9);
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries WHERE status = 'success' AND attempt_count = 1")
            .await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_long_enough_is_disabled_and_the_tenant_hears_of_it() {
    let env = TestEnv::with(&[
        ("HERALD__WORKER__DISABLE_AFTER_FAILING_SECONDS", "1"),
        ("HERALD__WORKER__DISABLE_AFTER_FAILURES", "3"),
        ("HERALD__WORKER__BREAKER_THRESHOLD", "100"),
    ])
    .await;
    let (api, dispatcher, worker) = env.start_all().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let watcher = Receiver::start().await;
    let everything = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "failing", "url": failing.url("h"), "retry_attempts": 0,
                   "event_types": ["job.*", "webhook.disabled", "delivery.exhausted"]}),
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    api.create_webhook(
        &token,
        json!({"name": "watcher", "url": watcher.url("w"), "event_types": ["webhook.*", "delivery.exhausted"]}),
    )
    .await;
    // `*` does not pick up Herald's own events.
    api.create_webhook(
        &token,
        json!({"name": "everything", "url": everything.url("e"), "event_types": ["*"]}),
    )
    .await;

    api.send_event(&token, json!({"event_type": "job.done", "data": {"n": 1}}))
        .await;
    wait_until(WAIT, "the first failure", || async {
        (failing.requests().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for n in 2..=3 {
        api.send_event(&token, json!({"event_type": "job.done", "data": {"n": n}}))
            .await;
        wait_until(WAIT, "another failure", || async {
            (failing.requests().len() == n).then_some(())
        })
        .await;
    }

    let path = format!("/v1/webhooks/{hook_id}");
    let disabled = wait_until(WAIT, "the webhook disabled", || async {
        let (_, w) = api.call(Method::GET, &path, Some(&token), None).await;
        (w["is_active"] == false).then_some(w)
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 in a row"),
        "{disabled}"
    );

    // The watcher hears of the exhausted deliveries and the disabling; the
    // webhook they are about does not, and neither does `*`.
    let events = wait_until(WAIT, "the operational events", || async {
        let got = watcher.requests();
        let disabled = got
            .iter()
            .filter(|r| r.header("x-herald-event") == Some("webhook.disabled"))
            .count();
        let exhausted = got
            .iter()
            .filter(|r| r.header("x-herald-event") == Some("delivery.exhausted"))
            .count();
        (disabled == 1 && exhausted == 3).then_some(got)
    })
    .await;
    let notice = events
        .iter()
        .find(|r| r.header("x-herald-event") == Some("webhook.disabled"))
        .unwrap()
        .json();
    assert_eq!(notice["data"]["webhook_id"], hook_id.as_str());
    assert_eq!(notice["source"], "herald");
    let exhausted = events
        .iter()
        .find(|r| r.header("x-herald-event") == Some("delivery.exhausted"))
        .unwrap()
        .json();
    assert_eq!(exhausted["data"]["webhook_id"], hook_id.as_str());
    assert_eq!(exhausted["data"]["last_status_code"], 500);
    assert_eq!(failing.requests().len(), 3, "never told about itself");
    assert!(
        everything
            .requests()
            .iter()
            .all(|r| r.header("x-herald-event") == Some("job.done"))
    );

    // Re-enabling resumes delivery.
    failing.respond_with(200);
    let (status, w) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"is_active": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(w["disabled_reason"].is_null());
    // The dispatcher matches it again and the worker sends to it.
    env.wait_config_seen(&[&dispatcher, &worker]).await;
    let id = api
        .send_event(&token, json!({"event_type": "job.done", "data": {"n": 4}}))
        .await;
    wait_until(WAIT, "delivery after re-enabling", || async {
        failing
            .requests()
            .iter()
            .any(|r| r.header("webhook-id") == Some(id.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_cannot_send_herald_s_own_event_types() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let (tenant, token) = api.create_tenant("acme").await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/events",
            Some(&token),
            Some(&json!({"event_type": "webhook.disabled", "data": {}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (_conn, ch) = env.amqp().await;
    let forged = json!({"tenant_id": tenant, "event_type": "delivery.exhausted", "data": {}});
    env.publish_event(
        &ch,
        "delivery.exhausted",
        &serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    let parked = wait_until(WAIT, "the forged event parked", || async {
        ch.basic_get(
            env.topology.invalid_queue().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&parked.delivery.data).unwrap(),
        forged
    );
    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_to_a_webhook_and_a_recovered_delivery_is_announced() {
    let env = TestEnv::new().await;
    let (api, dispatcher, worker) = env.start_all().await;
    let watcher = Receiver::start().await;
    let endpoint = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let watcher_hook = api
        .create_webhook(
            &token,
            json!({"name": "watcher", "url": watcher.url("w"), "event_types": ["webhook.*", "delivery.*"]}),
        )
        .await;
    let watcher_id = watcher_hook["id"].as_str().unwrap().to_owned();

    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": endpoint.url("h"), "retry_attempts": 0,
                   "event_types": ["job.*"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{id}");
    let call = |method: Method, path: String, body: Option<serde_json::Value>| {
        let (api, token) = (&api, &token);
        async move {
            let (status, answer) = api.call(method, &path, Some(token), body.as_ref()).await;
            assert!(status.is_success(), "{path}: {status} {answer}");
            answer
        }
    };
    call(
        Method::PATCH,
        path.clone(),
        Some(json!({"description": "billing"})),
    )
    .await;
    call(Method::PATCH, path.clone(), Some(json!({"enabled": false}))).await;
    call(Method::PATCH, path.clone(), Some(json!({"enabled": true}))).await;
    call(Method::POST, format!("{path}/rotate-secret"), None).await;

    // A delivery that fails, then succeeds when sent again: recovered.
    env.wait_config_seen(&[&dispatcher, &worker]).await;
    endpoint.respond_with(500);
    api.send_event(&token, json!({"event_type": "job.done", "data": {}}))
        .await;
    let delivery = wait_until(WAIT, "the delivery to fail", || async {
        env.db()
            .await
            .query_opt(
                "SELECT id FROM deliveries WHERE status = 'failed' AND webhook_id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, uuid::Uuid>(0))
    })
    .await;
    endpoint.respond_with(200);
    call(
        Method::POST,
        format!("/v1/deliveries/{delivery}/retry"),
        None,
    )
    .await;
    // Recorded (the next resend is numbered after it).
    wait_until(WAIT, "the retry to succeed", || async {
        let row = env
            .db()
            .await
            .query_one(
                "SELECT status, attempt_count FROM deliveries WHERE id = $1",
                &[&delivery],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0) == "success" && row.get::<_, i32>(1) == 2).then_some(())
    })
    .await;
    // A success sent again is not a recovery.
    call(
        Method::POST,
        format!("/v1/deliveries/{delivery}/retry"),
        None,
    )
    .await;
    wait_until(WAIT, "the resend", || async {
        (endpoint.requests().len() == 3).then_some(())
    })
    .await;
    call(Method::DELETE, path.clone(), None).await;

    let expected = [
        "webhook.created",
        "webhook.updated",
        "webhook.updated",
        "webhook.disabled",
        "webhook.updated",
        "webhook.enabled",
        "webhook.secret_rotated",
        "delivery.exhausted",
        "delivery.recovered",
        "webhook.deleted",
    ];
    let got = wait_until(WAIT, "every announcement", || async {
        let got = watcher.requests();
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.header("x-herald-event").unwrap().to_owned())
        .collect();
    let mut wanted: Vec<String> = expected.iter().map(|t| (*t).to_owned()).collect();
    types.sort();
    wanted.sort();
    assert_eq!(types, wanted, "each once, nothing else");
    for r in &got {
        let body = r.json();
        assert_eq!(body["source"], "herald");
        assert_eq!(body["data"]["webhook_id"], id.as_str(), "{body}");
        assert_ne!(body["data"]["webhook_id"], watcher_id.as_str());
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("whsec_"), "never a secret: {text}");
    }
    let created = got
        .iter()
        .find(|r| r.header("x-herald-event") == Some("webhook.created"))
        .unwrap()
        .json();
    assert_eq!(created["data"]["url"], endpoint.url("h"));
    assert_eq!(created["data"]["event_types"], json!(["job.*"]));
    let recovered = got
        .iter()
        .find(|r| r.header("x-herald-event") == Some("delivery.recovered"))
        .unwrap()
        .json();
    assert_eq!(recovered["data"]["delivery_id"], delivery.to_string());
    assert_eq!(recovered["data"]["status_code"], 200);
    assert_eq!(recovered["data"]["attempts"], 2);
}
