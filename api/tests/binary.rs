//! The `herald-api` binary: `migrate` creates and migrates a database, and
//! `serve` exits cleanly on SIGTERM.

use std::time::Duration;

use herald_testkit::{ChildProcess, TestEnv, free_port, wait_until};

const API: &str = env!("CARGO_BIN_EXE_herald-api");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_and_applies_the_migrations() {
    let env = TestEnv::new().await;
    let fresh = format!("{}_fresh", env.db_name);
    let mut vars = env.vars.clone();
    let url = vars["HERALD__DATABASE__URL"].replace(&env.db_name, &fresh);
    vars.insert("HERALD__DATABASE__URL".to_owned(), url.clone());

    for _ in 0..2 {
        // Twice: the second run finds nothing to do and still succeeds.
        let mut migrate = ChildProcess::spawn(API, &["migrate"], &vars);
        let status = migrate
            .wait_exit(Duration::from_secs(60))
            .await
            .expect("migrate finishes");
        assert!(status.success(), "migrate exits 0, got {status}");
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN
             ('tenants', 'api_tokens', 'webhooks', 'events', 'deliveries', 'delivery_attempts')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 6);
    drop(client);
    task.abort();
    let (admin, conn) =
        tokio_postgres::connect(&url.replace(&fresh, "postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE {fresh} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_and_exits_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let port = free_port();
    let mut vars = env.vars.clone();
    vars.insert(
        "HERALD__API__LISTEN".to_owned(),
        format!("127.0.0.1:{port}"),
    );
    let mut api = ChildProcess::spawn(API, &["serve"], &vars);
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "the api ready", || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("herald_deliveries_created_total"));
    api.terminate();
    let status = api
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
}
