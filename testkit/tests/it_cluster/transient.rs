//! Transient delivery messages (`amqp.delivery_messages = "transient"`) on
//! a broker of the test's own (`RabbitCluster::single`), restarted while
//! deliveries wait in its queue: the restart loses the messages (checked:
//! the queue comes back empty), and the dispatcher's sweeper, finding the
//! broker's epoch queue gone (with its marker message), publishes every
//! pending delivery again. Each event reaches the receiver exactly once.

use std::collections::HashMap;
use std::time::Duration;

use herald_shared::amqp::{Brokers, queue_depths};
use herald_testkit::{ApiHandle, RabbitCluster, Receiver, TestEnv, wait_until};
use serde_json::json;

/// Events sent before each restart.
const EVENTS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_delivery_whose_message_was_transient() {
    let broker = RabbitCluster::single().await;
    let url = broker.urls();
    let env = TestEnv::with(&[
        ("HERALD__AMQP__URLS", url.as_str()),
        ("HERALD__AMQP__DELIVERY_MESSAGES", "transient"),
    ])
    .await;
    assert!(env.topology.transient_deliveries());
    let api = env.start_api().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "event_types": ["*"]}),
    )
    .await;

    // 1. The dispatcher stores and publishes while no worker runs, then
    // stops; the broker restarts with the messages in its queue.
    let dispatcher = env.start_dispatcher().await;
    let epoch = env.topology.epoch_queue();
    let deliveries = env.topology.deliveries();
    wait_until(Duration::from_secs(30), "the epoch marked", || async {
        (depth(&env, &epoch).await? == 1).then_some(())
    })
    .await;
    send(&api, &token, "first", EVENTS).await;
    wait_until(
        Duration::from_secs(60),
        "every delivery message in the queue",
        || async { (depth(&env, &deliveries).await? >= EVENTS as u32).then_some(()) },
    )
    .await;
    dispatcher.stop().await;
    broker.stop_node(0).await;
    broker.start_node(0).await;
    // What the sweeper is for: the messages are gone, and so is the epoch.
    assert_eq!(
        depth(&env, &deliveries).await,
        Some(0),
        "transient messages survived"
    );
    assert_eq!(depth(&env, &epoch).await, None, "the epoch queue survived");
    let pending = "SELECT count(*) FROM deliveries WHERE status = 'pending'";
    assert_eq!(env.count(pending).await, EVENTS as i64);

    // A dispatcher starting finds the epoch gone and publishes them again.
    let dispatcher = env.start_dispatcher().await;
    let worker = env.start_worker().await;
    wait_delivered(&receiver, EVENTS).await;

    // 2. The same restart under a running dispatcher, with the worker away.
    worker.stop().await;
    send(&api, &token, "second", EVENTS).await;
    wait_until(
        Duration::from_secs(60),
        "the second events' messages in the queue",
        || async { (depth(&env, &deliveries).await? >= EVENTS as u32).then_some(()) },
    )
    .await;
    broker.stop_node(0).await;
    broker.start_node(0).await;
    let worker = env.start_worker().await;
    wait_delivered(&receiver, 2 * EVENTS).await;

    // Exactly once each: the republished messages were the only ones.
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        let id = r.header("webhook-id").expect("webhook-id").to_owned();
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 2 * EVENTS);
    let repeated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(env.count(pending).await, 0);
    assert!(dispatcher.is_running() && worker.is_running());
}

/// Sends `n` events, ids `<tag>-<i>`, each until it is answered 202 (just
/// after a broker restart the api's first publish may find its connection
/// gone and answer 503; the same id again is the same event).
async fn send(api: &ApiHandle, token: &str, tag: &str, n: usize) {
    for i in 0..n {
        let body = json!({"id": format!("{tag}-{i:04}"), "event_type": "invoice.created", "data": {"n": i}});
        wait_until(Duration::from_secs(60), "an event accepted", || async {
            let (status, _) = api
                .call(
                    reqwest::Method::POST,
                    "/v1/events",
                    Some(token),
                    Some(&body),
                )
                .await;
            (status == reqwest::StatusCode::ACCEPTED).then_some(())
        })
        .await;
    }
}

/// Messages in `queue`, `None` when it does not exist or the broker does
/// not answer.
async fn depth(env: &TestEnv, queue: &str) -> Option<u32> {
    let conn = Brokers::from_settings(&env.settings.amqp)
        .connect("herald-test depth")
        .await
        .ok()?;
    let depth = queue_depths(&conn, &[queue.to_owned()]).await.ok()?[0];
    let _ = conn.close(200, "done".into()).await;
    depth
}

/// Waits until `n` distinct events have reached the receiver.
async fn wait_delivered(receiver: &Receiver, n: usize) {
    wait_until(
        Duration::from_secs(120),
        "every event delivered",
        || async {
            let ids: std::collections::HashSet<String> = receiver
                .requests()
                .iter()
                .filter_map(|r| r.header("webhook-id").map(str::to_owned))
                .collect();
            (ids.len() >= n).then_some(())
        },
    )
    .await;
}
