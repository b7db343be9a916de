//! The worker as a real process: killed mid-flight it loses nothing, and
//! SIGTERM makes it drain and exit cleanly.

use std::collections::HashSet;
use std::time::Duration;

use herald_testkit::{ApiHandle, ChildProcess, Receiver, TestEnv, free_port, wait_until};
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_herald-worker");
const EVENTS: usize = 60;

fn worker_vars(env: &TestEnv) -> std::collections::HashMap<String, String> {
    let mut vars = env.vars.clone();
    vars.insert(
        "HERALD__WORKER__LISTEN".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    );
    vars
}

/// A receiver answering after `delay`, a webhook for every type on it
/// (its `timeout_seconds` as given), and five events accepted; answers the
/// receiver and the events' ids.
async fn five_events_for_a_slow_endpoint(
    api: &ApiHandle,
    delay: Duration,
    timeout_seconds: u64,
) -> (Receiver, HashSet<String>) {
    let receiver = Receiver::start().await;
    receiver.respond_after(delay);
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "slow", "url": receiver.url("slow"), "event_types": ["*"],
               "timeout_seconds": timeout_seconds}),
    )
    .await;
    let mut sent = HashSet::new();
    for i in 0..5 {
        sent.insert(
            api.send_event(&token, json!({"event_type": "job.done", "data": {"n": i}}))
                .await,
        );
    }
    (receiver, sent)
}

/// Once the five requests are in flight: SIGTERM, and the exit status
/// within `exit_within`.
async fn terminate_with_five_in_flight(
    worker: &mut ChildProcess,
    receiver: &Receiver,
    exit_within: Duration,
) -> std::process::ExitStatus {
    wait_until(
        Duration::from_secs(20),
        "five requests in flight",
        || async { (receiver.requests().len() == 5).then_some(()) },
    )
    .await;
    worker.terminate();
    worker
        .wait_exit(exit_within)
        .await
        .expect("exits after SIGTERM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_delivery() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let _dispatcher = env.start_dispatcher().await;
    let receiver = Receiver::start().await;
    // Slow answers keep many deliveries in flight when the worker dies.
    receiver.respond_after(Duration::from_millis(400));
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "slow", "url": receiver.url("slow"), "event_types": ["*"]}),
    )
    .await;
    let mut sent = HashSet::new();
    for i in 0..EVENTS {
        sent.insert(
            api.send_event(&token, json!({"event_type": "job.done", "data": {"n": i}}))
                .await,
        );
    }
    // Every event is stored with its delivery before any worker runs.
    wait_until(Duration::from_secs(20), "deliveries created", || async {
        (env.count("SELECT count(*) FROM deliveries").await == i64::try_from(EVENTS).unwrap())
            .then_some(())
    })
    .await;

    let mut first = ChildProcess::spawn(WORKER, &[], &worker_vars(&env));
    wait_until(Duration::from_secs(20), "the first requests", || async {
        (receiver.requests().len() >= 5).then_some(())
    })
    .await;
    first.kill();
    let seen_before_kill = receiver.requests().len();
    assert!(
        seen_before_kill < EVENTS,
        "the kill came while deliveries were in flight"
    );

    let mut second = ChildProcess::spawn(WORKER, &[], &worker_vars(&env));
    let received = wait_until(Duration::from_secs(60), "every event delivered", || async {
        let ids: HashSet<String> = receiver
            .requests()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect();
        (ids.len() == EVENTS).then_some(ids)
    })
    .await;
    assert_eq!(received, sent, "every accepted event reached the endpoint");
    wait_until(
        Duration::from_secs(20),
        "every delivery recorded as success",
        || async {
            (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
                .await
                == i64::try_from(EVENTS).unwrap())
            .then_some(())
        },
    )
    .await;

    // SIGTERM: the worker stops consuming, drains and exits with success.
    second.terminate();
    let status = second
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_deliveries_in_flight_before_exiting() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let _dispatcher = env.start_dispatcher().await;
    let (receiver, _) =
        five_events_for_a_slow_endpoint(&api, Duration::from_millis(1500), 10).await;
    let mut worker = ChildProcess::spawn(WORKER, &[], &worker_vars(&env));
    let status =
        terminate_with_five_in_flight(&mut worker, &receiver, Duration::from_secs(20)).await;
    assert!(status.success(), "clean exit, got {status}");
    // The answers came back after the signal and were still recorded.
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await,
        5
    );
    assert_eq!(receiver.requests().len(), 5, "nothing was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_timeout_leaves_unfinished_deliveries_in_the_queue() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let _dispatcher = env.start_dispatcher().await;
    // Answers slower than the drain: the worker must give them up.
    let (receiver, sent) = five_events_for_a_slow_endpoint(&api, Duration::from_secs(8), 30).await;
    let mut vars = worker_vars(&env);
    vars.insert(
        "HERALD__WORKER__SHUTDOWN_TIMEOUT_SECONDS".to_owned(),
        "1".to_owned(),
    );
    let mut worker = ChildProcess::spawn(WORKER, &[], &vars);
    // Soon after the drain timeout, not after the answers.
    let status =
        terminate_with_five_in_flight(&mut worker, &receiver, Duration::from_secs(6)).await;
    assert!(status.success(), "clean exit, got {status}");
    // None completed: every one is still pending, none recorded as an
    // attempt, and all five are back in the deliveries queue.
    assert_eq!(
        env.count("SELECT count(*) FROM deliveries WHERE status = 'pending'")
            .await,
        5
    );
    assert_eq!(env.count("SELECT count(*) FROM delivery_attempts").await, 0);
    // The broker requeues them as the channel closes.
    let (_conn, ch) = env.amqp().await;
    wait_until(
        Duration::from_secs(10),
        "the unfinished deliveries back in the queue",
        || async {
            let depth = ch
                .queue_declare(
                    env.topology.deliveries().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .expect("the deliveries queue")
                .message_count();
            (depth == 5).then_some(())
        },
    )
    .await;

    // The next worker delivers them.
    receiver.respond_after(Duration::ZERO);
    let _next = ChildProcess::spawn(WORKER, &[], &worker_vars(&env));
    wait_until(Duration::from_secs(30), "all five delivered", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 5)
            .then_some(())
    })
    .await;
    let ids: HashSet<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(ids, sent);
}
