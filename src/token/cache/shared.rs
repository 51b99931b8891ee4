//! The verified-token cache's shared table: tokens by their bytes, in shards read under a lock
//! of their own.
//!
//! Not moka, as every other cache in the gateway: moka records each read for its eviction
//! policy (an access-order list, a frequency sketch, a channel of read events drained later), so
//! with 100,000 users in rotation, where every request is a hit in this table and a miss in the
//! threads' own, a lookup touched ~16 cache lines no other request had just used. Here a hit
//! reads its shard's lock, one bucket and the token's bytes, and writes nothing but the lock and
//! the reference count it hands out: ~20 last-level cache misses per request instead of ~29 in
//! callgrind's simulation, and in paired runs 100,000 users in rotation at 0.86x and 0.91x of one
//! user's rate against moka's 0.79x and 0.89x (bench/RESULTS.md, "The session of 2026-12-08").
//!
//! What that gives up: when a shard is full (more live tokens than [`SharedTable::new`]'s bound)
//! it lets go of expired entries first and then of arbitrary ones, not of the least used. The
//! bound is twice the sessions the memory store keeps, so it fills only when more tokens than
//! logins are in use within five minutes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::Entry;
use crate::per_thread;

/// Shards: enough that two cores rarely take the same lock at once.
const SHARDS: usize = 64;
/// How often a shard that is written to lets go of its expired entries (also done at once
/// whenever it is full).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The share of a full shard's live entries let go at once, so that a full table does not sweep
/// on every insert.
const EVICTED_WHEN_FULL: usize = 8;

/// One shard, on cache lines of its own: its lock is written by every lookup.
#[repr(align(64))]
struct Shard(RwLock<ShardEntries>);

struct ShardEntries {
    by_token: HashMap<Box<[u8]>, Entry, SignatureHashing>,
    next_sweep: Instant,
}

/// Verified tokens by their bytes, at most about `max_entries` of them.
pub(super) struct SharedTable {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl SharedTable {
    /// An empty table that keeps at most `max_entries` (rounded up to a whole number per shard).
    pub(super) fn new(max_entries: usize) -> Self {
        let hashing = SignatureHashing::default();
        let now = Instant::now();
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(RwLock::new(ShardEntries {
                    by_token: HashMap::with_hasher(hashing.clone()),
                    next_sweep: now + SWEEP_EVERY,
                }))
            })
            .collect();
        SharedTable {
            shards,
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// The entry for exactly these bytes, if it is still to be remembered at `now`.
    pub(super) fn get(&self, token: &[u8], now: Instant) -> Option<Entry> {
        let entries = self
            .shard(token)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = entries.by_token.get(token)?;
        (now < entry.forget_at).then(|| entry.clone())
    }

    /// Remembers `entry` for `token`, making room when the shard is full.
    pub(super) fn insert(&self, token: &[u8], entry: Entry, now: Instant) {
        let mut entries = self
            .shard(token)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let full = entries.by_token.len() >= self.per_shard;
        if full || now >= entries.next_sweep {
            entries.by_token.retain(|_, kept| now < kept.forget_at);
            entries.next_sweep = now + SWEEP_EVERY;
        }
        if entries.by_token.len() >= self.per_shard && !entries.by_token.contains_key(token) {
            // Every entry is live: let go of some, in the table's order, which the random hash
            // keys make unrelated to age, user or anything a client chooses.
            let mut evicted = (self.per_shard / EVICTED_WHEN_FULL).max(1);
            entries.by_token.retain(|_, _| {
                let keep = evicted == 0;
                evicted = evicted.saturating_sub(1);
                keep
            });
        }
        entries.by_token.insert(token.into(), entry);
    }

    /// How many entries are kept, expired ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.0.read().map_or(0, |entries| entries.by_token.len()))
            .sum()
    }

    /// `token`'s shard: by its last bytes (a signature's, unpredictable without the key).
    fn shard(&self, token: &[u8]) -> &RwLock<ShardEntries> {
        &self.shards[per_thread::slot(token, SHARDS)].0
    }
}

/// How many of a token's last bytes are hashed: more than enough of any signature's randomness.
const HASHED_BYTES: usize = 32;

