//! The machine's own limits, measured in the same run: the receiver alone
//! under HTTP load, RabbitMQ alone (persistent publish with confirms and
//! consume with ack), and Postgres alone (the rows one delivery needs,
//! batched).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;

use crate::receiver::Receiver;
use crate::system::System;

/// Requests per second the receiver answers, with the load generator's own
/// HTTP client (64 at a time).
pub(crate) async fn receiver_alone(receiver: &Receiver, n: usize) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = receiver.url("ceiling");
    let start = Instant::now();
    let results: Vec<bool> = stream::iter(0..n)
        .map(|i| {
            let http = &http;
            let url = &url;
            async move {
                http.post(url.as_str())
                    .header("webhook-id", format!("ceiling-{i}"))
                    .body(r#"{"id":"x","type":"order.created","data":{"amount":4200}}"#)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count();
    let rate = ok as f64 / start.elapsed().as_secs_f64();
    receiver.reset();
    Ok(rate)
}

/// Messages per second through one durable queue: persistent publishes
/// with confirms (1,000 in flight) and a consumer acking each (prefetch 256).
pub(crate) async fn rabbitmq_alone(n: usize) -> anyhow::Result<f64> {
    let url = secrecy::SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f");
    let conn = herald_shared::amqp::connect(&url, "herald-bench ceiling").await?;
    let queue = format!("herald_bench_ceiling_{}", uuid::Uuid::new_v4().simple());
    let publisher = herald_shared::amqp::confirmed_channel(&conn).await?;
    publisher
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let consumer_ch = conn.create_channel().await?;
    consumer_ch
        .basic_qos(256, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.clone().into(),
            "ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                    got += 1;
                }
                _ => break,
            }
        }
        got
    });
    let body = br#"{"delivery_id":"00000000-0000-0000-0000-000000000000","data":{"amount":4200}}"#;
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(1000) {
        let confirms = chunk.iter().map(|_| {
            herald_shared::amqp::publish_confirmed(
                &publisher,
                "",
                &queue,
                body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
        });
        futures_util::future::try_join_all(confirms).await?;
    }
    let got = consuming.await?;
    let rate = got as f64 / start.elapsed().as_secs_f64();
    publisher
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(rate)
}

/// Deliveries per second Postgres takes when each needs what Herald writes
/// for it (an event row, a delivery row, an attempt row and the delivery's
/// status update), 100 deliveries per transaction.
pub(crate) async fn postgres_alone(sys: &System, n: usize) -> anyhow::Result<f64> {
    sys.create_webhook("ceiling", "http://127.0.0.1:9/ceiling", &["*"])
        .await?;
    let mut db = sys.db().await?;
    let tenant: uuid::Uuid = sys.tenant_id.parse()?;
    let webhook: uuid::Uuid = db
        .query_one("SELECT id FROM webhooks LIMIT 1", &[])
        .await?
        .get(0);
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let size = 100.min(n - done);
        let ids: Vec<String> = (done..done + size)
            .map(|i| format!("ceiling-{i}"))
            .collect();
        let deliveries: Vec<uuid::Uuid> = (0..size).map(|_| uuid::Uuid::now_v7()).collect();
        let attempts: Vec<uuid::Uuid> = (0..size).map(|_| uuid::Uuid::now_v7()).collect();
        let tx = db.transaction().await?;
        tx.execute(
            "INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
             SELECT $1, i, 'order.created', '{\"amount\": 4200}'::jsonb, now(), now() FROM unnest($2::text[]) AS i",
            &[&tenant, &ids],
        )
        .await?;
        tx.execute(
            "INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type)
             SELECT d, $1, e, now(), $2, 'order.created' FROM unnest($3::uuid[], $4::text[]) AS t(d, e)",
            &[&tenant, &webhook, &deliveries, &ids],
        )
        .await?;
        tx.commit().await?;
        let tx = db.transaction().await?;
        tx.execute(
            "INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, status_code)
             SELECT a, d, 1, now(), 1, 204 FROM unnest($1::uuid[], $2::uuid[]) AS t(a, d)",
            &[&attempts, &deliveries],
        )
        .await?;
        tx.execute(
            "UPDATE deliveries SET status = 'success', attempt_count = 1, updated_at = now() WHERE id = ANY($1)",
            &[&deliveries],
        )
        .await?;
        tx.commit().await?;
        done += size;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
