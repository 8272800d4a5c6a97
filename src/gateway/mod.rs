//! Gateway logic: pure Rust, no proxy calls. A request's path through it is
//! `exchange` (classify and decide) -> `naming` / `filter` (which backend,
//! visible or not) -> fan out and `merge`, or route and `stream` (rewrite the
//! answer as it flows back). State that must outlive a request lives in sealed
//! ids (`session`, `tokens`, built on `crypto`). The stateless 2026-07-28
//! revision (validation, discover, MRTR state, listen, backend eras) is in
//! `modern`, over the same steps.

mod access;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod exchange;
mod fanout;
pub mod filter;
pub mod host;
pub mod merge;
pub mod modern;
pub mod naming;
pub mod revocation;
mod route;
pub mod session;
pub mod stats;
pub mod stream;
pub mod tokens;

#[cfg(test)]
pub(crate) mod testing;

pub use config::{compile, Config, ConfigError};
pub use exchange::{Exchange, Gateway};
pub use host::Host;
