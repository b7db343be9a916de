//! `herald-bench`: Herald end to end on this machine — api, dispatcher and
//! workers as real processes, the local Postgres and RabbitMQ, a fast
//! receiver on loopback — measured against the machine's own ceilings.
//! Writes `bench.json` and `bench.md` under `target/bench/`.
//!
//! `herald-bench [--events N] [--quick] [--heavy] [--stored N]
//! [--retention N] [--cluster]`: `--quick` is the tiny run CI makes to keep
//! the benchmark working; `--heavy` adds 10,000 webhooks and 1 million
//! stored deliveries; `--stored N` runs steady-200 with N stored
//! deliveries; `--retention N` runs only the retention comparison over N
//! stored deliveries (see `retention`); `--cluster` adds the quorum loads
//! on a three-node RabbitMQ cluster started on this machine, so that each
//! queue is replicated to three members (it needs root and Debian's
//! `rabbitmq-server`, as the cluster test does).

mod ceilings;
mod load;
mod receiver;
mod retention;
mod system;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::load::{Delivered, Sent};
use crate::receiver::Receiver;
use crate::system::{System, Usage};

#[derive(Debug, Clone)]
struct Options {
    events: usize,
    quick: bool,
    heavy: bool,
    /// Run only the scenarios whose name contains this.
    only: Option<String>,
    /// Deliveries stored before a steady-200 run of its own.
    stored: Option<usize>,
    /// Run only the retention comparison over this many deliveries.
    retention: Option<usize>,
    /// Add the quorum loads on a three-node cluster.
    cluster: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        events: 20_000,
        quick: false,
        heavy: false,
        only: None,
        stored: None,
        retention: None,
        cluster: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => o.events = args.next().context("--events takes a number")?.parse()?,
            "--quick" => o.quick = true,
            "--heavy" => o.heavy = true,
            "--cluster" => o.cluster = true,
            "--only" => o.only = Some(args.next().context("--only takes a scenario name")?),
            "--stored" => {
                o.stored = Some(args.next().context("--stored takes a number")?.parse()?);
            }
            "--retention" => {
                o.retention = Some(args.next().context("--retention takes a number")?.parse()?);
            }
            other => {
                bail!(
                    "unknown argument {other:?}; use --events N, --quick, --heavy, --only NAME, --stored N, --retention N, --cluster"
                )
            }
        }
    }
    if o.quick {
        o.events = o.events.min(300);
    }
    Ok(o)
}

#[derive(Debug, Serialize)]
struct Scenario {
    name: String,
    workers: usize,
    events: usize,
    /// Webhooks each event is delivered to.
    fan_out: usize,
    /// Webhooks in the tenant.
    webhooks: usize,
    ingest_per_s: f64,
    #[serde(flatten)]
    delivered: Delivered,
    /// The delivery rate as a fraction of the lowest ceiling.
    of_ceiling: f64,
    processes: Vec<Usage>,
    /// Another tenant's events sent at 10/s during the load (the fairness
    /// scenario): how long they took.
    #[serde(skip_serializing_if = "Option::is_none")]
    quiet: Option<Delivered>,
    /// CPU seconds RabbitMQ and Postgres used during the load.
    broker_cpu_seconds: f64,
    database_cpu_seconds: f64,
    /// Bytes the events, deliveries and attempts tables (indexes and TOAST
    /// included) hold per stored delivery at the end of the run.
    db_bytes_per_delivery: f64,
}

#[derive(Debug, Serialize)]
struct Ceilings {
    receiver_per_s: f64,
    rabbitmq_per_s: f64,
    postgres_per_s: f64,
}

impl Ceilings {
    fn lowest(&self) -> f64 {
        self.receiver_per_s
            .min(self.rabbitmq_per_s)
            .min(self.postgres_per_s)
    }
}

#[derive(Debug, Serialize)]
struct Report {
    command: String,
    machine: String,
    started_at: String,
    events: usize,
    ceilings: Ceilings,
    scenarios: Vec<Scenario>,
    /// Deliveries lost or duplicated in the whole run.
    lost: u64,
    duplicates: u64,
}

/// How the load is offered.
enum Load {
    Single,
    Batch,
    Amqp,
    Rate(f64, Duration),
}

