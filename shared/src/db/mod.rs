//! Postgres: the pool, migrations, and one module of queries per table
//! group. Query functions take `&impl GenericClient`, so they run on a plain
//! connection or inside a transaction alike.

pub mod config_version;
pub mod deliveries;
pub mod heartbeats;
pub mod history;
pub mod retention;
pub mod tenants;
pub mod webhooks;

use anyhow::Context;
use deadpool_postgres::Pool;
use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;

use crate::config::DatabaseSettings;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Why a query failed, in the terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("unique constraint {constraint} violated")]
    Conflict { constraint: String },
    #[error("database error: {0}")]
    Query(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error()
            && *db.code() == SqlState::UNIQUE_VIOLATION
        {
            return Self::Conflict {
                constraint: db.constraint().unwrap_or_default().to_owned(),
            };
        }
        Self::Query(e)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Applies every pending migration.
///
/// # Errors
/// No connection, or a migration that fails.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await.context("connecting to run migrations")?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await
        .context("applying migrations")?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied");
    }
    Ok(())
}

/// Creates the configured database if it does not exist yet (connecting to
/// the server's `postgres` database to do so).
///
/// # Errors
/// The server cannot be reached, or the role may not create databases.
pub async fn ensure_database(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = settings
        .url
        .expose_secret()
        .parse()
        .context("database.url is not a valid URL")?;
    let name = config
        .get_dbname()
        .context("database.url names no database")?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the postgres database")?;
    let task = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        tracing::info!(database = %name, "created database");
    }
    drop(client);
    let _ = task.await;
    Ok(())
}
