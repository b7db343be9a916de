//! What every Herald process runs on: configuration, logs, metrics, the
//! health endpoints, shutdown on a signal, the common start and finish of a
//! process, and periodic tasks.

pub mod config;
pub mod health;
pub mod metrics;
pub mod periodic;
pub mod process;
pub mod shutdown;
pub mod telemetry;
