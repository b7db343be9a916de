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
