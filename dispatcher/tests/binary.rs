//! The `herald-dispatcher` binary becomes ready and exits cleanly on
//! SIGTERM.

use std::time::Duration;

use herald_testkit::{ChildProcess, TestEnv, free_port, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_is_ready_then_exits_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let port = free_port();
    let mut vars = env.vars.clone();
    vars.insert(
        "HERALD__DISPATCHER__LISTEN".to_owned(),
        format!("127.0.0.1:{port}"),
    );
    let mut dispatcher = ChildProcess::spawn(env!("CARGO_BIN_EXE_herald-dispatcher"), &[], &vars);
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "the dispatcher ready", || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // Queue depths are exported for every queue of the prefix.
    let metrics = wait_until(
        Duration::from_secs(30),
        "queue depths in /metrics",
        || async {
            let text = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            // A round sets the queues one by one: wait for all of them.
            env.topology
                .queues()
                .iter()
                .all(|q| text.contains(&format!("herald_queue_messages{{queue=\"{q}\"}}")))
                .then_some(text)
        },
    )
    .await;
    for queue in env.topology.queues() {
        assert!(
            metrics.contains(&format!("herald_queue_messages{{queue=\"{queue}\"}} 0")),
            "{queue} is reported empty:\n{metrics}"
        );
    }
    dispatcher.terminate();
    let status = dispatcher
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
}
