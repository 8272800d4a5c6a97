//! Per-user upstream identity: OAuth 2.0 Token Exchange (RFC 8693).
//!
//! A backend with a `token_exchange` block never sees the client's token.
//! Before a routed request is forwarded to it, and before each of its
//! fan-out calls, the client's verified access token (jwt_authn checked it;
//! `auth` says who it belongs to) is exchanged at the token service for a
//! token minted for that backend, which goes in the configured header.
//!
//! - `config`: the block, compiled once (secrets from `${VAR}`);
//! - `codec`: the form-encoded request and what the answer means;
//! - `assertion`: the actor JWT the gateway signs (RFC 7523);
//! - `cache`: tokens per worker, keyed by (issuer, subject, client scopes,
//!   backend), reused until shortly before expiry, single-flight;
//! - `step`: where a request waits for its credentials, and how it goes on;
//! - `meters`: the metrics.
//!
//! Nothing about exchanged tokens travels in session ids: the cache is
//! per worker and a miss costs one exchange. No token value is ever logged.
//!
//! Waiting for another request's exchange needs the host to wake requests
//! ([`Host::stream_id`](super::Host::stream_id), [`Host::wake`](super::Host::wake));
//! a host that cannot lets each request exchange on its own.

pub mod assertion;
pub mod cache;
pub mod codec;
pub mod config;
pub mod meters;
mod step;

pub use cache::TokenCache;
pub use config::{compile, RawTokenExchange, TokenExchange};
pub use meters::TokenMeters;
pub(crate) use step::{Sent, Waits};

use super::config::Config;
use super::host::Configure;

/// What all requests of one gateway share: a cache per exchanging backend
/// and the metric handles.
pub struct Tokens {
    caches: Vec<Option<TokenCache>>,
    pub meters: std::sync::Arc<TokenMeters>,
}

impl Tokens {
    pub fn new(cfg: &Config, host: &mut dyn Configure) -> Tokens {
        let caches = cfg
            .backends
            .iter()
            .map(|b| {
                b.token_exchange
                    .as_ref()
                    .map(|te| TokenCache::new(te.max_entries))
            })
            .collect();
        let meters = if cfg.metrics {
            let list: Vec<(&str, bool)> = cfg
                .backends
                .iter()
                .map(|b| (b.name.as_str(), b.token_exchange.is_some()))
                .collect();
            TokenMeters::new(&list, host)
        } else {
            TokenMeters::default()
        };
        Tokens {
            caches,
            meters: std::sync::Arc::new(meters),
        }
    }

    /// Empty caches for another worker, the same metric handles.
    pub fn for_worker(&self, cfg: &Config) -> Tokens {
        Tokens {
            caches: Self::caches(cfg),
            meters: std::sync::Arc::clone(&self.meters),
        }
    }

    fn caches(cfg: &Config) -> Vec<Option<TokenCache>> {
        cfg.backends
            .iter()
            .map(|b| {
                b.token_exchange
                    .as_ref()
                    .map(|te| TokenCache::new(te.max_entries))
            })
            .collect()
    }

    /// Backend `i`'s cache.
    pub fn cache(&self, i: usize) -> Option<&TokenCache> {
        self.caches.get(i).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests;