/// Hashes a token by its last [`HASHED_BYTES`] bytes, with the process's random keys: a token is
/// a few hundred bytes, and hashing all of them was a tenth of a proxied request's cost. Equality
/// still compares whole tokens. Tokens sharing those bytes cannot crowd one bucket: only
/// verified tokens are stored, and without the key nobody can make many valid tokens with the
/// same signature bytes.
#[derive(Clone, Default)]
struct SignatureHashing(RandomState);

impl BuildHasher for SignatureHashing {
    type Hasher = SignatureHasher;
    fn build_hasher(&self) -> SignatureHasher {
        SignatureHasher(self.0.build_hasher())
    }
}

/// Feeds only the tail of each byte string written to SipHash (a `[u8]` is written as its length,
/// then its bytes).
struct SignatureHasher(std::hash::DefaultHasher);

impl Hasher for SignatureHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_BYTES)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::token::VerifiedToken;

    fn entry(verified: &Arc<VerifiedToken>, forget_at: Instant) -> Entry {
        Entry {
            verified: verified.clone(),
            forget_at,
        }
    }

    fn some_token() -> Arc<VerifiedToken> {
        crate::token::tests::verified_for_tests()
    }

    #[test]
    fn an_entry_is_found_by_its_exact_bytes_until_it_is_to_be_forgotten() {
        let table = SharedTable::new(100);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        table.insert(b"aaa.bbb.ccc", entry(&some_token(), later), now);
        assert!(table.get(b"aaa.bbb.ccc", now).is_some());
        assert!(table.get(b"aaa.bbb.ccd", now).is_none());
        assert!(table.get(b"aaa.bbb.cc", now).is_none());
        assert!(table.get(b"aaa.bbb.ccc", later).is_none());
    }

    #[test]
    fn a_full_table_lets_go_of_expired_entries_first_and_stays_bounded() {
        let table = SharedTable::new(SHARDS * 16);
        let now = Instant::now();
        let verified = some_token();
        let expired_soon = now + Duration::from_secs(1);
        let live = now + Duration::from_secs(300);
        // Every shard filled with entries that will have expired, then with live ones.
        for index in 0..SHARDS * 64 {
            let token = format!("expiring.{index}");
            table.insert(token.as_bytes(), entry(&verified, expired_soon), now);
        }
        assert!(table.len() <= SHARDS * 16, "{}", table.len());
        let after = now + Duration::from_secs(2);
        let live_tokens: Vec<String> = (0..SHARDS * 4).map(|i| format!("live.{i:05}")).collect();
        for token in &live_tokens {
            table.insert(token.as_bytes(), entry(&verified, live), after);
        }
        // A quarter of the bound, all live: none was let go for an expired one.
        let found = live_tokens
            .iter()
            .filter(|token| table.get(token.as_bytes(), after).is_some())
            .count();
        assert_eq!(found, live_tokens.len());
        // Far more live tokens than the bound: the table stays within it, and keeps most.
        for index in 0..SHARDS * 64 {
            let token = format!("many.{index}");
            table.insert(token.as_bytes(), entry(&verified, live), after);
        }
        assert!(table.len() <= SHARDS * 16, "{}", table.len());
        assert!(table.len() >= SHARDS * 12, "{}", table.len());
    }

    #[test]
    fn a_shard_that_is_written_to_sweeps_its_expired_entries() {
        let table = SharedTable::new(SHARDS * 1000);
        let now = Instant::now();
        let verified = some_token();
        for index in 0..200 {
            let token = format!("old.{index}");
            table.insert(
                token.as_bytes(),
                entry(&verified, now + Duration::from_secs(1)),
                now,
            );
        }
        assert_eq!(table.len(), 200);
        // A minute later, a write to each shard sweeps it.
        let later = now + SWEEP_EVERY;
        for index in 0..SHARDS * 8 {
            let token = format!("new.{index}");
            table.insert(
                token.as_bytes(),
                entry(&verified, later + SWEEP_EVERY),
                later,
            );
        }
        assert_eq!(table.len(), SHARDS * 8);
    }
}
