//! One gateway per plugin configuration (and, in hosts that share one
//! configuration between threads, per worker): the compiled configuration and
//! what every request of it shares (revocations, the tool-label cap, the
//! cache of opened sessions, the metric handles, what was learned of
//! backends' eras).

use super::config::Config;
use super::host::Configure;
use super::modern::eras::BackendEras;
use super::revocation::Revocations;
use super::session::SessionCache;
use super::stats::{Cardinality, Meters};
use super::token_exchange::Tokens;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The compiled configuration plus process-wide helpers; one per plugin config.
pub struct Gateway {
    pub cfg: Arc<Config>,
    pub revocations: Revocations,
    pub cardinality: Cardinality,
    /// Sessions opened on this worker (see `SessionCache`).
    pub sessions: SessionCache,
    /// The metric handles, declared with the host at configure time.
    pub meters: Arc<Meters>,
    /// Exchanged upstream tokens (this worker's) and their metrics
    /// (`token_exchange`).
    pub tokens: Tokens,
    /// What this worker learned of each backend's protocol era.
    pub eras: BackendEras,
    /// Numbers the ids of 2026-07-28 requests sent through the sessions this
    /// worker holds with 2025-era backends.
    held_ids: AtomicU64,
}

impl Gateway {
    /// Backend `i`'s name, for logs, errors and labels.
    pub(super) fn backend_name(&self, i: usize) -> &str {
        self.cfg.backends.get(i).map_or("?", |b| b.name.as_str())
    }

    /// Set the gateway up: its metrics are declared with `host` here, while
    /// the configuration is being created (the only time some hosts allow it).
    pub fn new(cfg: Config, host: &mut dyn Configure) -> Gateway {
        let revocations = Revocations::new(cfg.session_ttl_ms);
        let meters = Meters::new(&cfg, host);
        let tokens = Tokens::new(&cfg, host);
        Gateway::with_parts(Arc::new(cfg), revocations, Arc::new(meters), tokens)
    }

    fn with_parts(
        cfg: Arc<Config>,
        revocations: Revocations,
        meters: Arc<Meters>,
        tokens: Tokens,
    ) -> Gateway {
        Gateway {
            eras: BackendEras::new(cfg.backends.len()),
            held_ids: AtomicU64::new(0),
            cfg,
            revocations,
            cardinality: Cardinality::default(),
            // Per worker, two generations: at most 2,048 opened sessions
            // (under 1 KB each) stay in the worker's memory; a miss only
            // costs an AEAD open.
            sessions: SessionCache::new(1024),
            meters,
            tokens,
        }
    }

    /// Another gateway of the same configuration and metric handles, with
    /// caches of its own: for hosts that share one configuration between
    /// worker threads (an Envoy dynamic module), one per worker keeps the
    /// short locks of the caches uncontended.
    pub fn for_worker(&self) -> Gateway {
        Gateway::with_parts(
            Arc::clone(&self.cfg),
            self.revocations,
            Arc::clone(&self.meters),
            self.tokens.for_worker(&self.cfg),
        )
    }

    /// A request id no other request through this worker's held sessions
    /// uses (raw JSON).
    pub fn next_held_id(&self) -> String {
        let n = self.held_ids.fetch_add(1, Ordering::Relaxed);
        format!("\"mcpgw-held-{n}\"")
    }

    /// What an adapter logs once the gateway is configured.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.cfg.backends.iter().map(|b| b.name.as_str()).collect();
        format!(
            "mcpgw {} configured: {} with backends {}",
            env!("CARGO_PKG_VERSION"),
            self.cfg.path,
            names.join(", ")
        )
    }
}
