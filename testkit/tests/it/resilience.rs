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
