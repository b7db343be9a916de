//! Herald's dispatcher: consumes events from the dispatch queue, matches
//! them against the tenant's subscriptions (cached), stores the event and
//! one delivery per matching webhook, and publishes one delivery message
//! each for the workers.

pub mod dispatch;
pub mod pruner;
pub mod purger;
pub mod queue_depth;
pub mod replayer;
pub mod run;
pub mod store;
pub mod subscription_cache;
pub mod sweeper;
