//! What the tables and the recorder need to know of a delivery: its
//! options as stored ([`options`]) and the retry policy with the outcome of
//! an attempt ([`retry`]). Rendering, signing, authenticating and sending
//! are the `herald-delivery` crate's, which only the api and the worker
//! link.

pub mod options;
pub mod retry;
