//! Day partitions: the idempotency key holds across days within its
//! window and not past it, concurrent repeats of one key make one event,
//! and each row lands in its day's partition.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_is_a_repeat_across_days_within_the_window_and_new_past_it() {
    let env = TestEnv::with(&[
        ("HERALD__DISPATCHER__IDEMPOTENCY_WINDOW_HOURS", "48"),
        ("HERALD__DISPATCHER__CONCURRENCY", "1"),
    ])
    .await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (tenant, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;

    // Two events stored earlier: one yesterday (inside the 48-hour
    // window, in another day's partition), one three days ago (past it).
    let today = chrono::Utc::now().date_naive();
    let db = env.db().await;
    herald_shared::db::retention::ensure_days(&db, today - chrono::Duration::days(3), 3)
        .await
        .expect("partitions");
    db.execute(
        "INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
         VALUES ($1::text::uuid, 'yesterday', 'a.b', '{}', now(), date_trunc('day', now()) - interval '1 hour'),
                ($1::text::uuid, 'long-ago', 'a.b', '{}', now(), now() - interval '3 days')",
        &[&tenant],
    )
    .await
    .expect("earlier events");

    for id in ["yesterday", "long-ago"] {
        api.send_event(&token, json!({"id": id, "event_type": "a.b", "data": {}}))
            .await;
    }
    api.send_event(
        &token,
        json!({"id": "marker", "event_type": "a.b", "data": {}}),
    )
    .await;
    wait_until(WAIT, "the marker delivered", || async {
        receiver
            .requests()
            .iter()
            .any(|r| r.header("webhook-id") == Some("marker"))
            .then_some(())
    })
    .await;
    wait_until(WAIT, "every delivery recorded", || async {
        (env.count("SELECT count(*) FROM delivery_attempts").await == 2).then_some(())
    })
    .await;
    let sent: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(
        sent.iter().filter(|id| *id == "yesterday").count(),
        0,
        "a repeat within the window"
    );
    assert_eq!(
        sent.iter().filter(|id| *id == "long-ago").count(),
        1,
        "new past the window"
    );
    // The id seen again past the window is a second event; the API shows
    // the latest, with its delivery.
    let n = env
        .count("SELECT count(*) FROM events WHERE id = 'long-ago'")
        .await;
    assert_eq!(n, 2);
    let (status, body) = api
        .call(
            reqwest::Method::GET,
            "/v1/events/long-ago",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    // Each row is in its day's partition, and a delivery's id carries its
    // event's arrival time.
    let day = today.format("%Y%m%d");
    let sql = format!(
        "SELECT count(*) FROM deliveries_p{day} d JOIN events_p{day} e
           ON e.tenant_id = d.tenant_id AND e.id = d.event_id AND e.received_at = d.event_received_at
         JOIN delivery_attempts_p{day} a ON a.delivery_id = d.id"
    );
    // (Unless the day turned while the test ran.)
    if chrono::Utc::now().date_naive() == today {
        assert_eq!(env.count(&sql).await, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_key_make_one_event_and_one_delivery() {
    let env = TestEnv::new().await;
    let (api, d1, _w) = env.start_all().await;
    // Two dispatchers, so repeats are stored by different transactions at
    // once.
    let d2 = env.start_dispatcher().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let keys = 40;
    let copies = 10;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..keys * copies {
        let (http, url, token) = (
            api.http.clone(),
            format!("{}/v1/events", api.base),
            token.clone(),
        );
        sends.spawn(async move {
            let body = json!({"id": format!("key-{}", i % keys), "event_type": "a.b", "data": {}});
            let resp = http.post(url).bearer_auth(token).json(&body).send().await;
            resp.map(|r| r.status().as_u16()).ok()
        });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.expect("a send"), Some(202));
    }
    wait_until(WAIT, "one delivery per key", || async {
        (env.count("SELECT count(*) FROM delivery_attempts").await >= keys).then_some(())
    })
    .await;
    // Every copy has been stored or skipped once the dispatch queue is
    // empty and both dispatchers have stopped (a stopping dispatcher
    // finishes what it holds or leaves it in the queue).
    let (_conn, ch) = env.amqp().await;
    let ready = || async {
        ch.queue_declare(
            env.topology.dispatch_queue().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("dispatch queue")
        .message_count()
    };
    wait_until(WAIT, "the dispatch queue drained", || async {
        (ready().await == 0).then_some(())
    })
    .await;
    d1.stop().await;
    d2.stop().await;
    assert_eq!(ready().await, 0);
    assert_eq!(env.count("SELECT count(*) FROM events").await, keys);
    assert_eq!(env.count("SELECT count(*) FROM deliveries").await, keys);
    wait_until(WAIT, "every delivery made", || async {
        (receiver.requests().len() >= usize::try_from(keys).ok()?).then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), usize::try_from(keys).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_from_before_partitions_keeps_its_history_in_its_days() {
    let env = TestEnv::new().await;
    let name = format!("{}_upgrade", env.db_name);
    let admin = env.db().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = env.vars["HERALD__DATABASE__URL"].replace(&env.db_name, &name);
    let pool = env.settings.database.pool_for(&url).expect("pool");
    herald_shared::db::migrate_to(&pool, 13)
        .await
        .expect("migrations up to V13");
    // History as V13 kept it: events three days apart, their deliveries
    // (ids made at the time) and attempts, joined by foreign keys.
    let db = pool.get().await.expect("connection");
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 't');
         INSERT INTO webhooks (id, tenant_id, name, url, event_types, secret_sealed, timeout_seconds,
                               retry_attempts, retry_backoff_seconds)
         VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'w',
                 'https://example.com/', ARRAY['*'], '\\x00', 5, 5, 60);
         INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
         SELECT '00000000-0000-0000-0000-000000000001', 'e' || g, 'a.b', '{}', now(), now() - g * interval '3 days'
         FROM generate_series(0, 2) g;
         INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, event_type, status, attempt_count)
         SELECT encode(overlay(uuid_send(gen_random_uuid()) PLACING
                    substring(int8send(floor(extract(epoch FROM received_at) * 1000)::int8) FROM 3)
                    FROM 1 FOR 6), 'hex')::uuid,
                tenant_id, id, '00000000-0000-0000-0000-0000000000a1', 'a.b', 'success', 1
         FROM events;
         INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, status_code)
         SELECT gen_random_uuid(), id, 1, now(), 3, 200 FROM deliveries;",
    )
    .await
    .expect("history as V13 kept it");
    drop(db);

    herald_shared::db::migrate(&pool).await.expect("upgrade");
    let db = pool.get().await.expect("connection");
    let rows = db
        .query(
            "SELECT e.tableoid::regclass::text, d.tableoid::regclass::text, a.tableoid::regclass::text
             FROM events e
             JOIN deliveries d ON d.tenant_id = e.tenant_id AND d.event_id = e.id
                              AND d.event_received_at = e.received_at
             JOIN delivery_attempts a ON a.delivery_id = d.id
             ORDER BY e.received_at",
            &[],
        )
        .await
        .expect("history after the upgrade");
    assert_eq!(rows.len(), 3, "every event with its delivery and attempt");
    for (r, ago) in rows.iter().zip([6, 3, 0]) {
        let day = (chrono::Utc::now() - chrono::Duration::days(ago)).format("%Y%m%d");
        let tables: (String, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(
            tables,
            (
                format!("events_p{day}"),
                format!("deliveries_p{day}"),
                format!("delivery_attempts_p{day}")
            )
        );
    }
    let days = herald_shared::db::retention::partition_days(&db)
        .await
        .expect("days");
    let today = chrono::Utc::now().date_naive();
    assert!(
        days.contains(&(today + chrono::Duration::days(7))),
        "{days:?}"
    );
    drop(db);
    pool.close();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop database");
}

/// A first attempt that succeeds updates its delivery without touching an
/// index (a heap-only update): no index names the status, and the day's
/// partition leaves room on each page (migration V19). Before it, the
/// retry and failed indexes' predicates named `status`, and not one of
/// these updates was heap-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_succeeds_at_once_is_updated_without_index_writes() {
    const EVENTS: i64 = 60;
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    for i in 0..EVENTS {
        api.send_event(
            &token,
            json!({"id": format!("hot-{i}"), "event_type": "a.b", "data": {"i": i}}),
        )
        .await;
    }
    wait_until(WAIT, "every delivery a success", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == EVENTS)
            .then_some(())
    })
    .await;
    // Backends report their counts within a second or so of going idle.
    let (updates, hot) = wait_until(WAIT, "the updates counted", || async {
        let row = env
            .db()
            .await
            .query_one(
                "SELECT coalesce(sum(n_tup_upd), 0)::int8, coalesce(sum(n_tup_hot_upd), 0)::int8
                 FROM pg_stat_user_tables WHERE relname LIKE 'deliveries_p%'",
                &[],
            )
            .await
            .expect("table statistics");
        let (updates, hot): (i64, i64) = (row.get(0), row.get(1));
        (updates >= EVENTS).then_some((updates, hot))
    })
    .await;
    assert!(
        hot * 10 >= updates * 9,
        "{hot} of {updates} delivery updates were heap-only"
    );
}
