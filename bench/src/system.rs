//! The whole of Herald as real processes (the release binaries beside this
//! one), against the local Postgres and RabbitMQ, in a fresh database and
//! AMQP prefix that are removed afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

const ADMIN: &str = "bench-admin-token-0123456789";
const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One Herald process and what it cost.
pub(crate) struct Process {
    pub(crate) role: String,
    child: Child,
}

/// Peak memory and CPU time of a process, read from /proc.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Usage {
    pub(crate) role: String,
    pub(crate) peak_rss_mib: f64,
    pub(crate) cpu_seconds: f64,
}

impl Process {
    fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        Usage {
            role: self.role.clone(),
            peak_rss_mib: kib / 1024.0,
            cpu_seconds: cpu_seconds(&stat),
        }
    }
}

pub(crate) struct System {
    pub(crate) api: String,
    pub(crate) http: reqwest::Client,
    pub(crate) db_name: String,
    pub(crate) vars: HashMap<String, String>,
    pub(crate) tenant_id: String,
    pub(crate) token: String,
    processes: Vec<Process>,
    bin: PathBuf,
}

/// `HERALD_BENCH_FIFO`: the two hot queues declared without priorities
/// before Herald starts (it then uses them as they are), to measure what
/// the priority queues cost against plain first-in first-out ones.
async fn declare_fifo(prefix: &str) -> anyhow::Result<()> {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for queue in ["dispatch", "deliveries"] {
        ch.queue_declare(
            format!("{prefix}.{queue}").into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    }
    let _ = conn.close(200, "declared".into()).await;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl System {
    /// Migrates a fresh database and starts an api, a dispatcher and
    /// `workers` workers with the local run command's development flags.
    pub(crate) async fn start(workers: usize, extra: &[(&str, String)]) -> anyhow::Result<Self> {
        let bin = std::env::current_exe()?
            .parent()
            .context("the binary's folder")?
            .to_path_buf();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("herald_bench_{}", &tag[..12]);
        let prefix = format!("herald_bench_{}", &tag[..12]);
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let mut vars: HashMap<String, String> = [
            ("HERALD__DATABASE__URL", format!("{PG}/{db_name}")),
            ("HERALD__AMQP__URL", AMQP.to_owned()),
            ("HERALD__AMQP__PREFIX", prefix.clone()),
            ("HERALD__API__ADMIN_TOKEN", ADMIN.to_owned()),
            ("HERALD__SECURITY__ALLOW_HTTP", "true".to_owned()),
            ("HERALD__SECURITY__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            ("HERALD__SECURITY__ENCRYPTION_KEY", key),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));

        let status = Command::new(bin.join("herald-api"))
            .arg("migrate")
            .envs(&vars)
            .stdout(Stdio::null())
            .status()
            .context("running herald-api migrate (build the release binaries first)")?;
        if !status.success() {
            bail!("herald-api migrate failed");
        }
        if std::env::var_os("HERALD_BENCH_FIFO").is_some() {
            declare_fifo(&prefix).await?;
        }
        let api_port = free_port()?;
        let mut processes = Vec::new();
        let mut spawn =
            |role: &str, binary: &str, listen_key: &str, port: u16| -> anyhow::Result<()> {
                let child = Command::new(bin.join(binary))
                    .envs(&vars)
                    .env(listen_key, format!("127.0.0.1:{port}"))
                    .stdin(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {binary}"))?;
                processes.push(Process {
                    role: role.to_owned(),
                    child,
                });
                Ok(())
            };
        spawn("api", "herald-api", "HERALD__API__LISTEN", api_port)?;
        let mut health = vec![format!("http://127.0.0.1:{api_port}/readyz")];
        let port = free_port()?;
        spawn(
            "dispatcher",
            "herald-dispatcher",
            "HERALD__DISPATCHER__LISTEN",
            port,
        )?;
        health.push(format!("http://127.0.0.1:{port}/readyz"));
        for i in 0..workers {
            let port = free_port()?;
            spawn(
                &format!("worker-{i}"),
                "herald-worker",
                "HERALD__WORKER__LISTEN",
                port,
            )?;
            health.push(format!("http://127.0.0.1:{port}/readyz"));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in &health {
            loop {
                if http
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{url} not ready within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let api = format!("http://127.0.0.1:{api_port}");
        let tenant: Value = http
            .post(format!("{api}/v1/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Self {
            api,
            http,

            db_name,
            vars,
            tenant_id: tenant["id"].as_str().context("tenant id")?.to_owned(),
            token: tenant["token"].as_str().context("tenant token")?.to_owned(),
            processes,
            bin,
        })
    }

    /// Catalogues `order.created` with a schema its load events pass and
    /// turns the catalog `strict`, then waits until the api checks it (an
    /// event of a type no webhook takes, and the catalog does not know, is
    /// refused).
    pub(crate) async fn catalogue_orders(&self) -> anyhow::Result<()> {
        let schema = json!({
            "type": "object",
            "required": ["order", "amount", "currency"],
            "properties": {
                "order": {"type": "string", "minLength": 1, "maxLength": 255},
                "amount": {"type": "integer", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}
            }
        });
        self.http
            .post(format!("{}/v1/event-types", self.api))
            .bearer_auth(&self.token)
            .json(&json!({"name": "order.created", "schema": schema}))
            .send()
            .await?
            .error_for_status()?;
        self.http
            .patch(format!("{}/v1/catalog", self.api))
            .bearer_auth(&self.token)
            .json(&json!({"mode": "strict"}))
            .send()
            .await?
            .error_for_status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self
                .http
                .post(format!("{}/v1/events", self.api))
                .bearer_auth(&self.token)
                .json(&json!({"event_type": "probe.catalog", "data": {}}))
                .send()
                .await?
                .status();
            if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the strict catalog not applied within 10 s (answered {status})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Another tenant; answers its token.
    pub(crate) async fn create_tenant(&self, name: &str) -> anyhow::Result<String> {
        let tenant: Value = self
            .http
            .post(format!("{}/v1/tenants", self.api))
            .bearer_auth(ADMIN)
            .json(&json!({ "name": name }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(tenant["token"].as_str().context("tenant token")?.to_owned())
    }

    pub(crate) async fn create_webhook(
        &self,
        name: &str,
        url: &str,
        event_types: &[&str],
    ) -> anyhow::Result<()> {
        self.create_webhook_as(&self.token, name, url, event_types)
            .await
    }

    /// A webhook with a payload filter.
    pub(crate) async fn create_filtered_webhook(
        &self,
        name: &str,
        url: &str,
        event_types: &[&str],
        filter: &str,
    ) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/v1/webhooks", self.api))
            .bearer_auth(&self.token)
            .json(&json!({"name": name, "url": url, "event_types": event_types, "filter": filter}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub(crate) async fn create_webhook_as(
        &self,
        token: &str,
        name: &str,
        url: &str,
        event_types: &[&str],
    ) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/v1/webhooks", self.api))
            .bearer_auth(token)
            .json(&json!({"name": name, "url": url, "event_types": event_types}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Each process's peak RSS and CPU seconds so far.
    pub(crate) fn usage(&self) -> Vec<Usage> {
        self.processes.iter().map(Process::usage).collect()
    }

    /// This run's database URL.
    pub(crate) fn db_url(&self) -> String {
        format!("{PG}/{}", self.db_name)
    }

    /// A direct connection to this run's database.
    pub(crate) async fn db(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) =
            tokio_postgres::connect(&format!("{PG}/{}", self.db_name), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// SIGTERM to every process, then removes the database and queues.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        for p in &self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
        for p in &mut self.processes {
            let deadline = Instant::now() + Duration::from_secs(30);
            while p.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = p.child.kill();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = &self.bin;
        let settings = herald_shared::runtime::config::Settings::load_from(&self.vars)?;
        let topology = herald_shared::amqp::Topology::new(&settings.amqp)?;
        let broker = settings.amqp.broker_urls();
        let url = broker.first().context("a broker URL")?;
        let conn = herald_shared::amqp::connect(url, "herald-bench cleanup").await?;
        let ch = conn.create_channel().await?;
        topology.delete(&ch).await?;
        let _ = conn.close(200, "done".into()).await;
        let (admin, c) =
            tokio_postgres::connect(&format!("{PG}/postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(c);
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .await?;
        Ok(())
    }
}

impl Drop for System {
    /// A run that ends early (an error, a panic) leaves no process behind.
    fn drop(&mut self) {
        for p in &mut self.processes {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// CPU seconds used so far by every process whose command is `name`
/// (`beam.smp` for RabbitMQ, `postgres` for the database and its backends).
pub(crate) fn cpu_of(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.split_once(" (")
                .and_then(|(_, rest)| rest.split_once(") "))
                .is_some_and(|(comm, _)| comm == name)
        })
        .map(|stat| cpu_seconds(&stat))
        .sum()
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` line: the 14th
/// and 15th fields, the 11th and 12th after the command's closing
/// parenthesis (clock ticks of 1/100 s).
fn cpu_seconds(stat: &str) -> f64 {
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
