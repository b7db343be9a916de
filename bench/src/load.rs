//! Load generation and what the receiver saw: events sent over HTTP (one
//! by one or in batches), straight over AMQP, or at a fixed rate, each with
//! the time it was accepted; then delivery counts, losses, duplicates and
//! latency from those timestamps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::json;
use tokio::sync::Mutex;

use crate::receiver::Receiver;
use crate::system::System;

/// When each event was accepted (202 or broker confirm), by id.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) accepted: HashMap<String, Instant>,
    pub(crate) first_send: Option<Instant>,
    pub(crate) last_accept: Option<Instant>,
}

impl Sent {
    pub(crate) fn ingest_rate(&self) -> f64 {
        match (self.first_send, self.last_accept) {
            (Some(a), Some(b)) => {
                self.accepted.len() as f64 / b.duration_since(a).as_secs_f64().max(1e-6)
            }
            _ => 0.0,
        }
    }
}

fn event(id: &str, event_type: &str) -> serde_json::Value {
    json!({"id": id, "event_type": event_type, "data": {"order": id, "amount": 4200, "currency": "EUR"}})
}

/// `n` events through `POST /v1/events`, `concurrency` requests at a time.
pub(crate) async fn http_single(
    sys: &System,
    run: &str,
    n: usize,
    event_type: &str,
    concurrency: usize,
) -> anyhow::Result<Sent> {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let start = Instant::now();
    sent.lock().await.first_send = Some(start);
    let results: Vec<anyhow::Result<()>> = stream::iter(0..n)
        .map(|i| {
            let sent = Arc::clone(&sent);
            async move {
                let id = format!("{run}-{i}");
                sys.http
                    .post(format!("{}/v1/events", sys.api))
                    .bearer_auth(&sys.token)
                    .json(&event(&id, event_type))
                    .send()
                    .await?
                    .error_for_status()?;
                let now = Instant::now();
                let mut s = sent.lock().await;
                s.accepted.insert(id, now);
                s.last_accept = Some(now);
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(Arc::try_unwrap(sent).ok().context("sent")?.into_inner())
}

/// `n` events through `POST /v1/events/batch`, `size` per batch.
pub(crate) async fn http_batch(
    sys: &System,
    run: &str,
    n: usize,
    size: usize,
    concurrency: usize,
) -> anyhow::Result<Sent> {
    let sent = Arc::new(Mutex::new(Sent::default()));
    sent.lock().await.first_send = Some(Instant::now());
    let batches: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(size)
        .map(<[usize]>::to_vec)
        .collect();
    let results: Vec<anyhow::Result<()>> = stream::iter(batches)
        .map(|batch| {
            let sent = Arc::clone(&sent);
            async move {
                let ids: Vec<String> = batch.iter().map(|i| format!("{run}-{i}")).collect();
                let events: Vec<_> = ids.iter().map(|id| event(id, "order.created")).collect();
                sys.http
                    .post(format!("{}/v1/events/batch", sys.api))
                    .bearer_auth(&sys.token)
                    .json(&json!({"events": events}))
                    .send()
                    .await?
                    .error_for_status()?;
                let now = Instant::now();
                let mut s = sent.lock().await;
                for id in ids {
                    s.accepted.insert(id, now);
                }
                s.last_accept = Some(now);
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(Arc::try_unwrap(sent).ok().context("sent")?.into_inner())
}

/// `n` events published straight to the events exchange with confirms,
/// `window` unconfirmed at a time.
pub(crate) async fn amqp(sys: &System, run: &str, n: usize, window: usize) -> anyhow::Result<Sent> {
    let settings = herald_shared::runtime::config::Settings::load_from(&sys.vars)?;
    let topology = herald_shared::amqp::Topology::new(&settings.amqp)?;
    let conn = herald_shared::amqp::connect(&settings.amqp.url, "herald-bench producer").await?;
    let ch = herald_shared::amqp::confirmed_channel(&conn).await?;
    let exchange = topology.events_exchange();
    let mut sent = Sent {
        first_send: Some(Instant::now()),
        ..Sent::default()
    };
    let ids: Vec<String> = (0..n).map(|i| format!("{run}-{i}")).collect();
    for chunk in ids.chunks(window) {
        let confirms = chunk.iter().map(|id| {
            let mut body = event(id, "order.created");
            body["tenant_id"] = json!(sys.tenant_id);
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let ch = &ch;
            let exchange = &exchange;
            async move {
                herald_shared::amqp::publish_confirmed(
                    ch,
                    exchange,
                    "order.created",
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
            }
        });
        futures_util::future::try_join_all(confirms).await?;
        let now = Instant::now();
        for id in chunk {
            sent.accepted.insert(id.clone(), now);
        }
        sent.last_accept = Some(now);
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(sent)
}

/// Events through `POST /v1/events` at a steady `rate` per second for
/// `duration`, each sent on its own schedule (an open loop: a slow answer
/// does not slow the offered rate).
pub(crate) async fn http_at_rate(
    sys: &System,
    run: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Sent> {
    http_at_rate_as(sys, &sys.token, run, rate, duration).await
}

/// As [`http_at_rate`], as the tenant of `token`.
pub(crate) async fn http_at_rate_as(
    sys: &System,
    token: &str,
    run: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Sent> {
    let n = (rate * duration.as_secs_f64()) as usize;
    let sent = Arc::new(Mutex::new(Sent::default()));
    let start = Instant::now();
    sent.lock().await.first_send = Some(start);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let sent = Arc::clone(&sent);
        let http = sys.http.clone();
        let url = format!("{}/v1/events", sys.api);
        let token = token.to_owned();
        let id = format!("{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let ok = http
                .post(url)
                .bearer_auth(token)
                .json(&event(&id, "order.created"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                let now = Instant::now();
                let mut s = sent.lock().await;
                s.accepted.insert(id, now);
                s.last_accept = Some(now);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(Arc::try_unwrap(sent).ok().context("sent")?.into_inner())
}

/// Waits until the receiver has `expected` deliveries or `timeout` passes
/// with no progress for 20 s.
pub(crate) async fn wait_delivered(receiver: &Receiver, expected: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = (0, Instant::now());
    while Instant::now() < deadline {
        let n = receiver.total();
        if n >= expected {
            // A moment more, so duplicates that are on their way are counted.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(20) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub(crate) max_ms: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Delivered {
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    /// Deliveries per second, first arrival to last.
    pub(crate) rate: f64,
    /// Accepted → received at the endpoint, per delivery.
    pub(crate) latency: Latency,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What the receiver got for these events, `hooks` deliveries each.
pub(crate) fn analyze(receiver: &Receiver, sent: &Sent, hooks: &[String]) -> Delivered {
    let arrivals = receiver.lock();
    let expected = (sent.accepted.len() * hooks.len()) as u64;
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut latencies = Vec::with_capacity(expected as usize);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for (id, accepted) in &sent.accepted {
        for hook in hooks {
            if let Some(times) = arrivals.by_key.get(&(id.clone(), hook.clone())) {
                delivered += 1;
                duplicates += times.len() as u64 - 1;
                let at = times[0];
                latencies.push(at.saturating_duration_since(*accepted).as_secs_f64() * 1000.0);
                first = Some(first.map_or(at, |f| f.min(at)));
                last = Some(last.map_or(at, |l| l.max(at)));
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let rate = match (first, last) {
        (Some(a), Some(b)) if b > a => {
            delivered.saturating_sub(1) as f64 / b.duration_since(a).as_secs_f64()
        }
        _ => 0.0,
    };
    Delivered {
        expected,
        delivered,
        lost: expected - delivered,
        duplicates,
        rate,
        latency: Latency {
            p50_ms: percentile(&latencies, 0.50),
            p90_ms: percentile(&latencies, 0.90),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(0.0),
        },
    }
}
