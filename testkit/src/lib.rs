//! Herald's test harness. Every test gets its own database (copied from a
//! migrated template) and its own AMQP prefix, so tests run in parallel
//! against the real Postgres and RabbitMQ and leave nothing behind; the
//! three processes run in-process on random ports, and endpoints are real
//! HTTP servers on loopback.
//!
//! The services are found through the same `HERALD__DATABASE__URL` and
//! `HERALD__AMQP__URL` variables as Herald itself, defaulting to the local
//! ones.

mod browser;
mod env;
mod hostile;
mod postgres;
mod process;
mod proxy;
mod rabbit_cluster;
mod receiver;
mod tinyproxy;
mod token_endpoint;
mod wait;

pub use browser::{Browser, Element};
pub use env::{ADMIN_TOKEN, ApiHandle, Parked, ProcessHandle, TestEnv};
pub use hostile::{Behaviour, HostileEndpoint};
pub use postgres::PrivatePostgres;
pub use process::{ChildProcess, free_port, workspace_binary};
pub use proxy::Proxy;
pub use rabbit_cluster::RabbitCluster;
pub use receiver::{ClientPem, Received, Receiver, TestCa};
pub use tinyproxy::TinyProxy;
pub use token_endpoint::{TokenEndpoint, TokenRequest};
pub use wait::wait_until;