struct Spec<'a> {
    name: &'a str,
    workers: usize,
    events: usize,
    /// Webhooks that match, and that do not.
    matching: usize,
    others: usize,
    load: Load,
    /// Delivery rows stored before the load.
    preload_rows: usize,
    /// The matching endpoints answer after a second.
    slow: bool,
    /// Another tenant sends 10 events a second to its own webhook while
    /// the load runs.
    quiet: bool,
    /// Settings for this run's processes.
    env: Vec<(&'static str, String)>,
    /// Against the three-node cluster (`--cluster`) instead of the
    /// machine's broker.
    cluster: bool,
    /// The tenant's catalog in `strict` mode with a schema for the load's
    /// events, so that every event is validated at ingest.
    schema: bool,
    /// Every webhook has a payload filter: the matching ones a filter the
    /// load's events pass, the others (subscribed to the same type) one
    /// they fail, so the dispatcher evaluates them all for every event.
    filtered: bool,
}

async fn run(
    spec: Spec<'_>,
    receiver: &Receiver,
    lowest: f64,
    only: Option<&str>,
) -> anyhow::Result<Option<Scenario>> {
    if only.is_some_and(|o| !spec.name.contains(o)) {
        return Ok(None);
    }
    eprintln!(
        "- {} ({} events, {} workers)",
        spec.name, spec.events, spec.workers
    );
    receiver.reset();
    let sys = System::start(spec.workers, &spec.env).await?;
    // The system is stopped and removed whatever happens in the middle.
    let measured = async {
        let mut hooks = Vec::new();
        for i in 0..spec.matching {
            let name = if spec.slow {
                format!("slow{i}")
            } else {
                format!("m{i}")
            };
            if spec.filtered {
                sys.create_filtered_webhook(
                    &name,
                    &receiver.url(&name),
                    &["order.*"],
                    "@.amount > 1000 && @.currency == 'EUR'",
                )
                .await?;
            } else {
                sys.create_webhook(&name, &receiver.url(&name), &["order.*"])
                    .await?;
            }
            hooks.push(name);
        }
        for i in 0..spec.others {
            if spec.filtered {
                sys.create_filtered_webhook(
                    &format!("o{i}"),
                    &receiver.url("other"),
                    &["order.*"],
                    &format!("@.amount > {} && @.currency == 'EUR'", 1_000_000 + i),
                )
                .await?;
            } else {
                sys.create_webhook(&format!("o{i}"), &receiver.url("other"), &["invoice.*"])
                    .await?;
            }
        }
        if spec.schema {
            sys.catalogue_orders().await?;
        }
        if spec.preload_rows > 0 {
            preload(&sys, spec.preload_rows).await?;
        }
        let quiet_token = if spec.quiet {
            let token = sys.create_tenant("quiet").await?;
            sys.create_webhook_as(&token, "quiet", &receiver.url("quiet"), &["order.*"])
                .await?;
            Some(token)
        } else {
            None
        };
        let started = Instant::now();
        let (broker_before, database_before) = (system::cpu_of("beam.smp"), system::cpu_of("postgres"));
        // The quiet tenant starts just after the load, and sends while the
        // load's backlog drains.
        let quiet_load = quiet_token.as_ref().map(|token| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            load::http_at_rate_as(&sys, token, "quiet", 10.0, Duration::from_secs(5)).await
        });
        let quiet_sent = async {
            match quiet_load {
                Some(f) => f.await.map(Some),
                None => anyhow::Ok(None),
            }
        };
        let main_load = async { let sent: Sent = match spec.load {
            Load::Single => {
                load::http_single(&sys, spec.name, spec.events, "order.created", 64).await?
            }
            Load::Batch => load::http_batch(&sys, spec.name, spec.events, 100, 4).await?,
            Load::Amqp => load::amqp(&sys, spec.name, spec.events, 500).await?,
            Load::Rate(rate, duration) => load::http_at_rate(&sys, spec.name, rate, duration).await?,
        };
        anyhow::Ok(sent) };
        let (sent, quiet_sent) = tokio::join!(main_load, quiet_sent);
        let (sent, quiet_sent): (Sent, Option<Sent>) = (sent?, quiet_sent?);
        let quiet_expected = quiet_sent.as_ref().map_or(0, |q| q.accepted.len() as u64);
        let expected = (sent.accepted.len() * hooks.len()) as u64;
        load::wait_delivered(receiver, expected + quiet_expected, Duration::from_secs(300)).await;
        let delivered = load::analyze(receiver, &sent, &hooks);
        let quiet = quiet_sent
            .as_ref()
            .map(|q| load::analyze(receiver, q, &["quiet".to_owned()]));
        if let Some(q) = &quiet {
            eprintln!(
                "  quiet tenant: {} of {} delivered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                q.delivered, q.expected, q.latency.p50_ms, q.latency.p99_ms, q.latency.max_ms
            );
        }
        let broker_cpu_seconds = system::cpu_of("beam.smp") - broker_before;
        let database_cpu_seconds = system::cpu_of("postgres") - database_before;
        let db_bytes_per_delivery = bytes_per_delivery(&sys).await?;
        let processes = sys.usage();
        eprintln!(
            "  ingest {:.0}/s, delivered {}/{} at {:.0}/s, p50 {:.1} ms p99 {:.1} ms, lost {}, duplicates {} ({:.1} s)",
            sent.ingest_rate(),
            delivered.delivered,
            delivered.expected,
            delivered.rate,
            delivered.latency.p50_ms,
            delivered.latency.p99_ms,
            delivered.lost,
            delivered.duplicates,
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok((hooks, sent, delivered, quiet, processes, broker_cpu_seconds, database_cpu_seconds, db_bytes_per_delivery))
    }
    .await;
    sys.stop().await?;
    let (
        hooks,
        sent,
        delivered,
        quiet,
        processes,
        broker_cpu_seconds,
        database_cpu_seconds,
        db_bytes_per_delivery,
    ) = measured?;
    Ok(Some(Scenario {
        name: spec.name.to_owned(),
        workers: spec.workers,
        events: sent.accepted.len(),
        fan_out: hooks.len(),
        webhooks: spec.matching + spec.others,
        ingest_per_s: sent.ingest_rate(),
        of_ceiling: if lowest > 0.0 {
            delivered.rate / lowest
        } else {
            0.0
        },
        delivered,
        quiet,
        processes,
        broker_cpu_seconds,
        database_cpu_seconds,
        db_bytes_per_delivery,
    }))
}

