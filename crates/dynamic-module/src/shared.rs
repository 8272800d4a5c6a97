//! The process-wide key/value store behind [`Host::shared_get`] and
//! [`Host::shared_set`] (what proxy-wasm calls shared data): session
//! revocations, read on every request that carries a session and written by
//! `DELETE`. Sharded by key and read-locked, so workers reading it do not
//! wait for each other; values carry a version for compare-and-swap.
//!
//! [`Host::shared_get`]: mcpgw_core::gateway::Host::shared_get
//! [`Host::shared_set`]: mcpgw_core::gateway::Host::shared_set

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

const SHARDS: usize = 32;

type Shard = RwLock<HashMap<String, (Vec<u8>, u32)>>;

pub struct Store {
    shards: [Shard; SHARDS],
}

/// Why a set failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// The version did not match (another writer was first).
    CasMismatch,
    /// A lock was poisoned (a writer panicked).
    Poisoned,
}

impl Store {
    pub fn new() -> Store {
        Store {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }

    fn shard(&self, key: &str) -> Option<&Shard> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.shards
            .get(usize::try_from(h.finish() % SHARDS as u64).ok()?)
    }

    /// The value and its version (0 when absent).
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        let Some(Ok(m)) = self.shard(key).map(RwLock::read) else {
            return (None, 0);
        };
        match m.get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        }
    }

    /// Set `key` if its version is still `cas` (0: unconditionally).
    pub fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let Some(Ok(mut m)) = self.shard(key).map(RwLock::write) else {
            return Err(SetError::Poisoned);
        };
        let current = m.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(SetError::CasMismatch);
        }
        // Versions start at 1 and skip 0 (which means "no check").
        let next = current.wrapping_add(1).max(1);
        m.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap() {
        let s = Store::new();
        assert_eq!(s.get("k"), (None, 0));
        s.set("k", b"a", 0).unwrap();
        let (v, c) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        assert_eq!(s.set("k", b"b", c + 7), Err(SetError::CasMismatch));
        s.set("k", b"b", c).unwrap();
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]));
        assert_eq!(s.set("k", b"c", c), Err(SetError::CasMismatch), "stale");
    }
}
