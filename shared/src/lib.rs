//! Herald's shared core, used by the `api`, `dispatcher` and `worker`
//! processes. Its modules follow the architecture:
//!
//! - [`amqp`]: the topology, publishing with confirms, the consume loop and
//!   its failure model, and fair scheduling between tenants;
//! - [`db`]: the pool, the migrations, and one module of queries per table
//!   family;
//! - [`delivery`]: what the tables and the recorder know of a delivery —
//!   its stored options and the retry policy (sending is the
//!   `herald-delivery` crate's, which the dispatcher does not link);
//! - [`runtime`]: what every process runs on — configuration, telemetry,
//!   metrics, health, shutdown, periodic tasks;
//! - and the values they share: [`models`] (event types, ids, wire
//!   messages), [`payload`] (what a JSON payload may hold), [`crypto`]
//!   (secrets at rest), [`operational`] (Herald's own events), [`text`] and
//!   [`token_bucket`].

pub mod amqp;
pub mod catalog;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod filter;
pub mod models;
pub mod operational;
pub mod payload;
pub mod runtime;
pub mod text;
pub mod token_bucket;
