//! What the gateway's per-thread tables share. Each worker thread keeps a few tables of its own
//! so that a request touches no memory another core writes: recent token verifications
//! (`token/cache.rs`), idle upstream connections (`upstream.rs`) and metric handles
//! (`metrics.rs`). Their entries belong to an owner that a reload replaces (a key set, a config's
//! upstream pool, a metrics registry), so each entry carries its owner's [`OwnerId`] and is taken
//! only by that owner ([`Stamped`]); their keys are the gateway's own, never a client's, so one
//! cheap hasher serves them all ([`FastMap`]). (The other thread-locals, the request-id batch and
//! the log line buffers, are scratch space that belongs to no owner.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the owners whose entries threads keep. Drawn from one process-wide counter, so an
/// id is never reused: an entry left by an owner that a reload replaced is never taken for the
/// new one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct OwnerId(u64);

impl OwnerId {
    /// An id no other owner has had.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        OwnerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A per-thread entry and the owner it was made for.
#[derive(Debug)]
pub(crate) struct Stamped<T> {
    owner: OwnerId,
    value: T,
}

impl<T> Stamped<T> {
    /// `value`, made for `owner`.
    pub(crate) fn new(owner: OwnerId, value: T) -> Self {
        Stamped { owner, value }
    }

    /// The value, when `owner` is the one it was made for.
    pub(crate) fn get(&self, owner: OwnerId) -> Option<&T> {
        (self.owner == owner).then_some(&self.value)
    }

    /// The value to change, when `owner` is the one it was made for.
    pub(crate) fn get_mut(&mut self, owner: OwnerId) -> Option<&mut T> {
        (self.owner == owner).then_some(&mut self.value)
    }
}

/// A table keyed by what the gateway chose (owner ids, route labels and route prefix segments
/// from the config): the per-thread tables, and the route table's prefix tree.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The per-thread tables' hasher: FNV-1a over bytes, one multiplication over integers. Much
/// cheaper than SipHash on the short keys looked up on every request, and safe only because no
/// client chooses these keys: never use it for a key a client can pick (looking up what a client
/// sent among the gateway's keys is fine: it can only miss).
#[derive(Default)]
pub(crate) struct FastHasher(u64);

/// FNV-1a's offset basis and prime (64-bit).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;
/// 2^64 / the golden ratio: spreads consecutive integers over the high bits tables look at.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { FNV_OFFSET } else { self.0 };
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.0 = hash;
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(FIBONACCI);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One of `slots` places for a byte string whose last bytes are already unpredictable (a
/// signature's): those bytes folded and spread, not hashed whole.
pub(crate) fn slot(bytes: &[u8], slots: usize) -> usize {
    let spread = last_eight(bytes).wrapping_mul(FIBONACCI) >> 32;
    usize::try_from(spread).unwrap_or(0) % slots
}

/// A byte string's last eight bytes (fewer when it is shorter) as one integer.
pub(crate) fn last_eight(bytes: &[u8]) -> u64 {
    let tail = &bytes[bytes.len().saturating_sub(8)..];
    tail.iter()
        .fold(0_u64, |word, &byte| (word << 8) | u64::from(byte))
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn an_entry_is_only_its_owners() {
        let (owner, other) = (OwnerId::new(), OwnerId::new());
        assert_ne!(owner, other);
        let mut entry = Stamped::new(owner, 7);
        assert_eq!(entry.get(owner), Some(&7));
        assert_eq!(entry.get(other), None);
        assert!(entry.get_mut(other).is_none());
        *entry.get_mut(owner).unwrap() = 8;
        assert_eq!(entry.get(owner), Some(&8));
    }

    #[test]
    fn the_fast_hasher_tells_short_keys_and_consecutive_ids_apart() {
        let hashing = BuildHasherDefault::<FastHasher>::default();
        let labels = ["/api", "/apj", "login", "/", ""].map(|label| hashing.hash_one(label));
        let ids = (1..=64_u64).map(|id| hashing.hash_one(id) >> 58);
        let mut distinct = labels.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), labels.len());
        // Consecutive ids land in many of the top 6 bits' 64 buckets.
        let mut buckets: Vec<u64> = ids.collect();
        buckets.sort_unstable();
        buckets.dedup();
        assert!(buckets.len() > 32, "{buckets:?}");
    }

    #[test]
    fn slots_stay_in_range_and_follow_the_last_bytes() {
        for length in 0..20 {
            let bytes = vec![0xA5_u8; length];
            assert!(slot(&bytes, 64) < 64);
        }
        assert_eq!(
            slot(b"header.claims.12345678", 64),
            slot(b"other.12345678", 64)
        );
        let spread: std::collections::HashSet<usize> = (0..=255_u8)
            .map(|last| slot(&[1, 2, 3, 4, 5, 6, 7, last], 64))
            .collect();
        assert!(spread.len() > 32, "{spread:?}");
    }
}
