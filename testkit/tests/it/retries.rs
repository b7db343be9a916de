//! Retries through the TTL queues: spacing, what is retried and what is
//! not, exhaustion, manual retry, recovery, 410 and the sweeper.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use lapin::options::{BasicGetOptions, QueuePurgeOptions};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn gap(a: &herald_testkit::Received, b: &herald_testkit::Received) -> f64 {
    b.at.duration_since(a.at).as_secs_f64()
}

/// The one delivery's status and attempt count (`("none", 0)` before the
/// dispatcher has made it).
async fn delivery_row(env: &TestEnv) -> (String, i32) {
    env.db()
        .await
        .query_opt("SELECT status, attempt_count FROM deliveries", &[])
        .await
        .expect("query the delivery")
        .map_or(("none".to_owned(), 0), |row| (row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_three_attempts_at_the_scheduled_spacing() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.script(vec![(503, vec![]), (503, vec![])]);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 1, "retry_attempts": 5}),
    )
    .await;
    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;

    wait_until(WAIT, "the delivery to succeed", || async {
        (delivery_row(&env).await.0 == "success").then_some(())
    })
    .await;
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "exactly three attempts");
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str()))
    );
    let attempts: Vec<&str> = got
        .iter()
        .map(|r| r.header("x-herald-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // First retry after 1 s, the second after 2 s (each ±10 % jitter, plus
    // queue hops).
    let (g1, g2) = (gap(&got[0], &got[1]), gap(&got[1], &got[2]));
    assert!(
        (0.85..=2.0).contains(&g1),
        "first retry after ~1 s, was {g1:.2}"
    );
    assert!(
        (1.75..=3.2).contains(&g2),
        "second retry after ~2 s, was {g2:.2}"
    );
    assert_eq!(delivery_row(&env).await, ("success".to_owned(), 3));
    let codes: Vec<Option<i32>> = env
        .db()
        .await
        .query(
            "SELECT status_code FROM delivery_attempts ORDER BY attempt",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(codes, [Some(503), Some(503), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_at_once_and_retry_after_is_honoured() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let bad_request = Receiver::start().await;
    bad_request.respond_with(400);
    let limited = Receiver::start().await;
    limited.script(vec![(429, vec![("retry-after", "2".to_owned())])]);
    let (_, token) = api.create_tenant("acme").await;
    // The default backoff (60 s) would be far longer than Retry-After.
    api.create_webhook(
        &token,
        json!({"name": "bad", "url": bad_request.url("x"), "retry_backoff_seconds": 1}),
    )
    .await;
    api.create_webhook(&token, json!({"name": "limited", "url": limited.url("x")}))
        .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;

    wait_until(WAIT, "the rate-limited delivery to succeed", || async {
        (limited.requests().len() == 2).then_some(())
    })
    .await;
    let got = limited.requests();
    let g = gap(&got[0], &got[1]);
    assert!(
        (1.8..=3.2).contains(&g),
        "Retry-After: 2 waits about 2 s, was {g:.2}"
    );

    // 400 is final: one attempt, failed, and no retry follows (its backoff
    // of 1 s has long passed).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(bad_request.requests().len(), 1);
    let status: String = env
        .db()
        .await
        .query_one(
            "SELECT d.status FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE w.name = 'bad'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_delivery_fails_is_parked_and_a_manual_retry_delivers_it() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 1, "retry_attempts": 1}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {"n": 1}}))
        .await;
    wait_until(WAIT, "the delivery to fail", || async {
        (delivery_row(&env).await.0 == "failed").then_some(())
    })
    .await;
    assert_eq!(
        receiver.requests().len(),
        2,
        "the first attempt and one retry"
    );
    assert_eq!(delivery_row(&env).await, ("failed".to_owned(), 2));

    // The exhausted delivery is in the failed queue, with the reason.
    let (_conn, ch) = env.amqp().await;
    let parked = wait_until(WAIT, "the failed-queue message", || async {
        ch.basic_get(
            env.topology.failed_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    })
    .await;
    let body: serde_json::Value = serde_json::from_slice(&parked.delivery.data).unwrap();
    assert_eq!(body["data"], json!({"n": 1}));
    let headers = parked.delivery.properties.headers().clone().unwrap();
    let reason = match headers.inner().get("x-herald-reason") {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => panic!("a reason header, got {other:?}"),
    };
    assert!(reason.contains("500"), "{reason}");

    // A manual retry delivers it once the endpoint is healthy again.
    receiver.respond_with(200);
    let delivery_id: uuid::Uuid = env
        .db()
        .await
        .query_one("SELECT id FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery_id}/retry"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_until(WAIT, "the manual retry to succeed", || async {
        (delivery_row(&env).await.0 == "success").then_some(())
    })
    .await;
    assert_eq!(delivery_row(&env).await, ("success".to_owned(), 3));
    assert_eq!(
        receiver
            .requests()
            .last()
            .unwrap()
            .header("x-herald-attempt"),
        Some("3")
    );
    // Another tenant cannot retry it.
    let (_, other) = api.create_tenant("other").await;
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery_id}/retry"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_requeues_only_the_failed_deliveries_in_the_window() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "retry_attempts": 0}),
        )
        .await;
    let path = format!("/v1/webhooks/{}/recover", hook["id"].as_str().unwrap());
    let failed = |n: i64| {
        let env = &env;
        async move {
            (env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
                .await
                == n)
                .then_some(())
        }
    };

    let old = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the old delivery to fail", || failed(1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let since = chrono::Utc::now();
    let mut recent = Vec::new();
    for _ in 0..3 {
        recent.push(
            api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
                .await,
        );
    }
    wait_until(WAIT, "the recent deliveries to fail", || failed(4)).await;
    // A test call in the window fails too; a recovery leaves it alone (it
    // was a check of the endpoint, not an event for it).
    let (status, tested) = api
        .call(
            Method::POST,
            &format!("/v1/webhooks/{}/test", hook["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["success"], false);
    wait_until(WAIT, "the test delivery to be recorded failed", || {
        failed(5)
    })
    .await;

    let (status, body) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"since": since, "dry_run": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 3);
    assert_eq!(receiver.requests().len(), 5, "a dry run sends nothing");

    receiver.respond_with(200);
    let (status, body) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["recovered"], 3);
    wait_until(WAIT, "the recovered deliveries to succeed", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    let delivered: Vec<String> = receiver
        .requests()
        .iter()
        .skip(5)
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    let mut expected = recent.clone();
    expected.sort();
    let mut delivered_sorted = delivered.clone();
    delivered_sorted.sort();
    assert_eq!(delivered_sorted, expected);
    assert!(
        !delivered.contains(&old),
        "the delivery before the window stays failed"
    );

    // Safe to repeat: nothing failed is left in the window.
    let (_, body) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(body["recovered"], 0);
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            .await,
        2,
        "the old delivery and the test call's stay failed"
    );
    let (status, _) = api
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"since": since, "until": since})),
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seven_second_delay_chains_through_the_tiers() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.script(vec![(503, vec![("retry-after", "7".to_owned())])]);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the retry", || async {
        (receiver.requests().len() == 2).then_some(())
    })
    .await;
    let got = receiver.requests();
    let g = gap(&got[0], &got[1]);
    // 7 s through the 5 s tier and two 1 s hops, honoured within a second.
    assert!((6.5..=8.0).contains(&g), "waited about 7 s, was {g:.2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_webhook_at_once() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(410);
    let (_, token) = api.create_tenant("acme").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 1}),
        )
        .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let webhook = wait_until(WAIT, "the webhook disabled", || async {
        let (_, w) = api.call(Method::GET, &path, Some(&token), None).await;
        (w["is_active"] == false).then_some(w)
    })
    .await;
    assert!(webhook["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(delivery_row(&env).await, ("failed".to_owned(), 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests().len(), 1, "no retry after 410");

    // Re-enabling clears the reason.
    let (_, w) = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"is_active": true})),
        )
        .await;
    assert_eq!(w["is_active"], true);
    assert!(w["disabled_reason"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_republishes_a_retry_whose_message_was_lost() {
    let env = TestEnv::with(&[
        ("HERALD__DISPATCHER__SWEEP_INTERVAL_SECONDS", "1"),
        ("HERALD__DISPATCHER__SWEEP_GRACE_SECONDS", "2"),
    ])
    .await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.script(vec![(500, vec![])]);
    let (_, token) = api.create_tenant("acme").await;
    // The retry waits about an hour (in the 10 m or the 1 h tier, by its
    // jitter).
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 3600}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the retry scheduled", || async {
        (delivery_row(&env).await.0 == "retrying").then_some(())
    })
    .await;
    // Lose the parked message, and let its due time pass.
    let (_conn, ch) = env.amqp().await;
    let purged = wait_until(WAIT, "the parked message", || async {
        let mut n = 0;
        for tier in env.topology.retry_tiers() {
            n += ch
                .queue_purge(
                    env.topology.retry_queue(*tier).into(),
                    QueuePurgeOptions::default(),
                )
                .await
                .unwrap();
        }
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(purged, 1);
    env.db()
        .await
        .execute(
            "UPDATE deliveries SET next_attempt_at = now() - interval '10 seconds'",
            &[],
        )
        .await
        .unwrap();
    wait_until(WAIT, "the sweeper to deliver it", || async {
        (delivery_row(&env).await.0 == "success").then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_and_never_followed() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.script(vec![(302, vec![("location", receiver.url("elsewhere"))])]);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 1}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the retry to succeed", || async {
        (delivery_row(&env).await.0 == "success").then_some(())
    })
    .await;
    assert!(
        receiver.requests_to("elsewhere").is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(receiver.requests_to("h").len(), 2);
    let first: Option<i32> = env
        .db()
        .await
        .query_one(
            "SELECT status_code FROM delivery_attempts WHERE attempt = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, Some(302));
}

/// The gaps between the attempts a receiver got, in seconds.
fn gaps(got: &[herald_testkit::Received]) -> Vec<f64> {
    got.windows(2).map(|w| gap(&w[0], &w[1])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_retry_shapes_space_retries_as_asked_and_the_default_is_the_standard_schedule() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let (scheduled, exponential, standard) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    for r in [&scheduled, &exponential, &standard] {
        r.respond_with(503);
    }
    let (_, token) = api.create_tenant("acme").await;
    // SecureBase's form: an explicit schedule, one retry per entry.
    let s = api
        .create_webhook(
            &token,
            json!({"name": "scheduled", "url": scheduled.url("s"), "retry_schedule": ["1s", 2]}),
        )
        .await;
    assert_eq!(s["retry_attempts"], 2);
    assert_eq!(s["retry_schedule"], json!(["1s", "2s"]));
    // Vaulytica's and webnet's names: tripling from 1 s, capped at 2 s.
    let e = api
        .create_webhook(
            &token,
            json!({"name": "exponential", "url": exponential.url("e"), "retry_backoff": 1,
                   "exponential_base": 3, "max_delay": 2, "jitter": false, "max_retries": 3}),
        )
        .await;
    assert_eq!(
        (&e["retry_backoff_seconds"], &e["exponential_base"]),
        (&json!(1), &json!(3.0))
    );
    assert_eq!(
        (&e["max_delay_seconds"], &e["jitter"], &e["retry_schedule"]),
        (&json!(2), &json!(false), &Value::Null)
    );
    api.create_webhook(
        &token,
        json!({"name": "standard", "url": standard.url("d")}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;

    // The default: the first retry is due 5 s after the first attempt.
    let due = wait_until(WAIT, "the default delivery to be retrying", || async {
        env.db()
            .await
            .query_opt(
                "SELECT extract(epoch FROM d.next_attempt_at - a.attempted_at)::float8 \
                 FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 JOIN delivery_attempts a ON a.delivery_id = d.id \
                 WHERE w.name = 'standard' AND d.status = 'retrying' AND a.attempt = 1",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, f64>(0))
    })
    .await;
    assert!((4.9..=5.5).contains(&due), "due after 5 s, was {due:.2}");

    let failed = |name: &'static str| {
        let env = &env;
        async move {
            let row = env
                .db()
                .await
                .query_opt(
                    "SELECT d.status FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                     WHERE w.name = $1",
                    &[&name],
                )
                .await
                .unwrap();
            row.is_some_and(|r| r.get::<_, String>(0) == "failed")
                .then_some(())
        }
    };
    wait_until(WAIT, "the scheduled delivery to be exhausted", || {
        failed("scheduled")
    })
    .await;
    wait_until(WAIT, "the exponential delivery to be exhausted", || {
        failed("exponential")
    })
    .await;
    let g = gaps(&scheduled.requests());
    assert_eq!(g.len(), 2, "two retries: {g:?}");
    assert!((0.9..=2.0).contains(&g[0]), "1 s, was {:.2}", g[0]);
    assert!((1.9..=3.2).contains(&g[1]), "2 s, was {:.2}", g[1]);
    let g = gaps(&exponential.requests());
    assert_eq!(g.len(), 3, "three retries: {g:?}");
    assert!((0.9..=2.0).contains(&g[0]), "1 s, was {:.2}", g[0]);
    for later in &g[1..] {
        assert!(
            (1.9..=3.2).contains(later),
            "3 s capped at 2 s, was {later:.2}"
        );
    }
}
