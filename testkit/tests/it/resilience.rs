//! Lost connections are reconnected: events keep flowing after the broker
//! drops every connection, after the database kills every session, and
//! after the database crashes.

use std::time::Duration;

use herald_testkit::{PrivatePostgres, Receiver, TestEnv, wait_until};
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

/// Postgres crashing while events flow loses no accepted event. The
/// dispatcher commits an event's rows without waiting for the disk, and
/// acks its message only once a later synchronous commit has flushed the
/// log past them: what the crash takes from the database (the WAL buffers
/// not yet written) the broker still holds, and delivers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_loses_no_accepted_event() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let pg = PrivatePostgres::start_new();
    let env = TestEnv::on_server(&pg.url(), &[("HERALD__AMQP__REQUEUE_PAUSE_MS", "200")]).await;
    let (api, dispatcher, worker) = env.start_all().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("/h")}))
        .await;

    // Eight producers, each sending one event after another until told
    // to stop, keeping the ids the api accepted (202); while the database
    // is down the api may refuse some, which a producer would send again.
    let api = Arc::new(api);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (api, token) = (Arc::clone(&api), token.clone());
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("crash-{p}-{n}");
                    n += 1;
                    let body = json!({"event_type": "a.b", "id": id, "data": {"n": n}});
                    let (status, _) = api
                        .call(
                            reqwest::Method::POST,
                            "/v1/events",
                            Some(&token),
                            Some(&body),
                        )
                        .await;
                    if status == 202 {
                        accepted.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    let accepted_count = || accepted.lock().unwrap().len();

    wait_until(WAIT, "deliveries flowing", || async {
        (receiver.requests_to("/h").len() >= 100).then_some(())
    })
    .await;
    let before = accepted_count();
    pg.crash();
    pg.start();
    wait_until(
        Duration::from_secs(60),
        "events accepted after the restart",
        || async { (accepted_count() >= before + 200).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }

    let accepted = accepted.lock().unwrap().clone();
    let received = wait_until(
        Duration::from_secs(90),
        "every accepted event delivered",
        || async {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for r in receiver.requests_to("/h") {
                if let Some(id) = r.header("webhook-id") {
                    *seen.entry(id.to_owned()).or_default() += 1;
                }
            }
            accepted
                .iter()
                .all(|id| seen.contains_key(id))
                .then_some(seen)
        },
    )
    .await;
    let duplicates: usize = received.values().map(|n| n - 1).sum();
    println!(
        "{} events accepted, {} deliveries received, {duplicates} duplicates",
        accepted.len(),
        received.values().sum::<usize>()
    );
    assert!(
        dispatcher.is_running() && worker.is_running(),
        "no process gave up"
    );
    // Every delivery is on record once the database is back.
    wait_until(WAIT, "every delivery recorded as sent", || async {
        let sent = env
            .count("SELECT count(DISTINCT event_id) FROM deliveries WHERE status = 'success'")
            .await;
        (sent >= i64::try_from(accepted.len()).unwrap()).then_some(())
    })
    .await;
}

/// The sharp case of the test above: events stored and acked while no
/// other commit flushes the log (no worker runs yet, so no attempt is
/// recorded; the WAL writer is made to wait 10 s), then the database
/// crashes. Had the dispatcher acked its events at its own commit (which
/// does not wait for the disk), their rows would be lost with the unwritten
/// log, and their deliveries would be made but never recorded. It acks
/// after a synchronous commit of its own instead, so every delivery ends on
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acked_before_a_database_crash_keep_their_rows() {
    let pg = PrivatePostgres::start_with(&["wal_writer_delay=10s"]);
    let env = TestEnv::on_server(&pg.url(), &[("HERALD__AMQP__REQUEUE_PAUSE_MS", "200")]).await;
    let api = env.start_api().await;
    let dispatcher = env.start_dispatcher().await;
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    api.create_webhook(&token, json!({"name": "h", "url": receiver.url("/h")}))
        .await;

    let ids: Vec<String> = (0..50).map(|n| format!("held-{n}")).collect();
    for id in &ids {
        api.send_event(&token, json!({"event_type": "a.b", "id": id, "data": {}}))
            .await;
    }
    let count = i64::try_from(ids.len()).unwrap();
    wait_until(WAIT, "every delivery stored", || async {
        (env.count("SELECT count(*) FROM deliveries").await == count).then_some(())
    })
    .await;
    wait_until(WAIT, "every event message acked", || async {
        let queue = env.topology.dispatch_queue();
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages",
            ])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .any(|(name, n)| name == queue && n.trim() == "0")
            .then_some(())
    })
    .await;
    pg.crash();
    pg.start();

    let worker = env.start_worker().await;
    wait_until(
        Duration::from_secs(60),
        "every delivery recorded as sent",
        || async {
            let sent = env
                .count("SELECT count(DISTINCT event_id) FROM deliveries WHERE status = 'success'")
                .await;
            (sent == count).then_some(())
        },
    )
    .await;
    assert!(
        dispatcher.is_running() && worker.is_running(),
        "no process gave up"
    );
}
