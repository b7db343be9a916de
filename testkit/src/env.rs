//! One test's world: its database, its AMQP prefix, its settings, and the
//! Herald processes it starts.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use herald_shared::amqp::{Brokers, Topology};
use herald_shared::db;
use herald_shared::runtime::config::Settings;
use lapin::{Channel, Connection};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEFAULT_DB_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// Serialises template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x4845_5241_4c44;

fn base_db_url() -> String {
    std::env::var("HERALD__DATABASE__URL").unwrap_or_else(|_| DEFAULT_DB_URL.to_owned())
}

/// The URL of database `name` on the server of the URL `base`.
fn db_url(base: &str, name: &str) -> String {
    let head = base.rsplit_once('/').map_or(base, |(h, _)| h);
    format!("{head}/{name}")
}

async fn admin_client(base: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&db_url(base, "postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect to Postgres (is it running? see scripts/services.sh)");
    tokio::spawn(conn);
    client
}

/// The template's name carries a hash of the migrations, so a changed
/// migration builds a new template instead of reusing a stale one.
fn template_name() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("migrations folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for f in files {
        hash.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes().to_vec())
                .unwrap_or_default(),
        );
        hash.update(std::fs::read(&f).expect("read migration"));
    }
    format!("herald_tpl_{}", &hex::encode(hash.finalize())[..12])
}

