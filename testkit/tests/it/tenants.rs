//! Deleting a tenant, and a webhook's statistics.

use std::time::{Duration, Instant};

use herald_testkit::{ADMIN_TOKEN, Receiver, TestEnv, wait_until};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Rows of each table that belong to `tenant`.
async fn rows_of(env: &TestEnv, tenant: &str) -> [i64; 6] {
    let mut out = [0; 6];
    for (i, sql) in [
        "SELECT count(*) FROM tenants WHERE id = $1::text::uuid",
        "SELECT count(*) FROM api_tokens WHERE tenant_id = $1::text::uuid",
        "SELECT count(*) FROM webhooks WHERE tenant_id = $1::text::uuid",
        "SELECT count(*) FROM events WHERE tenant_id = $1::text::uuid",
        "SELECT count(*) FROM deliveries WHERE tenant_id = $1::text::uuid",
        "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.tenant_id = $1::text::uuid",
    ]
    .iter()
    .enumerate()
    {
        out[i] = env
            .db()
            .await
            .query_one(*sql, &[&tenant])
            .await
            .expect("count")
            .get(0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenant_loses_everything_and_its_queued_deliveries_are_dropped() {
    let env = TestEnv::with(&[("HERALD__RETENTION__PURGE_INTERVAL_SECONDS", "200ms")]).await;
    let (api, dispatcher, worker) = env.start_all().await;
    let failing = Receiver::start().await;
    failing.respond_with(503);
    let healthy = Receiver::start().await;
    let (doomed, doomed_token) = api.create_tenant("doomed").await;
    let (kept, kept_token) = api.create_tenant("kept").await;
    api.create_webhook(
        &doomed_token,
        json!({"name": "d", "url": failing.url("d"), "retry_backoff_seconds": 1, "retry_attempts": 10}),
    )
    .await;
    api.create_webhook(&kept_token, json!({"name": "k", "url": healthy.url("k")}))
        .await;
    for n in 0..5 {
        api.send_event(
            &doomed_token,
            json!({"event_type": "a.b", "data": {"n": n}}),
        )
        .await;
        api.send_event(&kept_token, json!({"event_type": "a.b", "data": {"n": n}}))
            .await;
    }
    // The doomed tenant's deliveries are retrying: queued in the tiers.
    wait_until(WAIT, "retries scheduled", || async {
        let retrying = env
            .count("SELECT count(*) FROM deliveries WHERE status = 'retrying'")
            .await;
        (retrying == 5 && healthy.requests().len() == 5).then_some(())
    })
    .await;
    let before = rows_of(&env, &kept).await;

    // Another tenant's token cannot, and neither can a second delete.
    let path = format!("/v1/tenants/{doomed}");
    let (status, _) = api
        .call(Method::DELETE, &path, Some(&kept_token), None)
        .await;
    assert_eq!(status, 403);
    let (status, body) = api
        .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["deleted_at"].is_string());
    let deleted = Instant::now();

    // Everything it held goes; the other tenant keeps all of its rows.
    wait_until(WAIT, "the tenant's rows removed", || async {
        (rows_of(&env, &doomed).await == [0; 6]).then_some(())
    })
    .await;
    assert_eq!(rows_of(&env, &kept).await, before);
    let (status, _) = api
        .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 404);
    // A token is refused once the change reaches the api (its token cache
    // follows the configuration version, polled every 2 seconds at most).
    env.wait_config_seen(&[&api.process]).await;
    let (status, _) = api
        .call(Method::GET, "/v1/webhooks", Some(&doomed_token), None)
        .await;
    assert_eq!(status, 401, "its tokens are gone");
    let (_, list) = api
        .call(Method::GET, "/v1/tenants", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(list["total"], 1);

    // Its queued retries come back from their tier and are dropped unsent:
    // once every queue is empty, nothing reached its endpoint after the
    // 2 seconds a change takes to reach every process.
    env.wait_config_seen(&[&dispatcher, &worker]).await;
    let (_conn, ch) = env.amqp().await;
    wait_until(WAIT, "the queued deliveries consumed", || async {
        let mut queues = vec![env.topology.deliveries()];
        queues.extend(
            env.topology
                .retry_tiers()
                .iter()
                .map(|t| env.topology.retry_queue(*t)),
        );
        let mut ready = 0;
        for q in queues {
            ready += ch
                .queue_declare(
                    q.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("queue")
                .message_count();
        }
        (ready == 0).then_some(())
    })
    .await;
    let late = failing
        .requests()
        .iter()
        .filter(|r| r.at > deleted + Duration::from_secs(2))
        .count();
    assert_eq!(late, 0, "no delivery of a deleted tenant is sent");

    // The other tenant carries on.
    api.send_event(&kept_token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the other tenant's delivery", || async {
        (healthy.requests().len() == 6).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_stats_count_attempts_by_outcome_with_latency_percentiles() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "retry_attempts": 0}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    for n in 0..4 {
        api.send_event(&token, json!({"event_type": "a.b", "data": {"n": n}}))
            .await;
    }
    wait_until(WAIT, "four deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 4)
            .then_some(())
    })
    .await;
    receiver.respond_with(500);
    api.send_event(&token, json!({"event_type": "a.b", "data": {"n": 9}}))
        .await;
    wait_until(WAIT, "the failure", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            .await
            == 1)
            .then_some(())
    })
    .await;

    let path = format!("/v1/webhooks/{id}/stats");
    for (period, buckets, width) in [("1h", 60, 60), ("24h", 96, 900), ("7d", 84, 7200)] {
        let (status, stats) = api
            .call(
                Method::GET,
                &format!("{path}?period={period}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["period"], period);
        assert_eq!(stats["bucket_seconds"], width);
        assert_eq!(stats["buckets"].as_array().unwrap().len(), buckets);
        let t = &stats["totals"];
        assert_eq!(
            (t["succeeded"].as_i64(), t["failed"].as_i64()),
            (Some(4), Some(1))
        );
        assert_eq!(t["retried"], 0);
        let (p50, p99) = (t["p50_ms"].as_f64().unwrap(), t["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{t}");
        let summed: i64 = stats["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["succeeded"].as_i64().unwrap() + b["failed"].as_i64().unwrap())
            .sum();
        assert_eq!(summed, 5, "the buckets add up to the totals");
    }
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{path}?period=2w"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = api.call(Method::GET, &path, Some(&other), None).await;
    assert_eq!(status, 404, "another tenant's webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_renders_a_format_or_template_on_a_sample_event() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (_, token) = api.create_tenant("acme").await;
    let (status, p) = api
        .call(
            Method::POST,
            "/v1/webhooks/preview",
            Some(&token),
            Some(&json!({
                "format": "custom",
                "template": "{\"kind\": {{ type | tojson }}, \"amount\": {{ data.amount }}}",
                "event_type": "invoice.paid",
                "data": {"amount": 12}
            })),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["content_type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(p["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"kind": "invoice.paid", "amount": 12}));
    let (status, p) = api
        .call(
            Method::POST,
            "/v1/webhooks/preview",
            Some(&token),
            Some(&json!({"format": "json"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert!(p["body"].as_str().unwrap().contains("order.created"));
    // A template that does not parse, or renders invalid JSON for a JSON
    // type, is named; a template on another format too.
    for (body, field) in [
        (
            json!({"format": "custom", "template": "{% if %}"}),
            "template",
        ),
        (
            json!({"format": "custom", "template": "not json"}),
            "template",
        ),
        (json!({"format": "json", "template": "x"}), "template"),
        (
            json!({"format": "json", "event_type": "bad type"}),
            "event_type",
        ),
    ] {
        let (status, p) = api
            .call(
                Method::POST,
                "/v1/webhooks/preview",
                Some(&token),
                Some(&body),
            )
            .await;
        assert_eq!(status, 422, "{body}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
}
