//! `herald-bench --retention N`: retention over N stored deliveries, by
//! dropping day partitions (what Herald does) against deleting the same
//! rows in batches of 1,000 events (what it did before), each in a fresh
//! system while a steady 200 events/s flows. Reports how long retention
//! took, the WAL it wrote (the load's own WAL, measured just before,
//! taken off), and the delivery latency of the events sent while it ran.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::load::{self, Delivered, Sent};
use crate::receiver::Receiver;
use crate::system::System;

/// Days the stored deliveries are spread over, all past retention.
const DAYS: i64 = 10;
/// Deliveries per event in the stored history.
const FAN_OUT: usize = 10;
/// The steady load while retention runs.
const RATE: f64 = 200.0;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    DropPartitions,
    BatchedDelete,
}

#[derive(Debug, Serialize)]
pub(crate) struct RetentionRun {
    mode: Mode,
    stored_deliveries: i64,
    fill_seconds: f64,
    retention_seconds: f64,
    wal_bytes: f64,
    /// The events, deliveries and attempts tables' size before and after.
    bytes_before: i64,
    bytes_after: i64,
    /// Events sent while retention ran (and the second after).
    during: Delivered,
    /// The whole steady load, retention or not.
    all: Delivered,
}

pub(crate) async fn compare(
    receiver: &Receiver,
    deliveries: usize,
) -> anyhow::Result<Vec<RetentionRun>> {
    let mut runs = Vec::new();
    for mode in [Mode::DropPartitions, Mode::BatchedDelete] {
        eprintln!("- retention by {mode:?} over {deliveries} deliveries");
        receiver.reset();
        // Retention is driven here, not by the dispatcher's schedule.
        let sys =
            System::start(1, &[("HERALD__RETENTION__MAX_AGE_DAYS", "3650".to_owned())]).await?;
        let result = one(&sys, receiver, mode, deliveries).await;
        sys.stop().await?;
        let run = result?;
        eprintln!(
            "  {:.1} s, WAL {:.1} MiB, p50 {:.1} ms p99 {:.1} ms max {:.1} ms while it ran ({} of {} delivered)",
            run.retention_seconds,
            run.wal_bytes / 1_048_576.0,
            run.during.latency.p50_ms,
            run.during.latency.p99_ms,
            run.during.latency.max_ms,
            run.all.delivered,
            run.all.expected,
        );
        runs.push(run);
    }
    Ok(runs)
}

async fn one(
    sys: &System,
    receiver: &Receiver,
    mode: Mode,
    deliveries: usize,
) -> anyhow::Result<RetentionRun> {
    let hook = "m0".to_owned();
    sys.create_webhook(&hook, &receiver.url(&hook), &["order.*"])
        .await?;
    let db = sys.db().await?;
    let filled = Instant::now();
    fill(sys, &db, deliveries).await?;
    let fill_seconds = filled.elapsed().as_secs_f64();
    db.batch_execute("CHECKPOINT; ANALYZE").await?;
    let bytes_before = table_bytes(&db).await?;
    let stored_deliveries: i64 = db
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await?
        .get(0);

    let load = load::http_at_rate(sys, "retention", RATE, Duration::from_secs(40));
    let retention = async {
        // The load's own WAL rate, over 5 s before retention starts.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (lsn_a, at_a) = (wal_lsn(&db).await?, Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (lsn_b, at_b) = (wal_lsn(&db).await?, Instant::now());
        let load_wal_per_s = (lsn_b - lsn_a) / at_b.duration_since(at_a).as_secs_f64();
        let started = Instant::now();
        match mode {
            Mode::DropPartitions => {
                let mut client = pool(sys)?.get().await?;
                let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
                let mut days = 0;
                let mut rounds = 0;
                while days < DAYS as usize {
                    let dropped =
                        herald_shared::db::retention::drop_expired(&mut client, cutoff).await?;
                    days += dropped.days.len();
                    rounds += 1;
                    anyhow::ensure!(rounds < 10, "only {days} days dropped in {rounds} rounds");
                }
            }
            Mode::BatchedDelete => batched_delete(&db).await?,
        }
        let ended = Instant::now();
        let lsn_c = wal_lsn(&db).await?;
        let seconds = ended.duration_since(started).as_secs_f64();
        let wal = (lsn_c - lsn_b) - load_wal_per_s * ended.duration_since(at_b).as_secs_f64();
        anyhow::Ok((started, ended, seconds, wal.max(0.0)))
    };
    let (sent, retention) = tokio::join!(load, retention);
    let (sent, (started, ended, retention_seconds, wal_bytes)) = (sent?, retention?);
    let expected = sent.accepted.len() as u64;
    load::wait_delivered(receiver, expected, Duration::from_secs(300)).await;
    let hooks = [hook];
    let all = load::analyze(receiver, &sent, &hooks);
    let window_end = ended + Duration::from_secs(1);
    let during_sent = Sent {
        accepted: sent
            .accepted
            .iter()
            .filter(|(_, at)| **at >= started && **at <= window_end)
            .map(|(id, at)| (id.clone(), *at))
            .collect(),
        ..Sent::default()
    };
    let during = load::analyze(receiver, &during_sent, &hooks);
    db.batch_execute("CHECKPOINT").await?;
    let bytes_after = table_bytes(&db).await?;
    Ok(RetentionRun {
        mode,
        stored_deliveries,
        fill_seconds,
        retention_seconds,
        wal_bytes,
        bytes_before,
        bytes_after,
        during,
        all,
    })
}

