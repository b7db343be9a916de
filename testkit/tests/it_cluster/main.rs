//! Herald on a real three-node RabbitMQ cluster with quorum queues
//! (`testkit::RabbitCluster`): the node that leads the deliveries queue is
//! stopped while a few thousand events flow, and started again. Every event
//! the api accepted reaches the receiver at least once, and no process
//! exits.
//!
//! A test target of its own (`cargo test -p herald-testkit --test
//! cluster`), out of the `it` suite: the cluster alone takes half a minute
//! to start on 2 cores. `transient` restarts a broker of its own (one node)
//! under transient delivery messages.

mod transient;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_testkit::{RabbitCluster, Receiver, TestEnv, wait_until};
use serde_json::json;

/// Events sent in all.
const EVENTS: usize = 3_000;
/// Concurrent senders.
const SENDERS: usize = 8;
/// How long a sender keeps trying one event the api answers with a 5xx
/// (or cannot take) before it gives up on it.
const SEND_PATIENCE: Duration = Duration::from_secs(60);
/// Progress made while the node is down before it is started again: this
/// many more events accepted and delivered.
const PROGRESS_WHILE_DOWN: usize = 300;
/// How long every accepted event has to reach the receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_node_that_leads_the_deliveries_queue_loses_no_accepted_event() {
    let cluster = RabbitCluster::start().await;
    let urls = cluster.urls();
    let env = TestEnv::with(&[
        ("HERALD__AMQP__URLS", urls.as_str()),
        ("HERALD__AMQP__QUEUE_TYPE", "quorum"),
    ])
    .await;
    // `urls` replaces `url` (still the machine's own broker here).
    assert_eq!(env.settings.amqp.broker_urls().len(), 3);
    let api = env.start_api().await;
    let dispatcher = env.start_dispatcher().await;
    let workers = [env.start_worker().await, env.start_worker().await];
    // The queues are declared (and bound) before any event is sent.
    for port in std::iter::once(dispatcher.port).chain(workers.iter().map(|w| w.port)) {
        wait_until(Duration::from_secs(60), "ready", || async {
            reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
                .then_some(())
        })
        .await;
    }
    let receiver = Receiver::start().await;
    let (_, token) = api.create_tenant("acme").await;
    // Failed attempts come back after a second, ten times.
    api.create_webhook(
        &token,
        json!({"name": "h", "url": receiver.url("h"), "event_types": ["*"],
               "retry_attempts": 10, "retry_schedule": ["1s"]}),
    )
    .await;

    let accepted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(SENDERS);
    for first in 0..SENDERS {
        let http = api.http.clone();
        let url = format!("{}/v1/events", api.base);
        let token = token.clone();
        let accepted = Arc::clone(&accepted);
        let done = Arc::clone(&done);
        senders.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in (first..EVENTS).step_by(SENDERS) {
                let id = format!("cluster-{n:05}");
                if send(&http, &url, &token, &id, n).await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    mine.push(id);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            mine
        }));
    }

    // A third in: stop the node that leads the deliveries queue.
    let third = EVENTS / 3;
    wait_until(
        Duration::from_secs(120),
        "a third of the events accepted",
        || async { (accepted.load(Ordering::Relaxed) >= third).then_some(()) },
    )
    .await;
    let deliveries = format!("{}.deliveries", env.settings.amqp.prefix);
    let leader = wait_until(
        Duration::from_secs(30),
        "the deliveries queue's leader",
        || async { cluster.leader_of(&deliveries).await },
    )
    .await;
    let names = cluster.node_names();
    let leader_name = &names[leader];
    let accepted_at_stop = accepted.load(Ordering::Relaxed);
    let delivered_at_stop = distinct_ids(&receiver).len();
    eprintln!(
        "stopping {leader_name}, the leader of {deliveries}, with {accepted_at_stop} events \
         accepted and {delivered_at_stop} delivered"
    );
    let stopped_at = Instant::now();
    cluster.stop_node(leader).await;

    // Events keep being accepted and delivered without it.
    wait_until(
        Duration::from_secs(120),
        "events accepted and delivered while the node is down",
        || async {
            let sending_over = done.load(Ordering::Relaxed) == EVENTS;
            let accepted_now = accepted.load(Ordering::Relaxed);
            let delivered = distinct_ids(&receiver).len();
            // Past the end of the events, all of them delivered counts too.
            let more_accepted = accepted_now >= accepted_at_stop + PROGRESS_WHILE_DOWN;
            let more_delivered = delivered >= delivered_at_stop + PROGRESS_WHILE_DOWN;
            let all_delivered = sending_over && delivered >= accepted_now;
            ((more_accepted || sending_over) && (more_delivered || all_delivered)).then_some(())
        },
    )
    .await;
    let new_leader = cluster.leader_of(&deliveries).await;
    eprintln!(
        "{} accepted, {} delivered {:?} after the stop; the deliveries queue's leader now: {:?}",
        accepted.load(Ordering::Relaxed),
        distinct_ids(&receiver).len(),
        stopped_at.elapsed(),
        new_leader.map(|i| &names[i])
    );
    cluster.start_node(leader).await;
    eprintln!("{leader_name} is back after {:?}", stopped_at.elapsed());

    let mut sent = HashSet::new();
    for sender in senders {
        sent.extend(sender.await.expect("a sender finished"));
    }
    eprintln!("{} of {EVENTS} events accepted", sent.len());
    assert!(
        sent.len() > accepted_at_stop || accepted_at_stop == EVENTS,
        "no event was accepted after the node stopped"
    );

    // Every accepted event reaches the receiver.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let delivered = distinct_ids(&receiver);
        let missing: Vec<&String> = sent.iter().filter(|id| !delivered.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted events not delivered within {DELIVERY_TIMEOUT:?}, such as {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let requests = receiver.requests();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        if let Some(id) = r.header("webhook-id") {
            *per_id.entry(id).or_default() += 1;
        }
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    let unaccepted = per_id.keys().filter(|id| !sent.contains(**id)).count();
    eprintln!(
        "{} requests for {} events: {duplicates} duplicates; {unaccepted} delivered events \
         the api never answered 202",
        requests.len(),
        per_id.len()
    );

    // Nothing gave up, and the api is ready.
    assert!(api.process.is_running(), "the api exited");
    assert!(dispatcher.is_running(), "the dispatcher exited");
    for (i, worker) in workers.iter().enumerate() {
        assert!(worker.is_running(), "worker {i} exited");
    }
    wait_until(Duration::from_secs(60), "the api ready", || async {
        reqwest::get(format!("{}/readyz", api.base))
            .await
            .is_ok_and(|r| r.status() == 200)
            .then_some(())
    })
    .await;
}

/// Posts one event (with its own `id`) until the api answers `202`, again
/// with the same id while it answers a 5xx or cannot be reached (a repeated
/// id is deduplicated); `false` if it never accepted it within
/// `SEND_PATIENCE`. Any other answer fails the test.
async fn send(http: &reqwest::Client, url: &str, token: &str, id: &str, n: usize) -> bool {
    let body = json!({"id": id, "event_type": "cluster.test", "data": {"n": n}});
    let deadline = Instant::now() + SEND_PATIENCE;
    loop {
        let answer = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => return true,
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                panic!("event {id}: {status} {text}");
            }
            // A 5xx while the api reconnects, or no answer: try again.
            Ok(_) | Err(_) => {}
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The event ids (`webhook-id`) the receiver has seen.
fn distinct_ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect()
}
