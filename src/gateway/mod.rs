//! Gateway logic: pure Rust, no proxy calls. An adapter drives it through the
//! host port (`host`) and the filter hooks (`hooks`). A request's path through
//! it is `exchange` (classify and decide) -> `naming` / `filter` (which
//! backend, visible or not) -> fan out and `merge`, or route and `stream`
//! (rewrite the answer as it flows back), or merge several backends' event
//! streams (`fanin`); refusals are typed (`error`). State
//! that must outlive a request lives in sealed ids (`session`, `tokens`, built
//! on `crypto`); what all requests of one configuration share is `instance`.
//! The stateless 2026-07-28 revision (validation, discover, MRTR state,
//! listen, backend eras) is in `modern`, over the same steps.

mod access;
pub mod audit;
pub mod auth;
pub mod cel;
pub mod config;
pub mod crypto;
pub mod error;
pub mod exchange;
mod fanin;
mod fanout;
pub mod filter;
pub mod hooks;
pub mod host;
pub mod instance;
pub mod merge;
pub mod modern;
pub mod naming;
pub mod policy;
pub mod revocation;
mod route;
pub mod session;
pub mod stats;
pub mod stream;
pub mod token_exchange;
pub mod tokens;

#[cfg(test)]
pub(crate) mod testing;

pub use config::{compile, Config, ConfigError};
pub use error::GatewayError;
pub use exchange::Exchange;
pub use host::{Configure, Host, HttpStream, StreamId};
pub use instance::Gateway;
