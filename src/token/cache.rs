//! Tokens already verified, remembered until shortly before they could stop being valid, so a
//! client's repeat requests skip the signature check: with RS256, ES256 or EdDSA that check costs
//! far more than the rest of a request.
//!
//! Safe by construction: the key is the whole token (a changed byte is another token, verified in
//! full); an entry never outlives the token's `exp` nor [`MAX_AGE`]; only successes are kept; the
//! cache belongs to one set of keys, so a reload that removes a key starts from an empty cache;
//! and revocation (logout) is checked on every request after this, cached or not (`auth.rs`).
//!
//! Lookups hash only the token's last bytes (part of its signature): a token is a few hundred
//! bytes, and hashing all of them was a tenth of a proxied request's cost. Equality still compares
//! whole tokens. Tokens sharing those bytes cannot crowd one hash bucket: only verified tokens are
//! stored, and without the key nobody can make many valid tokens with the same signature bytes.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::VerifiedToken;

/// Most tokens remembered; the least recently used go first.
const MAX_ENTRIES: u64 = 10_000;
/// Longest an entry is kept, whatever the token's `exp`.
const MAX_AGE: Duration = Duration::from_secs(300);

/// An entry and when it must be forgotten.
#[derive(Clone)]
struct Entry {
    verified: Arc<VerifiedToken>,
    forget_after: Duration,
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.forget_after)
    }
}

/// How many of a token's last bytes are hashed: more than enough of any signature's randomness.
const HASHED_BYTES: usize = 32;

/// Hashes a token by its last [`HASHED_BYTES`] bytes, with the process's random keys.
#[derive(Clone, Default)]
struct SignatureHashing(RandomState);

impl BuildHasher for SignatureHashing {
    type Hasher = SignatureHasher;
    fn build_hasher(&self) -> SignatureHasher {
        SignatureHasher(self.0.build_hasher())
    }
}

/// Feeds only the tail of each byte string written (a `str` is written as one) to SipHash.
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

/// Verified tokens by their text.
pub(super) struct VerifiedCache {
    entries: moka::sync::Cache<String, Entry, SignatureHashing>,
}

impl VerifiedCache {
    pub(super) fn new() -> Self {
        VerifiedCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(EntryExpiry)
                .build_with_hasher(SignatureHashing::default()),
        }
    }

    /// The remembered verification of `token`, if any.
    pub(super) fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        self.entries.get(token).map(|entry| entry.verified)
    }

    /// Remembers a successful verification until the token's `exp` (at most [`MAX_AGE`]); a token
    /// already at or past its `exp` (accepted within the leeway) is not remembered.
    pub(super) fn remember(&self, token: &str, verified: &Arc<VerifiedToken>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let left = Duration::from_secs(verified.exp.saturating_sub(now));
        if left.is_zero() {
            return;
        }
        let entry = Entry {
            verified: verified.clone(),
            forget_after: left.min(MAX_AGE),
        };
        self.entries.insert(token.to_string(), entry);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
