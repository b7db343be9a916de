//! Sending one delivery, as the worker does for every delivery and the api
//! for a test call: the body rendered in the webhook's format
//! ([`formats`]), signed ([`signing`]), authenticated ([`outbound_auth`]),
//! POSTed through the guarded client ([`net_guard`]) by the [`sender`],
//! and the result read against the retry policy ([`retry`]); [`direct`]
//! makes one delivery now, outside the queues, through the same code.
//! With `delivery.proxy_url` set, the client's requests go through the
//! [`egress`] relay, which checks every target before the proxy sees it.
//!
//! A crate of its own so that the dispatcher, which sends nothing, links
//! neither the template engine nor the HTTP client.

pub mod client_cert;
pub mod direct;
pub mod egress;
pub mod formats;
pub mod net_guard;
pub mod outbound_auth;
pub mod sender;
pub mod signing;

pub use herald_shared::delivery::{options, retry};
