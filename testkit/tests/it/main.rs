//! Herald's integration tests: the real processes against the real
//! Postgres, RabbitMQ and HTTP endpoints, each test in its own database and
//! AMQP prefix.

mod api;
mod catalog;
mod circuit;
mod console;
mod delivery_options;
mod egress;
mod fairness;
mod filters;
mod history;
mod hostile;
mod isolation;
mod openapi;
mod operations;
mod partitions;
mod pipeline;
mod portal;
mod replay;
mod resilience;
mod retries;
mod rotation;
mod seeds;
mod tenants;
