//! Herald's HTTP API: tenants and tokens, webhooks, and event ingest
//! (published to RabbitMQ with confirms before answering 202).

pub mod announce;
pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod patch;
pub mod rate_limit;
pub mod routes;
pub mod serve;
pub mod slots;
pub mod startup;
pub mod state;
