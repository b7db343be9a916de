//! Herald's shared core, used by the `api`, `dispatcher` and `worker`
//! processes: configuration, domain models and wire messages, the AMQP
//! topology and publisher, Postgres queries and migrations, webhook
//! signing, secrets at rest, the outbound-request guard, metrics, health
//! endpoints, telemetry and shutdown.

pub mod amqp;
pub mod config;
pub mod consumer;
pub mod crypto;
pub mod db;
pub mod fairness;
pub mod formats;
pub mod health;
pub mod metrics;
pub mod models;
pub mod net_guard;
pub mod operational;
pub mod outbound_auth;
pub mod payload;
pub mod process;
pub mod retry;
pub mod sender;
pub mod shutdown;
pub mod signing;
pub mod telemetry;
pub mod text;
pub mod token_bucket;
