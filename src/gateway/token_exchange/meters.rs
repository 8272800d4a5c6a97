//! The token exchange's metrics, declared per backend that exchanges.

use crate::gateway::host::{Configure, Family, Host, MetricId, MetricKind};
use crate::gateway::stats::sanitize;

pub mod names {
    pub const EXCHANGES: &str = "mcpgw.token_exchanges_total";
    pub const CACHE: &str = "mcpgw.token_cache_lookups_total";
    pub const EXCHANGE_MS: &str = "mcpgw.token_exchange_duration_ms";
}

/// Exchanges by `backend` and `outcome` (`ok`, `refused`,
/// `client_rejected`, `unavailable`, `bad_response`).
pub const EXCHANGES: Family = Family {
    name: names::EXCHANGES,
    kind: MetricKind::Counter,
    labels: &["backend", "outcome"],
};
/// Credential look-ups by `backend` and `outcome` (`hit`, `miss`: this
/// request exchanged, `shared`: it waited for another request's exchange,
/// `failed`: a failure remembered for a second).
pub const CACHE: Family = Family {
    name: names::CACHE,
    kind: MetricKind::Counter,
    labels: &["backend", "outcome"],
};
/// How long exchanges took, by `backend`.
pub const EXCHANGE_MS: Family = Family {
    name: names::EXCHANGE_MS,
    kind: MetricKind::Histogram,
    labels: &["backend"],
};

pub const FAMILIES: [&Family; 3] = [&EXCHANGES, &CACHE, &EXCHANGE_MS];

pub const EXCHANGE_OUTCOMES: [&str; 5] = [
    "ok",
    "refused",
    "client_rejected",
    "unavailable",
    "bad_response",
];
pub const CACHE_OUTCOMES: [&str; 4] = ["hit", "miss", "shared", "failed"];

#[derive(Default)]
struct Series {
    exchanges: Vec<Option<MetricId>>,
    cache: Vec<Option<MetricId>>,
    duration: Option<MetricId>,
}

/// Handles by backend index (empty for backends that do not exchange).
#[derive(Default)]
pub struct TokenMeters {
    by_backend: Vec<Series>,
}

impl TokenMeters {
    /// `backends`: (name, exchanges?) in configuration order.
    pub fn new(backends: &[(&str, bool)], host: &mut dyn Configure) -> TokenMeters {
        let by_backend = backends
            .iter()
            .map(|(name, exchanges)| {
                if !exchanges {
                    return Series::default();
                }
                let b = sanitize(name);
                Series {
                    exchanges: EXCHANGE_OUTCOMES
                        .iter()
                        .map(|o| host.define_metric(&EXCHANGES, &[&b, o]))
                        .collect(),
                    cache: CACHE_OUTCOMES
                        .iter()
                        .map(|o| host.define_metric(&CACHE, &[&b, o]))
                        .collect(),
                    duration: host.define_metric(&EXCHANGE_MS, &[&b]),
                }
            })
            .collect();
        TokenMeters { by_backend }
    }

    pub fn exchange(&self, host: &dyn Host, backend: usize, outcome: &str, ms: u64) {
        let Some(s) = self.by_backend.get(backend) else {
            return;
        };
        let i = EXCHANGE_OUTCOMES.iter().position(|o| *o == outcome);
        if let Some(Some(id)) = i.and_then(|i| s.exchanges.get(i)) {
            host.record(*id, 1);
        }
        if let Some(id) = s.duration {
            host.record(id, ms);
        }
    }

    pub fn lookup(&self, host: &dyn Host, backend: usize, outcome: &str) {
        let Some(s) = self.by_backend.get(backend) else {
            return;
        };
        let i = CACHE_OUTCOMES.iter().position(|o| *o == outcome);
        if let Some(Some(id)) = i.and_then(|i| s.cache.get(i)) {
            host.record(*id, 1);
        }
    }
}
