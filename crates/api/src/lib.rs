//! The Docker Engine API: serde models ([`models`]), the HTTP server that routes requests to the
//! engine ([`server`]), and the client the CLI uses ([`client`]).
//!
//! Transport only: handlers parse a request into a typed call on the engine and render its
//! result; no HTTP type crosses into the engine.

// `/info` is one large `json!` literal.
#![recursion_limit = "256"]

pub mod client;
pub mod detach;
pub mod models;
pub mod server;
pub mod stream;
pub mod timefmt;

/// The highest Engine API version Berth speaks.
pub const API_VERSION: &str = "1.50";
/// The lowest Engine API version Berth accepts.
pub const MIN_API_VERSION: &str = "1.24";