/// Creates `name` as a copy of the migrated template, building the
/// template first if no test process has yet.
async fn create_database(base: &str, name: &str) {
    let template = template_name();
    let admin = admin_client(base).await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("advisory lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .expect("query pg_database")
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .expect("drop a half-built template");
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .expect("create template database");
        let settings = settings_for(base, &building, "unused", &HashMap::new());
        let pool = settings.database.pool().expect("pool");
        db::migrate(&pool).await.expect("migrate template");
        pool.close();
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .expect("rename template");
    }
    let mut tries = 0;
    loop {
        match admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
        {
            Ok(()) => break,
            // Another test copying the template at the same moment.
            Err(e) if tries < 20 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("advisory unlock");
}

fn env_map(
    base: &str,
    db_name: &str,
    prefix: &str,
    extra: &HashMap<String, String>,
) -> HashMap<String, String> {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let amqp = std::env::var("HERALD__AMQP__URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    let mut env: HashMap<String, String> = [
        ("HERALD__DATABASE__URL", db_url(base, db_name)),
        ("HERALD__DATABASE__POOL_SIZE", "8".to_owned()),
        ("HERALD__AMQP__URL", amqp),
        ("HERALD__AMQP__PREFIX", prefix.to_owned()),
        ("HERALD__API__LISTEN", "127.0.0.1:0".to_owned()),
        ("HERALD__API__ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("HERALD__DISPATCHER__LISTEN", "127.0.0.1:0".to_owned()),
        ("HERALD__DISPATCHER__CONCURRENCY", "16".to_owned()),
        ("HERALD__WORKER__LISTEN", "127.0.0.1:0".to_owned()),
        ("HERALD__WORKER__CONCURRENCY", "32".to_owned()),
        ("HERALD__WORKER__SHUTDOWN_TIMEOUT_SECONDS", "5".to_owned()),
        ("HERALD__SECURITY__ALLOW_HTTP", "true".to_owned()),
        ("HERALD__SECURITY__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("HERALD__SECURITY__ENCRYPTION_KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

fn settings_for(
    base: &str,
    db_name: &str,
    prefix: &str,
    extra: &HashMap<String, String>,
) -> Settings {
    Settings::load_from(&env_map(base, db_name, prefix, extra)).expect("test settings")
}

/// A running in-process Herald process.
#[derive(Debug)]
pub struct ProcessHandle {
    /// Where it serves `/healthz`, `/readyz` and `/metrics` (the api: its
    /// API port).
    pub port: u16,
    stop: CancellationToken,
    join: JoinHandle<anyhow::Result<()>>,
}

impl ProcessHandle {
    /// The configuration version the process works under, from its
    /// `herald_config_version` metric.
    pub async fn config_version(&self) -> Option<i64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("herald_config_version "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether the process is still running: its task has not ended (a
    /// process that gave up, or panicked, has).
    #[must_use]
    pub fn is_running(&self) -> bool {
        !self.join.is_finished()
    }

    /// Sends the shutdown signal and waits for a clean exit.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.join)
            .await
            .expect("process stops within 30 s")
            .expect("process task")
            .expect("process exits cleanly");
    }
}

/// A running api with a client for it.
#[derive(Debug)]
pub struct ApiHandle {
    pub base: String,
    pub http: reqwest::Client,
    pub process: ProcessHandle,
}

/// One test's isolated world.
pub struct TestEnv {
    pub settings: Settings,
    /// The `HERALD__…` variables that reproduce `settings` in a child process.
    pub vars: HashMap<String, String>,
    pub db_name: String,
    /// The URL of the Postgres server the database is on (its `postgres`
    /// database).
    db_base: String,
    pub pool: deadpool_postgres::Pool,
    pub topology: Topology,
    /// Parent of every process's shutdown token; cancelled on drop.
    stop_all: CancellationToken,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// With extra `HERALD__…` settings.
    pub async fn with(extra: &[(&str, &str)]) -> Self {
        Self::on_server(&base_db_url(), extra).await
    }

    /// With its database on the Postgres server of the URL `base` (a
    /// [`crate::PrivatePostgres`], say) instead of the shared one.
    pub async fn on_server(base: &str, extra: &[(&str, &str)]) -> Self {
        herald_shared::runtime::telemetry::init_for_tests();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("herald_t_{}", &id[..16]);
        let prefix = format!("herald_t_{}", &id[..16]);
        create_database(base, &db_name).await;
        let extra: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let vars = env_map(base, &db_name, &prefix, &extra);
        let settings = Settings::load_from(&vars).expect("test settings");
        let pool = settings.database.pool().expect("pool");
        // The template may be older than a week: today's partitions are
        // made here as `herald-api migrate` makes them.
        db::retention::ensure_partitions(&pool.get().await.expect("database connection"))
            .await
            .expect("day partitions");
        let topology = Topology::new(&settings.amqp).expect("topology");
        Self {
            settings,
            vars,
            db_name,
            db_base: base.to_owned(),
            pool,
            topology,
            stop_all: CancellationToken::new(),
        }
    }

    pub async fn start_api(&self) -> ApiHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let app = herald_api::startup::Application::build(self.settings.clone(), Some(listener))
            .await
            .expect("build api");
        let port = app.port();
        let base = format!("http://127.0.0.1:{port}");
        let stop = self.stop_all.child_token();
        let join = tokio::spawn(app.run_until_stopped(stop.clone()));
        ApiHandle {
            base,
            http: reqwest::Client::new(),
            process: ProcessHandle { port, stop, join },
        }
    }

    pub async fn start_dispatcher(&self) -> ProcessHandle {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind dispatcher");
        let port = listener.local_addr().expect("an address").port();
        let stop = self.stop_all.child_token();
        let join = tokio::spawn(herald_dispatcher::run::run(
            self.settings.clone(),
            Some(listener),
            stop.clone(),
        ));
        ProcessHandle { port, stop, join }
    }

    pub async fn start_worker(&self) -> ProcessHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
        let port = listener.local_addr().expect("an address").port();
        let stop = self.stop_all.child_token();
        let join = tokio::spawn(herald_worker::run::run(
            self.settings.clone(),
            Some(listener),
            stop.clone(),
        ));
        ProcessHandle { port, stop, join }
    }

    /// An api, a dispatcher and a worker: the whole pipeline.
    pub async fn start_all(&self) -> (ApiHandle, ProcessHandle, ProcessHandle) {
        (
            self.start_api().await,
            self.start_dispatcher().await,
            self.start_worker().await,
        )
    }

    /// A broker connection and channel, for publishing like a producer.
    pub async fn amqp(&self) -> (Connection, Channel) {
        let conn = Brokers::from_settings(&self.settings.amqp)
            .connect("herald-test")
            .await
            .expect("connect broker");
        self.topology
            .declare(&conn)
            .await
            .expect("declare topology");
        let ch = herald_shared::amqp::confirmed_channel(&conn)
            .await
            .expect("channel");
        (conn, ch)
    }

    /// Kills every server connection to this test's database, as a
    /// database restart would.
    pub async fn terminate_db_connections(&self) -> i64 {
        let admin = admin_client(&self.db_base).await;
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&self.db_name],
            )
            .await
            .expect("terminate backends")
            .len()
            .try_into()
            .unwrap_or_default()
    }

    /// Closes, on the broker's side, every connection Herald's processes of
    /// this test opened (their names start with the prefix), as a broker
    /// restart would. Answers how many were closed.
    pub fn close_broker_connections(&self) -> usize {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "pid",
                "client_properties",
                "-q",
                "--no-table-headers",
            ])
            .output()
            .expect("run rabbitmqctl");
        assert!(out.status.success(), "rabbitmqctl list_connections failed");
        // One line per connection: the pid, a tab, then the client
        // properties, which hold the connection name.
        let listing = String::from_utf8_lossy(&out.stdout);
        let name = format!("{} herald-", self.topology.prefix());
        let mut closed = 0;
        for line in listing.lines().filter(|l| l.contains(&name)) {
            let pid = line.split('\t').next().expect("connection pid");
            let status = std::process::Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    pid,
                    "test: simulated broker failure",
                    "-q",
                ])
                .status()
                .expect("run rabbitmqctl");
            assert!(status.success(), "close_connection {pid}");
            closed += 1;
        }
        closed
    }

    /// Publishes raw bytes to the events exchange as a producer would
    /// (persistent, waiting for the broker's confirm).
    pub async fn publish_event(&self, ch: &Channel, routing_key: &str, body: &[u8]) {
        herald_shared::amqp::publish_confirmed(
            ch,
            &self.topology.events_exchange(),
            routing_key,
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish confirmed");
    }

    /// Waits until the dispatcher has stored the event with this id.
    pub async fn wait_event_stored(&self, id: &str) {
        crate::wait_until(Duration::from_secs(30), "the event stored", || async {
            let n: i64 = self
                .db()
                .await
                .query_one("SELECT count(*) FROM events WHERE id = $1", &[&id])
                .await
                .expect("count events")
                .get(0);
            (n == 1).then_some(())
        })
        .await;
    }

    /// A database connection for assertions.
    /// Waits until every one of `processes` works under the configuration
    /// as it is now, which Herald promises within 2 seconds of a change:
    /// the wait fails after that.
    pub async fn wait_config_seen(&self, processes: &[&ProcessHandle]) {
        let version = herald_shared::db::config_version::current(&self.db().await)
            .await
            .expect("configuration version");
        for p in processes {
            crate::wait::wait_until(
                Duration::from_secs(2),
                "the configuration change to reach a process",
                || async { p.config_version().await.filter(|v| *v >= version) },
            )
            .await;
        }
    }

    pub async fn db(&self) -> deadpool_postgres::Object {
        self.pool.get().await.expect("database connection")
    }

    /// Counts rows matching a query returning one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db()
            .await
            .query_one(sql, &[])
            .await
            .expect("count query")
            .get(0)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop_all.cancel();
        self.pool.close();
        let db_name = self.db_name.clone();
        let db_base = self.db_base.clone();
        let topology = self.topology.clone();
        let brokers = Brokers::from_settings(&self.settings.amqp);
        // Drop runs outside async context guarantees (and during panics), so
        // the cleanup gets its own thread and runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                // Let cancelled processes close before their queues vanish,
                // so none declares them again.
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok(conn) = brokers.connect("herald-test-cleanup").await
                    && let Ok(ch) = conn.create_channel().await
                {
                    let _ = topology.delete(&ch).await;
                    let _ = conn.close(200, "cleanup".into()).await;
                }
                let admin = admin_client(&db_base).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// A message taken from a parking queue, with its reason.
#[derive(Debug)]
pub struct Parked {
    pub body: Vec<u8>,
    pub reason: String,
    /// The `x-herald-tries` header, if the message was tried again.
    pub tries: Option<u32>,
}

impl TestEnv {
    /// Takes `count` messages from a parking queue (the invalid-events or
    /// failed queue), waiting up to `timeout` for them; then checks that no
    /// more are there.
    pub async fn take_parked(
        &self,
        ch: &Channel,
        queue: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Parked> {
        use lapin::options::BasicGetOptions;
        use lapin::types::AMQPValue;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut parked = Vec::new();
        loop {
            let got = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic_get");
            match got {
                Some(msg) => {
                    let headers = msg
                        .delivery
                        .properties
                        .headers()
                        .clone()
                        .unwrap_or_default();
                    let reason = match headers.inner().get("x-herald-reason") {
                        Some(AMQPValue::LongString(s)) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => panic!("a parked message without a reason: {other:?}"),
                    };
                    let tries = match headers.inner().get("x-herald-tries") {
                        Some(AMQPValue::LongUInt(n)) => Some(*n),
                        _ => None,
                    };
                    parked.push(Parked {
                        body: msg.delivery.data,
                        reason,
                        tries,
                    });
                }
                None if parked.len() >= count => return parked,
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{count} messages parked in {queue}; got {}: {:?}",
                        parked.len(),
                        parked.iter().map(|p| &p.reason).collect::<Vec<_>>()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl ApiHandle {
    /// Sends a request and answers the status and JSON body (or `Null`).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{base}{path}", base = self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("api reachable");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends raw bytes as the body.
    pub async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let resp = self
            .http
            .request(method, format!("{base}{path}", base = self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("api reachable");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a tenant; answers its id and token.
    pub async fn create_tenant(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/tenants",
                Some(ADMIN_TOKEN),
                Some(&json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create tenant: {body}");
        (
            body["id"].as_str().expect("tenant id").to_owned(),
            body["token"].as_str().expect("tenant token").to_owned(),
        )
    }

    /// Creates a webhook; answers the whole response (with the secret).
    pub async fn create_webhook(&self, token: &str, body: Value) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/webhooks",
                Some(token),
                Some(&body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create webhook: {body}");
        body
    }

    /// Sends one event; answers its id.
    pub async fn send_event(&self, token: &str, body: Value) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/events",
                Some(token),
                Some(&body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "send event: {body}");
        body["id"].as_str().expect("event id").to_owned()
    }
}
