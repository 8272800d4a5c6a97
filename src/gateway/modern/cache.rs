//! Cache hints (`ttlMs`, `cacheScope`) of 2026-07-28 results, and how the
//! hints of several backends combine into one answer: conservatively, so a
//! client never keeps an answer longer, or shares it wider, than every part
//! of it allows.

use crate::protocol::jsonrpc::RawObject;
use serde_json::value::RawValue;

/// A result's freshness and who may share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    pub ttl_ms: u64,
    /// `cacheScope: "private"`: not to be shared across authorization contexts.
    pub private: bool,
}

impl CacheHint {
    /// What the gateway says about an answer of its own with no backend part.
    pub const LOCAL: CacheHint = CacheHint {
        ttl_ms: 0,
        private: false,
    };

    /// The hints of one backend's result. A missing `ttlMs` is 0 (the
    /// specification's default for earlier servers), a negative one 0; a
    /// missing or unknown `cacheScope` is private, the safe reading.
    pub fn read(ttl: Option<&RawValue>, scope: Option<&str>) -> CacheHint {
        let ttl_ms = ttl
            .and_then(|t| t.get().parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0)
            // `as` saturates for floats: 1e30 becomes u64::MAX.
            .map_or(0, |t| t as u64);
        CacheHint {
            ttl_ms,
            private: scope != Some("public"),
        }
    }

    /// The hints of a result object's text.
    pub fn of_result(result: &str) -> CacheHint {
        match RawObject::parse_str(result) {
            Ok(o) => CacheHint::read(o.get("ttlMs"), o.get_str("cacheScope").as_deref()),
            Err(_) => CacheHint::read(None, None),
        }
    }

    /// Several parts in one answer: the shortest freshness, private if any
    /// part is. No part at all: [`CacheHint::LOCAL`].
    pub fn merge(parts: impl IntoIterator<Item = CacheHint>) -> CacheHint {
        parts
            .into_iter()
            .reduce(|a, b| CacheHint {
                ttl_ms: a.ttl_ms.min(b.ttl_ms),
                private: a.private || b.private,
            })
            .unwrap_or(CacheHint::LOCAL)
    }

    /// Private as well, when the answer differs per caller (authorization).
    pub fn per_caller(self, filtered: bool) -> CacheHint {
        CacheHint {
            private: self.private || filtered,
            ..self
        }
    }

    /// `"ttlMs":N,"cacheScope":"..."`, to splice into a result object.
    pub fn members(self) -> String {
        format!(
            "\"ttlMs\":{},\"cacheScope\":\"{}\"",
            self.ttl_ms,
            if self.private { "private" } else { "public" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reading_defaults_are_conservative() {
        assert_eq!(
            CacheHint::of_result(r#"{"tools":[],"ttlMs":60000,"cacheScope":"public"}"#),
            CacheHint {
                ttl_ms: 60_000,
                private: false
            }
        );
        assert_eq!(
            CacheHint::of_result(r#"{"tools":[]}"#),
            CacheHint {
                ttl_ms: 0,
                private: true
            },
            "an earlier-era server says nothing: stale and private"
        );
        assert_eq!(
            CacheHint::of_result(r#"{"ttlMs":-5,"cacheScope":"public"}"#).ttl_ms,
            0
        );
        assert_eq!(
            CacheHint::of_result(r#"{"ttlMs":1.5e3,"cacheScope":"x"}"#),
            CacheHint {
                ttl_ms: 1500,
                private: true
            }
        );
        assert_eq!(CacheHint::of_result(r#"{"ttlMs":"soon"}"#).ttl_ms, 0);
    }

    #[test]
    fn merge_takes_the_minimum_and_any_private() {
        let a = CacheHint {
            ttl_ms: 60_000,
            private: false,
        };
        let b = CacheHint {
            ttl_ms: 5_000,
            private: false,
        };
        let c = CacheHint {
            ttl_ms: 90_000,
            private: true,
        };
        assert_eq!(
            CacheHint::merge([a, b]),
            CacheHint {
                ttl_ms: 5_000,
                private: false
            }
        );
        assert_eq!(
            CacheHint::merge([a, c]),
            CacheHint {
                ttl_ms: 60_000,
                private: true
            }
        );
        assert_eq!(CacheHint::merge([]), CacheHint::LOCAL);
        assert!(CacheHint::merge([a, b]).per_caller(true).private);
        assert_eq!(
            CacheHint {
                ttl_ms: 7,
                private: true
            }
            .members(),
            r#""ttlMs":7,"cacheScope":"private""#
        );
    }
}