/// The size of the events, deliveries and attempts tables (their
/// partitions, indexes and TOAST included) per stored delivery.
async fn bytes_per_delivery(sys: &System) -> anyhow::Result<f64> {
    let db = sys.db().await?;
    let row = db
        .query_one(
            "WITH t(name) AS (SELECT unnest(ARRAY['events', 'deliveries', 'delivery_attempts']))
             SELECT (SELECT sum(pg_total_relation_size(r)) FROM (
                        SELECT name::regclass AS r FROM t
                        UNION SELECT relid FROM t, pg_partition_tree(t.name::regclass)) AS tables
                    )::float8,
                    (SELECT count(*) FROM deliveries)::float8",
            &[],
        )
        .await?;
    let (bytes, deliveries): (f64, f64) = (row.get(0), row.get(1));
    Ok(if deliveries > 0.0 {
        bytes / deliveries
    } else {
        0.0
    })
}

/// Stores `rows` delivered events (event, delivery and attempt rows) so
/// the tables are as big as a busy installation's.
async fn preload(sys: &System, rows: usize) -> anyhow::Result<()> {
    eprintln!("  storing {rows} deliveries first");
    sys.create_webhook("preload", "http://127.0.0.1:9/preload", &["preload.*"])
        .await?;
    let db = sys.db().await?;
    let tenant: uuid::Uuid = sys.tenant_id.parse()?;
    let n = i64::try_from(rows)?;
    db.execute(
        "INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
         SELECT $1, 'pre-' || g, 'preload.done', '{\"n\": 1}'::jsonb, now(), now() FROM generate_series(1, $2::int8) g",
        &[&tenant, &n],
    )
    .await?;
    db.execute(
        "INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type,
                                 status, attempt_count)
         SELECT herald_uuid_v7(received_at), $1, id, received_at,
                (SELECT id FROM webhooks WHERE name = 'preload'), 'preload.done', 'success', 1
         FROM events WHERE tenant_id = $1 AND id LIKE 'pre-%'",
        &[&tenant],
    )
    .await?;
    db.execute(
        "INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, status_code)
         SELECT gen_random_uuid(), id, 1, now(), 1, 204 FROM deliveries WHERE event_id LIKE 'pre-%'",
        &[],
    )
    .await?;
    // As a busy installation's tables are: vacuumed and analysed, so no
    // autovacuum runs during the measurement.
    db.batch_execute("VACUUM ANALYZE events, deliveries, delivery_attempts")
        .await?;
    // Let this backend exit before CPU is counted.
    drop(db);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} CPUs ({model}), {mem_gib:.0} GiB")
}

