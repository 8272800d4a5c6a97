//! Exchanged tokens, per worker: one [`TokenCache`] per gateway (the wasm
//! build has one gateway per VM, a native host one per worker), so the lock
//! is never contended. Keyed by a digest of (issuer, subject, the client's
//! scopes) and the backend; bounded; an entry is used until shortly before
//! the token expires. A miss makes its request the *leader* of one exchange;
//! requests for the same key meanwhile *follow* it (single flight) and are
//! woken when it ends. A failure is remembered for [`FAILURE_MEMORY_MS`], so
//! a down or refusing token service is not asked again by every request.

use super::codec::Failure;
use crate::gateway::host::StreamId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a failed exchange answers for its key.
pub const FAILURE_MEMORY_MS: u64 = 1000;
/// How long a token without a stated lifetime is reused at most.
pub const UNKNOWN_LIFETIME_MS: u64 = 60_000;
/// A leader's exchange is taken over after its timeout plus this.
const LEADER_GRACE_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    digest: [u8; 32],
    pub backend: usize,
}

impl Key {
    /// The key of `backend`'s token for this caller.
    pub fn new(backend: usize, issuer: &str, subject: &str, scopes: &[String]) -> Key {
        let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut h = Sha256::new();
        for part in [issuer, subject] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        for s in sorted {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Key {
            digest: h.finalize().into(),
            backend,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A usable header value.
    Hit(Arc<str>),
    /// A recent failure for this key.
    Failed(Failure),
    /// Another request is exchanging; the caller was added to its followers
    /// and is woken when it ends, or should look again at `deadline_ms`.
    Follow { deadline_ms: u64 },
    /// The caller exchanges (and must [`TokenCache::complete`] or
    /// [`TokenCache::abandon`]).
    Lead,
}

#[derive(Debug)]
enum Entry {
    Ready {
        value: Arc<str>,
        use_until_ms: u64,
    },
    Failed {
        failure: Failure,
        until_ms: u64,
    },
    Pending {
        deadline_ms: u64,
        followers: Vec<StreamId>,
    },
}

pub struct TokenCache {
    max_entries: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl TokenCache {
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache {
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Look `key` up at `now_ms`. `follower`: the caller's id when it can
    /// wait for another request (see [`Host::stream_id`](crate::gateway::Host::stream_id));
    /// without one it never follows. `timeout_ms`: the exchange's own
    /// timeout, if the caller ends up leading.
    pub fn lookup(
        &self,
        key: &Key,
        now_ms: u64,
        follower: Option<StreamId>,
        timeout_ms: u64,
    ) -> Lookup {
        let Ok(mut map) = self.entries.lock() else {
            return Lookup::Lead;
        };
        match map.get_mut(key) {
            Some(Entry::Ready {
                value,
                use_until_ms,
            }) if now_ms < *use_until_ms => {
                return Lookup::Hit(Arc::clone(value));
            }
            Some(Entry::Failed { failure, until_ms }) if now_ms < *until_ms => {
                return Lookup::Failed(failure.clone());
            }
            Some(Entry::Pending {
                deadline_ms,
                followers,
            }) if now_ms < *deadline_ms => {
                if let Some(id) = follower {
                    if !followers.contains(&id) {
                        followers.push(id);
                    }
                    return Lookup::Follow {
                        deadline_ms: *deadline_ms,
                    };
                }
                // Cannot wait: exchange on its own, leaving the leader be.
                return Lookup::Lead;
            }
            _ => {}
        }
        // Absent, stale, or a leader that vanished: this caller leads. Its
        // predecessor's followers stay (they are woken with its outcome).
        let followers = match map.remove(key) {
            Some(Entry::Pending { followers, .. }) => followers,
            _ => Vec::new(),
        };
        if map.len() >= self.max_entries {
            evict(&mut map, now_ms, self.max_entries);
        }
        if map.len() < self.max_entries || !followers.is_empty() {
            map.insert(
                *key,
                Entry::Pending {
                    deadline_ms: now_ms.saturating_add(timeout_ms + LEADER_GRACE_MS),
                    followers,
                },
            );
        }
        Lookup::Lead
    }

    /// `key`'s token if it is ready at `now_ms`, without joining or leading
    /// an exchange (for calls that cannot wait).
    pub fn peek(&self, key: &Key, now_ms: u64) -> Option<Arc<str>> {
        let map = self.entries.lock().ok()?;
        match map.get(key) {
            Some(Entry::Ready {
                value,
                use_until_ms,
            }) if now_ms < *use_until_ms => Some(Arc::clone(value)),
            _ => None,
        }
    }

    /// The leader's exchange ended: remember its outcome and return the
    /// followers to wake. `Ok((value, reuse_ms))`: reuse for that long
    /// (0: not at all, but followers still get it).
    pub fn complete(
        &self,
        key: &Key,
        now_ms: u64,
        outcome: Result<(Arc<str>, u64), Failure>,
    ) -> Vec<StreamId> {
        let Ok(mut map) = self.entries.lock() else {
            return Vec::new();
        };
        let followers = match map.remove(key) {
            Some(Entry::Pending { followers, .. }) => followers,
            _ => Vec::new(),
        };
        let entry = match outcome {
            // Followers read a token even when it may not be kept.
            Ok((value, reuse_ms)) => Entry::Ready {
                use_until_ms: now_ms.saturating_add(reuse_ms.max(1)),
                value,
            },
            Err(failure) => Entry::Failed {
                failure,
                until_ms: now_ms.saturating_add(FAILURE_MEMORY_MS),
            },
        };
        if map.len() >= self.max_entries {
            evict(&mut map, now_ms, self.max_entries);
        }
        if map.len() < self.max_entries {
            map.insert(*key, entry);
        }
        followers
    }

    /// The leader gave up without an outcome (its request ended first):
    /// its followers are returned to be woken; one of them leads next.
    pub fn abandon(&self, key: &Key) -> Vec<StreamId> {
        let Ok(mut map) = self.entries.lock() else {
            return Vec::new();
        };
        match map.remove(key) {
            Some(Entry::Pending { followers, .. }) => followers,
            Some(other) => {
                map.insert(*key, other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Stop following `key` (the follower's request ended).
    pub fn unfollow(&self, key: &Key, id: StreamId) {
        if let Ok(mut map) = self.entries.lock() {
            if let Some(Entry::Pending { followers, .. }) = map.get_mut(key) {
                followers.retain(|f| *f != id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Make room: drop what is stale, then the entries that expire first (never
/// a pending one: its followers wait on it).
fn evict(map: &mut HashMap<Key, Entry>, now_ms: u64, max: usize) {
    map.retain(|_, e| match e {
        Entry::Ready { use_until_ms, .. } => *use_until_ms > now_ms,
        Entry::Failed { until_ms, .. } => *until_ms > now_ms,
        Entry::Pending { .. } => true,
    });
    while map.len() >= max {
        let oldest = map
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Ready { use_until_ms, .. } => Some((*use_until_ms, *k)),
                Entry::Failed { until_ms, .. } => Some((*until_ms, *k)),
                Entry::Pending { .. } => None,
            })
            .min_by_key(|(t, _)| *t)
            .map(|(_, k)| k);
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            None => break,
        }
    }
}

/// How long an issued token is reused: until shortly before it expires (a
/// tenth of its life, at most 30 s, earlier), never longer than `max_ttl_ms`;
/// [`UNKNOWN_LIFETIME_MS`] when nothing says.
pub fn reuse_ms(lifetime_s: Option<u64>, max_ttl_ms: u64) -> u64 {
    let ms = match lifetime_s {
        Some(s) => {
            let life = s.saturating_mul(1000);
            life.saturating_sub((life / 10).min(30_000))
        }
        None => UNKNOWN_LIFETIME_MS,
    };
    ms.min(max_ttl_ms)
}
