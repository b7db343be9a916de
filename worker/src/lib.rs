//! Herald's worker: consumes delivery messages, renders and signs each
//! event, POSTs it to the webhook's endpoint, and records every attempt.

pub mod backlog;
pub mod breaker;
pub mod deliver;
pub mod limiter;
pub mod rate;
pub mod recorder;
pub mod run;
pub mod webhook_cache;
