//! Ending sessions that live in their ids.
//!
//! A sealed session id cannot be taken back from the client, so `DELETE`
//! records the session as revoked in the proxy's shared data, which every
//! worker of that Envoy reads. Entries are grouped by the session's expiry
//! into a fixed ring of slots (sharded by session), so the store holds at most
//! one session lifetime of deletions and never grows beyond that: once a
//! session has expired on its own its entry is dead weight and its slot is
//! recycled.
//!
//! Scope, stated honestly: the shared data of one Envoy process. Another
//! replica only learns of the deletion through the backends, which the
//! gateway also DELETEs (stateful backends then answer 404, which the gateway
//! passes on); with only stateless backends a revoked id keeps working on
//! other replicas until it expires (`session.ttl`).

use super::host::Host;

const SHARDS: u64 = 16;
const ENTRY: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Revocations {
    width_ms: u64,
    slots: u64,
}

impl Revocations {
    pub fn new(ttl_ms: u64) -> Revocations {
        let width_ms = (ttl_ms / 16).max(60_000);
        Revocations {
            width_ms,
            slots: ttl_ms / width_ms + 2,
        }
    }

    fn key(&self, sid: &[u8; 16], expires_ms: u64) -> (String, u64) {
        let epoch = expires_ms / self.width_ms;
        let shard = u64::from(sid[0]) % SHARDS;
        (
            format!("mcpgw.revoked.{}.{shard}", epoch % self.slots),
            epoch,
        )
    }

    pub fn is_revoked(&self, host: &dyn Host, sid: &[u8; 16], expires_ms: u64) -> bool {
        let (key, epoch) = self.key(sid, expires_ms);
        let (value, _) = host.shared_get(&key);
        value.is_some_and(|v| contains(&v, epoch, sid))
    }

    /// Record a revocation; retries on concurrent updates from other workers.
    pub fn revoke(&self, host: &dyn Host, sid: &[u8; 16], expires_ms: u64) -> bool {
        let (key, epoch) = self.key(sid, expires_ms);
        for _ in 0..8 {
            let (value, cas) = host.shared_get(&key);
            let mut next = match value {
                Some(v) if slot_epoch(&v) == Some(epoch) => {
                    if contains(&v, epoch, sid) {
                        return true;
                    }
                    v
                }
                // Empty, or a slot left over from an expired epoch: recycle it.
                _ => epoch.to_be_bytes().to_vec(),
            };
            next.extend_from_slice(sid.get(..ENTRY).unwrap_or_default());
            match host.shared_set(&key, &next, cas) {
                Ok(true) => {
                    // A CAS of 0 (a new key) is unconditional: confirm we were not overwritten.
                    if self.is_revoked(host, sid, expires_ms) {
                        return true;
                    }
                }
                Ok(false) => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

fn slot_epoch(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn contains(v: &[u8], epoch: u64, sid: &[u8; 16]) -> bool {
    if slot_epoch(v) != Some(epoch) {
        return false;
    }
    let needle = sid.get(..ENTRY).unwrap_or_default();
    v.get(8..)
        .unwrap_or_default()
        .chunks_exact(ENTRY)
        .any(|c| c == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::FakeHost;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn revoke_then_check() {
        let host = FakeHost::default();
        let r = Revocations::new(3_600_000);
        let a = [1u8; 16];
        let b = [2u8; 16];
        assert!(!r.is_revoked(&host, &a, 10_000_000));
        assert!(r.revoke(&host, &a, 10_000_000));
        assert!(r.is_revoked(&host, &a, 10_000_000));
        assert!(!r.is_revoked(&host, &b, 10_000_000));
        assert!(r.revoke(&host, &b, 10_000_000));
        assert!(r.is_revoked(&host, &a, 10_000_000) && r.is_revoked(&host, &b, 10_000_000));
    }

    #[test]
    fn store_is_bounded() {
        let host = FakeHost::default();
        let ttl = 3_600_000;
        let r = Revocations::new(ttl);
        for i in 0..5_000u64 {
            let mut sid = [0u8; 16];
            sid[..8].copy_from_slice(&i.to_be_bytes());
            sid[0] = (i % 251) as u8;
            // Sessions expiring over ten lifetimes.
            r.revoke(&host, &sid, 1_000_000_000 + i * ttl * 10 / 5_000);
        }
        let keys = host.shared.borrow().len() as u64;
        assert!(keys <= r.slots * SHARDS, "{keys} keys");
        let bytes: usize = host.shared.borrow().values().map(|(v, _)| v.len()).sum();
        // Only about one lifetime's worth (a tenth, plus a slot or two) remains.
        assert!(
            bytes < 5_000 * 8 / 10 * 2 + 16 * 2 * 8 * 40,
            "{bytes} bytes"
        );
    }
}
