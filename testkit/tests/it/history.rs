//! Reading back events and deliveries: cursors stay stable while new rows
//! arrive, filters narrow, details carry attempts and deliveries, and a
//! tenant sees only its own.

use std::collections::HashSet;
use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn page(api: &herald_testkit::ApiHandle, token: &str, path: &str) -> Value {
    let (status, body) = api.call(Method::GET, path, Some(token), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_page_through_history_while_new_rows_arrive() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let mut first_batch = HashSet::new();
    for i in 0..25 {
        first_batch.insert(
            api.send_event(&token, json!({"event_type": if i % 5 == 0 { "order.paid" } else { "order.created" }, "data": {"n": i}}))
                .await,
        );
    }
    wait_until(WAIT, "25 deliveries", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 25)
            .then_some(())
    })
    .await;

    for (list, table) in [("/v1/events", "events"), ("/v1/deliveries", "deliveries")] {
        let before = env.count(&format!("SELECT count(*) FROM {table}")).await;
        let mut seen: Vec<String> = Vec::new();
        let mut path = format!("{list}?limit=10");
        let mut pages = 0;
        loop {
            let body = page(&api, &token, &path).await;
            pages += 1;
            seen.extend(ids(&body));
            if pages == 1 {
                // New rows arrive between pages: they sort in front of the
                // first page and shift nothing.
                for i in 0..5 {
                    api.send_event(
                        &token,
                        json!({"event_type": "order.created", "data": {"late": i}}),
                    )
                    .await;
                }
            }
            match body["next_cursor"].as_str() {
                Some(c) => path = format!("{list}?limit=10&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(
            pages,
            usize::try_from(before).unwrap().div_ceil(10),
            "{table}"
        );
        assert_eq!(
            seen.len(),
            usize::try_from(before).unwrap(),
            "{table}: none skipped"
        );
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            seen.len(),
            "{table}: none twice"
        );
        if table == "events" {
            assert_eq!(seen.into_iter().collect::<HashSet<_>>(), first_batch);
        }
        // Settle: every event sent so far stored and delivered, so the next
        // list starts from a known count.
        let total = if table == "events" { 30 } else { 35 };
        wait_until(WAIT, "every delivery", || async {
            (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
                .await
                == total)
                .then_some(())
        })
        .await;
    }

    // Newest first, and filters narrow.
    let newest = page(&api, &token, "/v1/events?limit=1").await;
    assert_eq!(newest["data"][0]["data"]["late"], 4);
    let paid = page(&api, &token, "/v1/events?event_type=order.paid").await;
    assert_eq!(paid["data"].as_array().unwrap().len(), 5);
    assert!(
        paid["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event_type"] == "order.paid")
    );
    let failed = page(&api, &token, "/v1/deliveries?status=failed").await;
    assert!(failed["data"].as_array().unwrap().is_empty());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = page(
        &api,
        &token,
        &format!("/v1/deliveries?since={}", urlencode(&future)),
    )
    .await;
    assert!(none["data"].as_array().unwrap().is_empty());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_carry_attempts_and_deliveries_and_stay_within_the_tenant() {
    let env = TestEnv::new().await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.script(vec![(503, vec![])]);
    let (_, token) = api.create_tenant("acme").await;
    let (_, other) = api.create_tenant("other").await;
    let hook = api
        .create_webhook(
            &token,
            json!({"name": "h", "url": receiver.url("h"), "retry_backoff_seconds": 1}),
        )
        .await;
    let id = api
        .send_event(&token, json!({"id": "inv-1", "event_type": "invoice.created", "data": {"amount": 5}, "source": "billing"}))
        .await;
    wait_until(WAIT, "the retry to succeed", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 1)
            .then_some(())
    })
    .await;

    let event = page(&api, &token, &format!("/v1/events/{id}")).await;
    assert_eq!(event["event_type"], "invoice.created");
    assert_eq!(event["data"], json!({"amount": 5}));
    assert_eq!(event["source"], "billing");
    let deliveries = event["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["webhook_id"], hook["id"]);
    let delivery_id = deliveries[0]["id"].as_str().unwrap();

    let delivery = page(&api, &token, &format!("/v1/deliveries/{delivery_id}")).await;
    assert_eq!(delivery["status"], "success");
    assert_eq!(delivery["attempt_count"], 2);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 503);
    assert!(attempts[0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(attempts[1]["status_code"], 200);
    let filtered = page(
        &api,
        &token,
        &format!("/v1/deliveries?webhook_id={}", hook["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ids(&filtered), [delivery_id]);

    // Another tenant sees none of it.
    for path in [
        format!("/v1/events/{id}"),
        format!("/v1/deliveries/{delivery_id}"),
    ] {
        assert_eq!(
            api.call(Method::GET, &path, Some(&other), None).await.0,
            404,
            "{path}"
        );
    }
    assert!(
        page(&api, &other, "/v1/events").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        page(&api, &other, "/v1/deliveries").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bad parameters are refused with the field named.
    for path in [
        "/v1/events?cursor=bogus",
        "/v1/events?limit=0",
        "/v1/events?limit=1000",
        "/v1/deliveries?status=lost",
        "/v1/deliveries?webhook_id=nope",
        "/v1/events?colour=red",
    ] {
        let (status, body) = api.call(Method::GET, path, Some(&token), None).await;
        assert_eq!(status, 422, "{path}: {body}");
    }
    assert_eq!(
        api.call(Method::GET, "/v1/events/has%20space", Some(&token), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call(Method::GET, "/v1/deliveries/not-a-uuid", Some(&token), None)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_past_retention_is_pruned_and_the_rest_stays() {
    let env = TestEnv::with(&[
        ("HERALD__RETENTION__MAX_AGE_DAYS", "30"),
        ("HERALD__RETENTION__PRUNE_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let (api, _d, _w) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let recent = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the recent delivery", || async {
        (env.count("SELECT count(*) FROM delivery_attempts").await == 1).then_some(())
    })
    .await;

    // 2,500 events from 40 days ago, each with a delivery and an attempt,
    // in that day's partitions (made here: Herald makes them only ahead).
    let tenant: uuid::Uuid = tenant.parse().unwrap();
    let old_day = (chrono::Utc::now() - chrono::Duration::days(40)).date_naive();
    let db = env.db().await;
    herald_shared::db::retention::ensure_days(&db, old_day, 0)
        .await
        .unwrap();
    db.batch_execute(&format!(
        "INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
         SELECT '{tenant}', 'old-' || g, 'a.b', '{{}}', now() - interval '40 days', now() - interval '40 days'
         FROM generate_series(1, 2500) g;
         INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type, status,
                                 attempt_count, created_at)
         SELECT herald_uuid_v7(received_at), '{tenant}', id, received_at, (SELECT id FROM webhooks), 'a.b',
                'success', 1, received_at
         FROM events WHERE id LIKE 'old-%';
         INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, status_code)
         SELECT gen_random_uuid(), id, 1, now() - interval '40 days', 1, 200
         FROM deliveries WHERE event_id LIKE 'old-%';"
    ))
    .await
    .unwrap();
    assert_eq!(env.count("SELECT count(*) FROM events").await, 2501);
    let day = old_day.format("%Y%m%d");
    for table in ["events", "deliveries", "delivery_attempts"] {
        let sql = format!("SELECT count(*) FROM {table}_p{day}");
        assert_eq!(env.count(&sql).await, 2500, "{table} in its day");
    }

    // The whole day goes at once: its partitions are detached and dropped.
    let gone = format!(
        "SELECT count(*) FROM unnest(ARRAY['events_p{day}', 'deliveries_p{day}', 'delivery_attempts_p{day}']) t
         WHERE to_regclass(t) IS NOT NULL"
    );
    wait_until(WAIT, "the old day dropped", || async {
        (env.count(&gone).await == 0).then_some(())
    })
    .await;
    let days = herald_shared::db::retention::partition_days(&env.db().await)
        .await
        .unwrap();
    assert!(!days.contains(&old_day));
    assert_eq!(env.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM deliveries").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM delivery_attempts").await, 1);
    // Today and the week ahead stay ready.
    let days = herald_shared::db::retention::partition_days(&env.db().await)
        .await
        .unwrap();
    let today = chrono::Utc::now().date_naive();
    for ahead in 0..=7 {
        assert!(
            days.contains(&(today + chrono::Duration::days(ahead))),
            "{days:?}"
        );
    }
    let kept = page(&api, &token, &format!("/v1/events/{recent}")).await;
    assert_eq!(kept["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_request_shapes_and_one_call_history_rows() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    receiver.respond_with_body(503, "try later");
    let (_, token) = api.create_tenant("acme").await;
    // Without a name: named after the URL's host, numbered when taken.
    let first = api
        .create_webhook(
            &token,
            json!({"url": receiver.url("a"), "retry_attempts": 0}),
        )
        .await;
    assert_eq!(first["name"], "127.0.0.1");
    let second = api
        .create_webhook(&token, json!({"url": receiver.url("b"), "active": false}))
        .await;
    assert_eq!(second["name"], "127.0.0.1-2");
    assert_eq!(second["is_active"], false, "`active` is `is_active`");
    let (status, named) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&token),
            Some(&json!({"name": "127.0.0.1", "url": receiver.url("c")})),
        )
        .await;
    assert_eq!(status, 409, "a name given is not renamed: {named}");

    api.send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    let id = first["id"].as_str().unwrap();
    let rows = wait_until(WAIT, "the failed delivery", || async {
        let p = page(&api, &token, &format!("/v1/deliveries?webhook={id}")).await;
        (p["data"][0]["status"] == "failed").then_some(p)
    })
    .await;
    // `webhook` filters like `webhook_id`, and each row carries its latest
    // attempt: a history page needs one call.
    assert_eq!(rows["data"].as_array().unwrap().len(), 1);
    assert_eq!(rows["data"][0]["webhook_id"], id);
    assert_eq!(rows["data"][0]["last_status_code"], 503);
    assert_eq!(rows["data"][0]["last_error"], "the endpoint answered 503");
    let other = page(
        &api,
        &token,
        &format!("/v1/deliveries?webhook={}", second["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(other["data"].as_array().unwrap().len(), 0);
}
