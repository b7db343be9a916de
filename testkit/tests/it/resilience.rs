//! Lost connections are reconnected: events keep flowing after the broker
//! drops every connection and after the database kills every session.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_reconnect_to_the_broker_and_the_database() {
    let env = TestEnv::new().await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "event_types": ["*"]}),
    )
    .await;
    api.send_event(&token, json!({"event_type": "a.b", "data": {"n": 1}}))
        .await;
    wait_until(WAIT, "the first delivery", || async {
        (receiver.requests().len() == 1).then_some(())
    })
    .await;

    // The broker drops the api's, dispatcher's and worker's connections.
    assert!(
        env.close_broker_connections() >= 3,
        "the three processes were connected"
    );
    // The api may answer 503 while it reconnects; a producer retries.
    let second = wait_until(WAIT, "the api accepting events again", || async {
        let (status, body) = api
            .call(
                reqwest::Method::POST,
                "/v1/events",
                Some(&token),
                Some(&json!({"event_type": "a.b", "data": {"n": 2}})),
            )
            .await;
        (status == 202).then(|| body["id"].as_str().unwrap().to_owned())
    })
    .await;
    wait_until(WAIT, "delivery after the broker came back", || async {
        receiver
            .requests()
            .iter()
            .any(|r| r.header("webhook-id") == Some(second.as_str()))
            .then_some(())
    })
    .await;

    // The database ends every session. A request that meets a connection
    // the server closed is answered 503 (never 500); a producer retries.
    assert!(env.terminate_db_connections().await > 0);
    let third = wait_until(WAIT, "the api accepting events again", || async {
        let (status, body) = api
            .call(
                reqwest::Method::POST,
                "/v1/events",
                Some(&token),
                Some(&json!({"event_type": "a.b", "data": {"n": 3}})),
            )
            .await;
        assert!(status == 202 || status == 503, "{status}: {body}");
        (status == 202).then(|| body["id"].as_str().unwrap().to_owned())
    })
    .await;
    wait_until(WAIT, "delivery after the database came back", || async {
        receiver
            .requests()
            .iter()
            .any(|r| r.header("webhook-id") == Some(third.as_str()))
            .then_some(())
    })
    .await;
    wait_until(WAIT, "all recorded", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 3)
            .then_some(())
    })
    .await;
}

/// A delivery message the broker returns after the dispatcher committed its
/// rows (here: the deliveries queue unbound for a while) is published again
/// when the event comes back for another try, not forgotten as a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_whose_publish_failed_after_commit_are_published_on_the_next_try() {
    use lapin::options::QueueBindOptions;
    use lapin::types::FieldTable;
    let env = TestEnv::with(&[("HERALD__AMQP__REQUEUE_PAUSE_MS", "300")]).await;
    let (api, dispatcher, worker) = env.start_all().await;
    // Both have declared the topology (and would bind the queue again).
    for port in [dispatcher.port, worker.port] {
        wait_until(WAIT, "ready", || async {
            reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
                .then_some(())
        })
        .await;
    }
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("/h")}))
        .await;
    let (_conn, ch) = env.amqp().await;
    let deliveries = env.topology.deliveries();
    ch.queue_unbind(
        deliveries.clone().into(),
        deliveries.clone().into(),
        deliveries.clone().into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let id = api
        .send_event(
            &token,
            json!({"event_type": "a.b", "data": {}, "id": "returned-1"}),
        )
        .await;
    // The rows are committed; the delivery message came back unroutable.
    wait_until(WAIT, "the delivery stored", || async {
        (env.count("SELECT count(*) FROM deliveries").await == 1).then_some(())
    })
    .await;
    ch.queue_bind(
        deliveries.clone().into(),
        deliveries.clone().into(),
        deliveries.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    wait_until(WAIT, "the delivery sent after all", || async {
        receiver
            .requests_to("/h")
            .iter()
            .any(|r| r.header("webhook-id") == Some(id.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_given_several_brokers_use_the_first_that_answers() {
    // Nothing listens on the first address: every process moves on to the
    // second, the real broker, and events flow.
    let dead = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        herald_testkit::free_port()
    );
    let live = std::env::var("HERALD__AMQP__URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    // `url` names the dead one too: only `urls` gets anywhere.
    let env = TestEnv::with(&[
        ("HERALD__AMQP__URL", &dead),
        ("HERALD__AMQP__URLS", &format!("{dead}, {live}")),
    ])
    .await;
    assert_eq!(env.settings.amqp.broker_urls().len(), 2);
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "event_types": ["*"]}),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quorum_queues_every_queue_is_replicated_and_events_flow() {
    let env = TestEnv::with(&[("HERALD__AMQP__QUEUE_TYPE", "quorum")]).await;
    let (api, _dispatcher, _worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "event_types": ["*"]}),
    )
    .await;
    for n in 0..5 {
        api.send_event(&token, json!({"event_type": "a.b", "data": {"n": n}}))
            .await;
    }
    wait_until(WAIT, "five deliveries", || async {
        (receiver.requests().len() == 5).then_some(())
    })
    .await;
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name", "type"])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&listed.stdout);
    let prefix = format!("{}.", env.settings.amqp.prefix);
    let ours: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, kind)| (name, kind.trim()))
        .filter(|(name, _)| name.starts_with(&prefix))
        .collect();
    assert!(ours.len() >= 4, "{text}");
    for (name, kind) in &ours {
        assert_eq!(*kind, "quorum", "{name}");
    }
}
