//! A slow endpoint does not slow the others.

use std::time::Duration;

use herald_testkit::{Receiver, TestEnv, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_hold_up_a_healthy_one() {
    let env = TestEnv::with(&[
        ("HERALD__WORKER__CONCURRENCY", "16"),
        ("HERALD__WORKER__MAX_INFLIGHT_PER_WEBHOOK", "4"),
    ])
    .await;
    let (api, _d, _w) = env.start_all().await;
    let hanging = Receiver::start().await;
    hanging.respond_after(Duration::from_secs(30));
    let healthy = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(
        &token,
        json!({"name": "hanging", "url": hanging.url("h"), "event_types": ["slow.*"],
               "timeout_seconds": 3, "retry_attempts": 0}),
    )
    .await;
    api.create_webhook(
        &token,
        json!({"name": "healthy", "url": healthy.url("h"), "event_types": ["fast.*"]}),
    )
    .await;
    // Interleaved, so that without a bound every worker slot would soon
    // hold a hanging request and the healthy deliveries would trickle.
    const PAIRS: usize = 30;
    for i in 0..PAIRS {
        api.send_event(&token, json!({"event_type": "slow.job", "data": {"n": i}}))
            .await;
        api.send_event(&token, json!({"event_type": "fast.job", "data": {"n": i}}))
            .await;
    }
    let got = wait_until(
        Duration::from_secs(60),
        "every healthy delivery",
        || async {
            let r = healthy.requests();
            (r.len() == PAIRS).then_some(r)
        },
    )
    .await;
    let span = got
        .last()
        .unwrap()
        .at
        .duration_since(got[0].at)
        .as_secs_f64();
    let rate = (PAIRS - 1) as f64 / span.max(0.001);
    assert!(
        rate >= 20.0,
        "healthy deliveries flow while the other endpoint hangs: {rate:.1}/s over {span:.2} s"
    );
    assert!(
        hanging.requests().len() <= 4,
        "at most four requests at once reach the hanging endpoint, saw {}",
        hanging.requests().len()
    );
}