fn markdown(r: &Report) -> String {
    let mut md = format!(
        "Run `{}` on {} at {}.\n\nCeilings: receiver alone {:.0}/s, RabbitMQ alone {:.0}/s, Postgres alone {:.0} deliveries/s.\n\n",
        r.command,
        r.machine,
        r.started_at,
        r.ceilings.receiver_per_s,
        r.ceilings.rabbitmq_per_s,
        r.ceilings.postgres_per_s
    );
    md.push_str("| scenario | workers | events | fan-out | webhooks | ingest/s | delivered/s | of ceiling | p50 ms | p90 ms | p99 ms | max ms | lost | dup | worker peak RSS MiB | CPU s (api/disp/workers/RabbitMQ/Postgres) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &r.scenarios {
        let rss = s
            .processes
            .iter()
            .filter(|p| p.role.starts_with("worker"))
            .map(|p| p.peak_rss_mib)
            .fold(0.0, f64::max);
        let cpu = |prefix: &str| -> f64 {
            s.processes
                .iter()
                .filter(|p| p.role.starts_with(prefix))
                .map(|p| p.cpu_seconds)
                .sum()
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1}/{:.1}/{:.1}/{:.1}/{:.1} |\n",
            s.name,
            s.workers,
            s.events,
            s.fan_out,
            s.webhooks,
            s.ingest_per_s,
            s.delivered.rate,
            s.of_ceiling * 100.0,
            s.delivered.latency.p50_ms,
            s.delivered.latency.p90_ms,
            s.delivered.latency.p99_ms,
            s.delivered.latency.max_ms,
            s.delivered.lost,
            s.delivered.duplicates,
            rss * 1.0,
            cpu("api"),
            cpu("dispatcher"),
            cpu("worker"),
            s.broker_cpu_seconds,
            s.database_cpu_seconds,
        ));
    }
    md.push_str(
        "\nCPU per delivery (µs; the load generator and receiver excluded) and storage:\n\n",
    );
    md.push_str("| scenario | api | dispatcher | workers | RabbitMQ | Postgres | all | DB bytes/delivery |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in &r.scenarios {
        #[allow(clippy::cast_precision_loss)]
        let n = s.delivered.delivered.max(1) as f64;
        let cpu = |prefix: &str| -> f64 {
            s.processes
                .iter()
                .filter(|p| p.role.starts_with(prefix))
                .map(|p| p.cpu_seconds)
                .sum::<f64>()
                * 1e6
                / n
        };
        let (api, dispatcher, workers) = (cpu("api"), cpu("dispatcher"), cpu("worker"));
        let (broker, database) = (
            s.broker_cpu_seconds * 1e6 / n,
            s.database_cpu_seconds * 1e6 / n,
        );
        let all = api + dispatcher + workers + broker + database;
        let (name, bytes) = (&s.name, s.db_bytes_per_delivery);
        md.push_str(&format!(
            "| {name} | {api:.0} | {dispatcher:.0} | {workers:.0} | {broker:.0} | {database:.0} | {all:.0} | {bytes:.0} |\n",
        ));
    }
    for s in &r.scenarios {
        if let Some(q) = &s.quiet {
            md.push_str(&format!(
                "\n{}: another tenant's events (10/s while the flood drains) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} of {} delivered.\n",
                s.name, q.latency.p50_ms, q.latency.p99_ms, q.latency.max_ms, q.delivered, q.expected
            ));
        }
    }
    md
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let n = o.events;
    let receiver = Receiver::start()?;
    let started_at = chrono_now();
    let out = std::env::current_exe()?
        .parent()
        .and_then(std::path::Path::parent)
        .context("target folder")?
        .join("bench");
    std::fs::create_dir_all(&out)?;
    if let Some(deliveries) = o.retention {
        let runs = retention::compare(&receiver, deliveries).await?;
        std::fs::write(
            out.join("retention.json"),
            serde_json::to_string_pretty(&runs)?,
        )?;
        let md = retention::markdown(&runs);
        std::fs::write(out.join("retention.md"), &md)?;
        println!("machine: {}\n\n{md}", machine());
        return Ok(());
    }

    eprintln!("ceilings");
    let probe_n = if o.quick { 500 } else { 20_000 };
    let ceiling_sys = System::start(0, &[]).await?;
    let ceilings = Ceilings {
        receiver_per_s: ceilings::receiver_alone(&receiver, probe_n).await?,
        rabbitmq_per_s: ceilings::rabbitmq_alone(probe_n).await?,
        postgres_per_s: ceilings::postgres_alone(&ceiling_sys, probe_n).await?,
    };
    ceiling_sys.stop().await?;
    eprintln!(
        "  receiver {:.0}/s, RabbitMQ {:.0}/s, Postgres {:.0}/s",
        ceilings.receiver_per_s, ceilings.rabbitmq_per_s, ceilings.postgres_per_s
    );
    let lowest = ceilings.lowest();

    let spec = |name: &'static str, workers, events, matching, others, load| Spec {
        name,
        workers,
        events,
        matching,
        others,
        load,
        preload_rows: 0,
        slow: false,
        quiet: false,
        env: Vec::new(),
        cluster: false,
        schema: false,
        filtered: false,
    };
    let mut scenarios = Vec::new();
    let only = o.only.as_deref();
    let single = run(
        spec("http", 1, n, 1, 0, Load::Single),
        &receiver,
        lowest,
        only,
    )
    .await?;
    // Half the maximum for the latency run: the single-event rate measured
    // just now, or a modest guess when that scenario was skipped.
    let max_rate = single
        .as_ref()
        .map_or(1000.0, |s| s.delivered.rate.max(1.0));
    scenarios.extend(single);

    let seconds = if o.quick { 2 } else { 10 };
    // A flood from one tenant while another sends 10 events a second: the
    // flood's rate against http-batch's (the same load alone), and the
    // quiet tenant's latency.
    let mut flood = spec("flood-and-quiet", 1, n, 1, 0, Load::Batch);
    flood.quiet = true;
    // The same single-event load with every event checked against a JSON
    // Schema (`strict` catalog): against `http`, what validation costs.
    let mut schema_checked = spec("http-schema", 1, n, 1, 0, Load::Single);
    schema_checked.schema = true;
    let mut specs = vec![
        schema_checked,
        spec("http-batch", 1, n, 1, 0, Load::Batch),
        flood,
        spec("amqp", 1, n, 1, 0, Load::Amqp),
        spec("fan-out-10", 1, (n / 10).max(1), 10, 0, Load::Batch),
        spec(
            "steady-200",
            1,
            200 * seconds,
            1,
            0,
            Load::Rate(200.0, Duration::from_secs(seconds as u64)),
        ),
    ];
    // The same loads with quorum queues (`amqp.queue_type = quorum`): on
    // this one broker each queue has a single member, so this is the cost
    // of the queue type itself, not of replicating to other nodes.
    let quorum = |mut s: Spec<'static>| {
        s.env = vec![("HERALD__AMQP__QUEUE_TYPE", "quorum".to_owned())];
        s
    };
    specs.push(quorum(spec("quorum-http-batch", 1, n, 1, 0, Load::Batch)));
    if !o.quick {
        specs.extend([
            quorum(spec("quorum-http", 1, n, 1, 0, Load::Single)),
            quorum(spec(
                "quorum-fan-out-10",
                1,
                (n / 10).max(1),
                10,
                0,
                Load::Batch,
            )),
            quorum(spec(
                "quorum-steady-200",
                1,
                200 * seconds,
                1,
                0,
                Load::Rate(200.0, Duration::from_secs(seconds as u64)),
            )),
        ]);
        specs.extend([
            spec("fan-out-100", 1, (n / 100).max(1), 100, 0, Load::Batch),
            spec(
                "half-max-rate",
                1,
                0,
                1,
                0,
                Load::Rate(max_rate / 2.0, Duration::from_secs(10)),
            ),
            spec("webhooks-10", 1, n, 1, 9, Load::Batch),
            spec("webhooks-1000", 1, n, 1, 999, Load::Batch),
            {
                // 1,000 webhooks on the event's type, each with a filter:
                // against webhooks-1000, what evaluating them costs.
                let mut s = spec("filters-1000", 1, n, 1, 999, Load::Batch);
                s.filtered = true;
                s
            },
            spec("workers-2", 2, n, 1, 0, Load::Batch),
            spec("workers-4", 4, n, 1, 0, Load::Batch),
        ]);
        // 1,000 deliveries in flight in one worker, for its memory (the
        // slow lane spans the whole worker here).
        let mut s = spec("inflight-1000", 1, 5_000, 1, 0, Load::Batch);
        s.slow = true;
        s.env = vec![
            ("HERALD__WORKER__CONCURRENCY", "1000".to_owned()),
            (
                "HERALD__WORKER__MAX_INFLIGHT_PER_WEBHOOK",
                "1000".to_owned(),
            ),
            ("HERALD__WORKER__SLOW_LANE_SHARE", "1.0".to_owned()),
        ];
        specs.push(s);
    }
    if o.heavy {
        specs.push(spec("webhooks-10000", 1, n, 1, 9_999, Load::Batch));
        let mut s = spec(
            "steady-200-1m-rows",
            1,
            2000,
            1,
            0,
            Load::Rate(200.0, Duration::from_secs(10)),
        );
        s.preload_rows = 1_000_000;
        specs.push(s);
    }
    if let Some(rows) = o.stored {
        let mut s = spec(
            "steady-200-stored",
            1,
            2000,
            1,
            0,
            Load::Rate(200.0, Duration::from_secs(10)),
        );
        s.preload_rows = rows;
        specs.push(s);
    }
    if o.cluster {
        // The same loads, each queue replicated to three nodes: against
        // the quorum runs above, the cost of replication.
        let clustered = |mut s: Spec<'static>| {
            s.env = vec![("HERALD__AMQP__QUEUE_TYPE", "quorum".to_owned())];
            s.cluster = true;
            s
        };
        specs.extend([
            clustered(spec("cluster-quorum-http-batch", 1, n, 1, 0, Load::Batch)),
            clustered(spec(
                "cluster-quorum-fan-out-10",
                1,
                (n / 10).max(1),
                10,
                0,
                Load::Batch,
            )),
            clustered(spec(
                "cluster-quorum-steady-200",
                1,
                200 * seconds,
                1,
                0,
                Load::Rate(200.0, Duration::from_secs(seconds as u64)),
            )),
        ]);
    }
    // Started at the first selected scenario that needs it (about 25 s on
    // two cores), removed when the run ends.
    let mut cluster: Option<herald_testkit::RabbitCluster> = None;
    for mut s in specs {
        if s.cluster && only.is_none_or(|o| s.name.contains(o)) {
            if cluster.is_none() {
                eprintln!("starting a three-node RabbitMQ cluster");
                cluster = Some(herald_testkit::RabbitCluster::start().await);
            }
            let urls = cluster.as_ref().map(herald_testkit::RabbitCluster::urls);
            s.env.extend(urls.map(|u| ("HERALD__AMQP__URLS", u)));
        }
        scenarios.extend(run(s, &receiver, lowest, only).await?);
    }
    drop(cluster);

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        started_at,
        events: n,
        lost: scenarios.iter().map(|s| s.delivered.lost).sum(),
        duplicates: scenarios.iter().map(|s| s.delivered.duplicates).sum(),
        ceilings,
        scenarios,
    };
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(out.join("bench.md"), &md)?;
    println!("{md}");
    eprintln!("wrote {}", out.display());
    if report.lost > 0 || report.duplicates > 0 {
        bail!(
            "{} deliveries lost and {} duplicated",
            report.lost,
            report.duplicates
        );
    }
    Ok(())
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("unix {secs}")
}
