//! Postgres: the pool, migrations, and one module of queries per table
//! group. Query functions take `&impl GenericClient`, so they run on a plain
//! connection or inside a transaction alike.

pub mod config_version;
pub mod deliveries;
pub mod event_types;
pub mod heartbeats;
pub mod history;
pub mod overview;
pub mod portal;
pub mod replays;
pub mod retention;
pub mod stats;
pub mod tenants;
pub mod webhooks;

use anyhow::Context;
use deadpool_postgres::Pool;
use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;

use crate::runtime::config::DatabaseSettings;

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
    #[error("database error: {}", describe(.0))]
    Query(tokio_postgres::Error),
    /// A stored value Herald cannot read back (damaged, or written by
    /// something else).
    #[error("a stored value cannot be read: {0}")]
    Decode(String),
}

/// A `jsonb` column read as text, as the JSON it holds.
///
/// # Errors
/// Text that is not JSON (Postgres never gives it for `jsonb`).
pub fn raw_json(text: String) -> DbResult<Box<serde_json::value::RawValue>> {
    serde_json::value::RawValue::from_string(text).map_err(|e| DbError::Decode(e.to_string()))
}

/// What a failed query means for trying it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database cannot be reached or is shutting down: the same query
    /// will work once it is back.
    Unavailable,
    /// The query lost a race or a resource for now (a deadlock, a
    /// serialization failure, a cancelled statement, an I/O error on the
    /// server): it may work if tried again, a few times.
    Transient,
    /// The server refused the statement for what it holds or asks (bad
    /// data, a constraint, a limit such as stack depth): it fails the same
    /// way every time.
    Permanent,
}

impl DbError {
    /// Classifies the failure by what it is: the connection, the moment, or
    /// the statement itself.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Pool(_) => FailureKind::Unavailable,
            Self::Conflict { .. } | Self::Decode(_) => FailureKind::Permanent,
            Self::Query(e) => match e.as_db_error() {
                Some(db) => kind_of_sqlstate(db.code().code()),
                None if e.is_closed() || source_is_io(e) => FailureKind::Unavailable,
                // A value Herald could not encode or decode: a retry may
                // find the row changed, but rarely; bounded by the caller.
                None => FailureKind::Transient,
            },
        }
    }
}

/// SQLSTATE classes by what they say about trying again (PostgreSQL
/// documentation, Appendix A).
fn kind_of_sqlstate(code: &str) -> FailureKind {
    match code {
        // Connection exceptions, insufficient resources, and the server
        // shutting down or starting up.
        c if c.starts_with("08") || c.starts_with("53") => FailureKind::Unavailable,
        "57P01" | "57P02" | "57P03" => FailureKind::Unavailable,
        // Transaction rollbacks (serialization, deadlock), a lock not
        // available, a cancelled statement, system and internal errors.
        c if c.starts_with("40") || c.starts_with("58") || c.starts_with("XX") => {
            FailureKind::Transient
        }
        "55P03" | "57014" => FailureKind::Transient,
        // Everything else is the statement refused: data exceptions (22),
        // constraints (23), program limits (54), syntax or access (42), …
        _ => FailureKind::Permanent,
    }
}

fn source_is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Postgres's own words for a refused statement (its message, SQLSTATE and
/// any detail) rather than the driver's "db error".
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            crate::text::clean(&text).into_owned()
        }
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
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

/// Applies every pending migration, then creates the day partitions of
/// the week ahead that are missing (see [`retention`]).
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
    retention::ensure_partitions(&client)
        .await
        .context("creating the day partitions")?;
    Ok(())
}

/// Applies the migrations up to and including `version` and no further:
/// an installation as an earlier release left it, for upgrade tests.
///
/// # Errors
/// No connection, or a migration that fails.
pub async fn migrate_to(pool: &Pool, version: i32) -> anyhow::Result<()> {
    let mut client = pool.get().await.context("connecting to run migrations")?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(&mut **client)
        .await
        .context("applying migrations")?;
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
