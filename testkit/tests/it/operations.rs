//! What operators rely on: every process's `/metrics` moves with a
//! delivery and passes `promtool check metrics`, and `/readyz` follows the
//! broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use herald_testkit::{Proxy, Receiver, TestEnv, wait_until};
use secrecy::ExposeSecret as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn scrape(port: u16) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics reachable");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/plain")),
        "the exposition content type"
    );
    response.text().await.expect("metrics text")
}

/// Every sample of the text, by `name{labels}` as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} is exported; got {samples:?}"))
}

/// `promtool`: from `PROMTOOL`, else the `PATH`, else the copy
/// `scripts/fetch-promtool.sh` unpacks from Debian's package (fetching it
/// the first time), so the test command needs no step before it.
fn promtool() -> String {
    if let Ok(p) = std::env::var("PROMTOOL") {
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-promtool.sh");
    let out = Command::new(script)
        .output()
        .expect("scripts/fetch-promtool.sh runs");
    assert!(
        out.status.success(),
        "fetching promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn promtool_check(text: &str, process: &str) {
    use std::io::Write as _;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics of the {process}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_exports_series_that_move_with_a_delivery_and_pass_promtool() {
    let env = TestEnv::new().await;
    let (api, dispatcher, worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let ports = [
        ("api", api.process.port),
        ("dispatcher", dispatcher.port),
        ("worker", worker.port),
    ];
    // The dispatcher reports queue depths once it has read them.
    wait_until(WAIT, "queue depths", || async {
        scrape(dispatcher.port)
            .await
            .contains("herald_queue_messages{")
            .then_some(())
    })
    .await;
    let mut before = HashMap::new();
    for (name, port) in ports {
        let text = scrape(port).await;
        promtool_check(&text, name);
        before.insert(name, samples(&text));
    }

    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the delivery", || async {
        (env.count("SELECT count(*) FROM deliveries WHERE status = 'success'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        receiver.requests()[0].header("webhook-id"),
        Some(id.as_str())
    );

    // Counters are bumped as the work happens; the attempt's are bumped
    // just after its record is queued, so wait for them.
    let after = |name: &'static str, port: u16| async move {
        let text = scrape(port).await;
        promtool_check(&text, name);
        samples(&text)
    };
    let moved = |name: &'static str, series: &'static str, by: f64| {
        let before = &before;
        async move {
            let port = ports
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p)
                .expect("a process");
            let was = before[name].get(series).copied().unwrap_or(0.0);
            wait_until(WAIT, &format!("{series} on the {name}"), || async {
                let now = value(&after(name, port).await, series);
                ((now - was - by).abs() < 1e-9).then_some(())
            })
            .await;
        }
    };
    moved("api", "herald_events_received_total{via=\"http\"}", 1.0).await;
    moved("dispatcher", "herald_deliveries_created_total", 1.0).await;
    moved(
        "worker",
        "herald_delivery_attempts_total{outcome=\"success\"}",
        1.0,
    )
    .await;
    moved(
        "worker",
        "herald_deliveries_completed_total{status=\"success\"}",
        1.0,
    )
    .await;
    moved("worker", "herald_delivery_duration_seconds_count", 1.0).await;
    moved("worker", "herald_event_to_delivery_seconds_count", 1.0).await;
    let worker_now = after("worker", worker.port).await;
    // A loopback delivery lands in the 5 s bucket, and the buckets span
    // 5 ms to 60 s.
    assert_eq!(
        value(
            &worker_now,
            "herald_delivery_duration_seconds_bucket{le=\"5\"}"
        ),
        1.0
    );
    for le in ["0.005", "60", "+Inf"] {
        value(
            &worker_now,
            &format!("herald_event_to_delivery_seconds_bucket{{le=\"{le}\"}}"),
        );
    }
    assert_eq!(value(&worker_now, "herald_inflight_deliveries"), 0.0);
    value(&worker_now, "herald_delivery_backlog_age_seconds");
    let dispatcher_now = after("dispatcher", dispatcher.port).await;
    for queue in [
        "dispatch",
        "deliveries",
        "deliveries.failed",
        "events.invalid",
        "retry.1s",
    ] {
        value(
            &dispatcher_now,
            &format!(
                "herald_queue_messages{{queue=\"{}.{queue}\"}}",
                env.topology.prefix()
            ),
        );
    }
}

async fn ready(port: u16) -> (u16, serde_json::Value) {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        ),
        Err(_) => (0, serde_json::Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_false_without_the_broker_and_true_when_it_returns() {
    // The broker the other tests use (`HERALD__AMQP__URL`, else local).
    let plain = TestEnv::new().await;
    let amqp = url::Url::parse(plain.settings.amqp.url.expose_secret()).expect("an AMQP URL");
    let broker: SocketAddr = tokio::net::lookup_host((
        amqp.host_str().expect("a host"),
        amqp.port().unwrap_or(5672),
    ))
    .await
    .expect("the broker resolves")
    .next()
    .expect("an address");
    drop(plain);
    let proxy = Proxy::start(broker).await;
    let mut through = amqp.clone();
    through.set_host(Some("127.0.0.1")).expect("a host");
    through.set_port(Some(proxy.port())).expect("a port");
    let url = through.to_string();
    let env = TestEnv::with(&[("HERALD__AMQP__URL", url.as_str())]).await;
    let (api, dispatcher, worker) = env.start_all().await;
    let ports = [
        ("api", api.process.port),
        ("dispatcher", dispatcher.port),
        ("worker", worker.port),
    ];
    for (name, port) in ports {
        wait_until(WAIT, &format!("the {name} ready"), || async {
            (ready(port).await.0 == 200).then_some(())
        })
        .await;
    }

    proxy.cut();
    for (name, port) in ports {
        let body = wait_until(WAIT, &format!("the {name} not ready"), || async {
            let (status, body) = ready(port).await;
            (status == 503).then_some(body)
        })
        .await;
        assert_eq!(body["broker"], false, "{name}: {body}");
        assert_eq!(body["database"], true, "{name}: {body}");
        // Liveness does not depend on the broker.
        let live = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .expect("healthz reachable");
        assert_eq!(live.status(), 200);
    }

    proxy.restore();
    for (name, port) in ports {
        wait_until(WAIT, &format!("the {name} ready again"), || async {
            (ready(port).await.0 == 200).then_some(())
        })
        .await;
    }
    // And the pipeline works through the restored broker.
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    wait_until(WAIT, "the delivery after the broker returned", || async {
        receiver
            .requests()
            .iter()
            .any(|r| r.header("webhook-id") == Some(id.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_age_shows_how_late_deliveries_are_taken_up() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let _dispatcher = env.start_dispatcher().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("h")}))
        .await;
    let id = api
        .send_event(&token, json!({"event_type": "a.b", "data": {}}))
        .await;
    // The age counts from the dispatcher's receipt (`received_at`), which
    // may come a moment after the 202 while the dispatcher starts.
    env.wait_event_stored(&id).await;
    // No worker for three seconds: the delivery waits in the queue.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let worker = env.start_worker().await;
    // Published with the next ten-second window.
    let age = wait_until(Duration::from_secs(25), "the backlog age", || async {
        let age = value(
            &samples(&scrape(worker.port).await),
            "herald_delivery_backlog_age_seconds",
        );
        (age > 0.0).then_some(age)
    })
    .await;
    assert!((3.0..10.0).contains(&age), "waited about 3 s, got {age}");
    assert_eq!(receiver.requests().len(), 1);
}
