//! Events in, signed requests out: the whole pipeline.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use lapin::options::BasicGetOptions;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_http_and_amqp_arrive_signed() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;

    let (tenant, token) = api.create_tenant("acme").await;
    let webhook = api
        .create_webhook(
            &token,
            json!({"name": "billing", "url": receiver.url("/hook"), "event_types": ["invoice.*"],
                   "headers": {"X-Custom": "yes"}}),
        )
        .await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let http_id = api
        .send_event(
            &token,
            json!({"event_type": "invoice.created", "data": {"amount": 42}}),
        )
        .await;

    let (_conn, ch) = env.amqp().await;
    let body = json!({"tenant_id": tenant, "event_type": "invoice.paid", "data": {"amount": 7},
                      "id": "amqp-evt-1", "severity": "info", "source": "billing-service"});
    env.publish_event(&ch, "invoice.paid", &serde_json::to_vec(&body).unwrap())
        .await;

    let got = wait_until(WAIT, "two deliveries", || async {
        let r = receiver.requests_to("/hook");
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert_eq!(got.len(), 2);
    for r in &got {
        assert!(
            r.signatures_valid(&secret),
            "both signatures verify: {:?}",
            r.headers
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-custom"), Some("yes"));
        assert!(r.header("user-agent").unwrap().starts_with("Herald/"));
        assert_eq!(r.header("x-herald-attempt"), Some("1"));
        let body = r.json();
        assert_eq!(body["id"].as_str(), r.header("webhook-id"));
        assert_eq!(body["tenant_id"], json!(tenant));
        assert_eq!(body["webhook_id"], webhook["id"]);
        assert_eq!(body["type"].as_str(), r.header("x-herald-event"));
    }
    let by_id = |id: &str| {
        got.iter()
            .find(|r| r.header("webhook-id") == Some(id))
            .unwrap()
            .json()
    };
    let http = by_id(&http_id);
    assert_eq!(http["type"], "invoice.created");
    assert_eq!(http["data"], json!({"amount": 42}));
    assert!(http.get("severity").is_none());
    let amqp = by_id("amqp-evt-1");
    assert_eq!(amqp["type"], "invoice.paid");
    assert_eq!(amqp["data"], json!({"amount": 7}));
    assert_eq!(amqp["severity"], "info");
    assert_eq!(amqp["source"], "billing-service");

    // Every attempt is recorded, with the status and the response.
    let done = wait_until(WAIT, "attempts recorded", || async {
        let n = env
            .count("SELECT count(*) FROM deliveries WHERE status = 'success' AND attempt_count = 1")
            .await;
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(done, 2);
    assert_eq!(
        env.count("SELECT count(*) FROM delivery_attempts WHERE status_code = 200 AND error IS NULL AND duration_ms >= 0")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_exactly_the_matching_webhooks() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;

    let (_, token) = api.create_tenant("acme").await;
    let (_, other_token) = api.create_tenant("other").await;
    for (name, types) in [
        ("prefix", json!(["invoice.*"])),
        ("exact", json!(["invoice.created"])),
        ("all", json!(["*"])),
        ("several", json!(["order.shipped", "invoice.created"])),
        ("unrelated", json!(["order.*"])),
        ("near-miss", json!(["invoice.created.v2", "invoices.*"])),
    ] {
        api.create_webhook(
            &token,
            json!({"name": name, "url": receiver.url(name), "event_types": types}),
        )
        .await;
    }
    api.create_webhook(
        &token,
        json!({"name": "inactive", "url": receiver.url("inactive"), "event_types": ["*"], "is_active": false}),
    )
    .await;
    api.create_webhook(
        &other_token,
        json!({"name": "foreign", "url": receiver.url("foreign"), "event_types": ["*"]}),
    )
    .await;

    let id = api
        .send_event(&token, json!({"event_type": "invoice.created", "data": {}}))
        .await;
    wait_until(WAIT, "four deliveries", || async {
        (receiver.requests().len() >= 4).then_some(())
    })
    .await;
    // Settled: all four deliveries recorded, then no stragglers.
    wait_until(WAIT, "four recorded deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 4)
            .then_some(())
    })
    .await;
    let mut paths: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/all", "/exact", "/prefix", "/several"]);
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str()))
    );
    assert_eq!(env.count("SELECT count(*) FROM deliveries").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_makes_one_event_and_one_delivery_per_webhook() {
    // One event at a time, so the marker event below is dispatched after
    // every repeat before it.
    let env = TestEnv::with(&[("HERALD__DISPATCHER__CONCURRENCY", "1")]).await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    for name in ["a", "b"] {
        api.create_webhook(
            &token,
            json!({"name": name, "url": receiver.url(name), "event_types": ["*"]}),
        )
        .await;
    }

    let first = api
        .send_event(
            &token,
            json!({"id": "order-1", "event_type": "order.created", "data": {"v": 1}}),
        )
        .await;
    let second = api
        .send_event(
            &token,
            json!({"id": "order-1", "event_type": "order.created", "data": {"v": 2}}),
        )
        .await;
    assert_eq!(first, "order-1");
    assert_eq!(second, "order-1");
    // The Idempotency-Key header deduplicates the same way.
    for _ in 0..2 {
        let resp = api
            .http
            .post(format!("{}/v1/events", api.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", "order-2")
            .json(&json!({"event_type": "order.created", "data": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["id"], "order-2");
    }
    // And straight over AMQP.
    let (_conn, ch) = env.amqp().await;
    for _ in 0..2 {
        let body = json!({"tenant_id": tenant, "event_type": "order.created", "data": {}, "id": "order-3"});
        env.publish_event(&ch, "order.created", &serde_json::to_vec(&body).unwrap())
            .await;
    }
    api.send_event(
        &token,
        json!({"id": "marker", "event_type": "order.created", "data": {}}),
    )
    .await;
    wait_until(WAIT, "the marker's deliveries", || async {
        (receiver
            .requests()
            .iter()
            .filter(|r| r.header("webhook-id") == Some("marker"))
            .count()
            == 2)
            .then_some(())
    })
    .await;

    // Events over AMQP without a priority go as bulk, so the marker (sent
    // at the tenant's interactive share) may overtake them: wait for all.
    wait_until(WAIT, "every event stored", || async {
        (env.count("SELECT count(*) FROM events").await == 4).then_some(())
    })
    .await;
    for id in ["order-1", "order-2", "order-3"] {
        let n: i64 = env
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM deliveries WHERE event_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "one delivery per webhook for {id}");
    }
    // The first payload stands.
    let data: serde_json::Value = env
        .db()
        .await
        .query_one("SELECT data FROM events WHERE id = 'order-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(data, json!({"v": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_amqp_messages_are_parked_with_a_reason_and_good_ones_still_flow() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "all", "url": receiver.url("all"), "event_types": ["*"]}),
    )
    .await;

    let (_conn, ch) = env.amqp().await;
    let unknown_tenant = uuid::Uuid::now_v7().to_string();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not a valid event message"),
        (
            serde_json::to_vec(&json!({"event_type": "a.b", "data": {}})).unwrap(),
            "tenant_id",
        ),
        (
            serde_json::to_vec(
                &json!({"tenant_id": unknown_tenant, "event_type": "a.b", "data": {}}),
            )
            .unwrap(),
            "unknown tenant",
        ),
        (
            serde_json::to_vec(
                &json!({"tenant_id": tenant, "event_type": "bad type!", "data": {}}),
            )
            .unwrap(),
            "event_type",
        ),
        (
            serde_json::to_vec(
                &json!({"tenant_id": tenant, "event_type": "a.b", "data": {}, "id": "has space"}),
            )
            .unwrap(),
            "id ",
        ),
    ];
    for (body, _) in &bad {
        env.publish_event(&ch, "a.b", body).await;
    }
    let good =
        json!({"tenant_id": tenant, "event_type": "a.b", "data": {"ok": true}, "id": "good-1"});
    env.publish_event(&ch, "a.b", &serde_json::to_vec(&good).unwrap())
        .await;

    let got = wait_until(WAIT, "the good event", || async {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.header("webhook-id") == Some("good-1"))
    })
    .await;
    assert_eq!(got.json()["data"], json!({"ok": true}));

    let mut parked = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while parked.len() < 5 {
        assert!(std::time::Instant::now() < deadline, "five parked messages");
        match ch
            .basic_get(
                env.topology.invalid_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(msg) => {
                let d = msg.delivery;
                let reason = d
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-herald-reason").cloned())
                    .map(|v| match v {
                        lapin::types::AMQPValue::LongString(s) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => format!("{other:?}"),
                    })
                    .expect("a reason header");
                parked.push((d.data, reason));
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(parked.len(), 5);
    for (body, expected) in &bad {
        let (_, reason) = parked
            .iter()
            .find(|(b, _)| b == body)
            .expect("each bad message is parked unchanged");
        assert!(
            reason.contains(expected),
            "reason {reason:?} mentions {expected:?}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_changes_reach_the_pipeline_within_two_seconds() {
    let env = TestEnv::new().await;
    let (api, dispatcher, worker) = env.start_all().await;
    let pipeline = [&dispatcher, &worker];
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("one"), "event_types": ["*"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "first delivery", || async {
        (receiver.requests_to("one").len() == 1).then_some(())
    })
    .await;

    // Point it elsewhere: within 2 s every new event goes to the new URL.
    let (status, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&token),
            Some(&json!({"url": receiver.url("two")})),
        )
        .await;
    assert_eq!(status, 200);
    env.wait_config_seen(&pipeline).await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "delivery to the new URL", || async {
        (receiver.requests_to("two").len() == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.requests_to("one").len(), 1);

    // Disable it: within 2 s nothing more is delivered.
    let (status, body) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&token),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["is_active"], false);
    env.wait_config_seen(&pipeline).await;
    let silent = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    env.wait_event_stored(&silent).await;
    // An event's deliveries are created with it: none, so none is sent.
    assert_eq!(env.count("SELECT count(*) FROM deliveries").await, 2);
    assert_eq!(receiver.requests().len(), 2);

    // Delete another webhook: within 2 s nothing reaches it.
    let other = api
        .create_webhook(
            &token,
            json!({"name": "other", "url": receiver.url("three"), "event_types": ["*"]}),
        )
        .await;
    env.wait_config_seen(&pipeline).await;
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{}", other["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    env.wait_config_seen(&pipeline).await;
    let gone = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    env.wait_event_stored(&gone).await;
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM deliveries WHERE event_id = '{gone}'"
        ))
        .await,
        0,
        "a deleted webhook gets no delivery"
    );
    assert!(receiver.requests_to("three").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_recorded_with_the_response() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(400);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("x"), "event_types": ["*"]}),
    )
    .await;
    // A second webhook whose endpoint refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    api.create_webhook(
        &token,
        json!({"name": "dead", "url": dead_url, "event_types": ["*"], "retry_attempts": 0}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "two failed deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    let rows = env
        .db()
        .await
        .query(
            "SELECT status_code, error FROM delivery_attempts ORDER BY status_code NULLS LAST",
            &[],
        )
        .await
        .unwrap();
    let first: (Option<i32>, Option<String>) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(first.0, Some(400));
    assert!(first.1.unwrap().contains("400"));
    let second: (Option<i32>, Option<String>) = (rows[1].get(0), rows[1].get(1));
    assert_eq!(second.0, None);
    assert!(
        second.1.unwrap().contains("connection"),
        "a connection error is recorded"
    );
    assert_eq!(
        env.count("SELECT s.delivery_failure_count FROM webhook_stats s JOIN webhooks w ON w.id = s.webhook_id WHERE w.name = 'h'")
            .await,
        1
    );
}