fn pool(sys: &System) -> anyhow::Result<deadpool_postgres::Pool> {
    let config: tokio_postgres::Config = sys.db_url().parse()?;
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()?)
}

/// Stores `deliveries` delivered deliveries (events at fan-out 10, each
/// delivery with one attempt), spread evenly over the 10 days from 40 to
/// 31 days ago, one day per statement.
async fn fill(sys: &System, db: &tokio_postgres::Client, deliveries: usize) -> anyhow::Result<()> {
    let tenant: uuid::Uuid = sys.tenant_id.parse()?;
    for i in 0..FAN_OUT {
        sys.create_webhook(
            &format!("stored{i}"),
            "http://127.0.0.1:9/stored",
            &["stored.*"],
        )
        .await?;
    }
    let first = (chrono::Utc::now() - chrono::Duration::days(40)).date_naive();
    db.execute(
        "SELECT herald_ensure_partitions($1::date, $1::date + $2::int4)",
        &[&first, &i32::try_from(DAYS - 1)?],
    )
    .await?;
    let per_day = i64::try_from(deliveries / FAN_OUT)? / DAYS;
    for day in 0..DAYS {
        let started = Instant::now();
        db.execute(
            "INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
             SELECT $1, 'stored-' || $2::int4 || '-' || g, 'stored.done',
                    '{\"invoice\": \"inv_0001\", \"amount\": 4200, \"currency\": \"EUR\"}'::jsonb, t, t
             FROM generate_series(1, $3::int8) g,
                  LATERAL (SELECT ($4::date + $2::int4)::timestamp AT TIME ZONE 'UTC'
                                  + (g * interval '86399 second' / $3::int8) AS t) at",
            &[&tenant, &i32::try_from(day)?, &per_day, &first],
        )
        .await
        .context("storing events")?;
        db.execute(
            "INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type,
                                     status, attempt_count, created_at, updated_at)
             SELECT herald_uuid_v7(e.received_at), e.tenant_id, e.id, e.received_at, w.id, e.event_type,
                    'success', 1, e.received_at, e.received_at
             FROM events e CROSS JOIN (SELECT id FROM webhooks WHERE name LIKE 'stored%') w
             WHERE e.tenant_id = $1 AND e.received_at >= ($2::date + $3::int4)::timestamp AT TIME ZONE 'UTC'
               AND e.received_at < ($2::date + $3::int4 + 1)::timestamp AT TIME ZONE 'UTC'",
            &[&tenant, &first, &i32::try_from(day)?],
        )
        .await
        .context("storing deliveries")?;
        db.execute(
            "INSERT INTO delivery_attempts (delivery_id, id, attempt, attempted_at, duration_ms, status_code,
                                            response_body)
             SELECT d.id, herald_uuid_v7(d.created_at), 1, d.created_at, 12, 200, 'ok'
             FROM deliveries d
             WHERE d.id >= herald_day_uuid($1::date + $2::int4) AND d.id < herald_day_uuid($1::date + $2::int4 + 1)",
            &[&first, &i32::try_from(day)?],
        )
        .await
        .context("storing attempts")?;
        eprintln!(
            "  day {} of {DAYS} stored in {:.0} s",
            day + 1,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Retention as it was before partitions: the oldest 1,000 events past
/// the cutoff per statement, with their deliveries and attempts, until
/// none is left.
async fn batched_delete(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    let stmt = db
        .prepare(
            "WITH e AS (
                 SELECT tenant_id, id, received_at FROM events
                 WHERE received_at < now() - interval '30 days' ORDER BY received_at LIMIT 1000),
             d AS (
                 DELETE FROM deliveries USING e
                 WHERE deliveries.tenant_id = e.tenant_id AND deliveries.event_id = e.id
                   AND deliveries.event_received_at = e.received_at
                 RETURNING deliveries.id),
             a AS (DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM d))
             DELETE FROM events USING e
             WHERE events.tenant_id = e.tenant_id AND events.id = e.id AND events.received_at = e.received_at",
        )
        .await?;
    while db.execute(&stmt, &[]).await? > 0 {}
    Ok(())
}

async fn wal_lsn(db: &tokio_postgres::Client) -> anyhow::Result<f64> {
    let row = db
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn table_bytes(db: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let row = db
        .query_one(
            "WITH t(name) AS (SELECT unnest(ARRAY['events', 'deliveries', 'delivery_attempts']))
             SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::int8
             FROM t, pg_partition_tree(t.name::regclass)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The runs as a Markdown table.
pub(crate) fn markdown(runs: &[RetentionRun]) -> String {
    let mut md = String::from(
        "| retention by | stored deliveries | took s | WAL MiB | tables GiB before → after | p50 / p99 / max ms while it ran | delivered |\n|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        md.push_str(&format!(
            "| {:?} | {} | {:.1} | {:.1} | {:.2} → {:.2} | {:.1} / {:.1} / {:.1} | {}/{} |\n",
            r.mode,
            r.stored_deliveries,
            r.retention_seconds,
            r.wal_bytes / 1_048_576.0,
            r.bytes_before as f64 / 1_073_741_824.0,
            r.bytes_after as f64 / 1_073_741_824.0,
            r.during.latency.p50_ms,
            r.during.latency.p99_ms,
            r.during.latency.max_ms,
            r.all.delivered,
            r.all.expected,
        ));
    }
    md
}
