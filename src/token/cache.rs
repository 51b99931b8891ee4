//! Tokens already verified, remembered until shortly before they could stop being valid, so a
//! client's repeat requests skip the signature check: with RS256, ES256 or EdDSA that check costs
//! far more than the rest of a request.
//!
//! Safe by construction: the key is the whole token (a changed byte is another token, verified in
//! full); an entry never outlives the token's `exp` nor [`MAX_AGE`]; only successes are kept; the
//! cache belongs to one set of keys, so a reload that removes a key starts from an empty cache;
//! and revocation (logout) is checked on every request after this, cached or not (`auth.rs`).
//!
//! The shared cache is a table of its own (`cache/shared.rs`, which says why not moka).
//!
//! In front of the shared cache, each thread keeps the tokens it sees again and again in a small
//! table of its own ([`RECENT_SLOTS`], one per hash of the last bytes), each entry its own copy
//! of the verified token: a repeat request then costs one comparison, and the threads never
//! touch the same memory (a shared entry's reference count bounced between the cores). The same
//! rules hold there: whole-token equality, the same deadline, and only this cache's entries. A
//! token takes a slot only when it comes back to that slot before any other token does: with
//! many users in rotation, copying each one into a table it would leave at once cost more than
//! the shared cache's answer (+13 % per request with 1,000 users; bench/RESULTS.md, "Scale").

mod shared;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::VerifiedToken;
use crate::per_thread::{self, OwnerId, Stamped};

/// Most tokens remembered. Twice the sessions the memory store keeps by default: with 100,000
/// users in rotation a cache of 100,000 was full and let go of tokens still in use, 0.78x of one
/// user's rate; 200,000 keep them all, 0.91x (10,000 entries: 0.64x; bench/RESULTS.md,
/// "Scale"). An entry answers for five minutes at most; one past its time is dropped when its
/// shard is next written to (at most a minute later) or fills.
const MAX_ENTRIES: usize = 200_000;
/// Longest an entry is kept, whatever the token's `exp`.
const MAX_AGE: Duration = Duration::from_secs(300);

/// An entry and when it must be forgotten.
#[derive(Clone)]
struct Entry {
    verified: Arc<VerifiedToken>,
    forget_at: Instant,
}

/// Entries in each thread's table of recent verifications.
const RECENT_SLOTS: usize = 64;

/// One verification in a thread's table, stamped with the [`VerifiedCache`] it belongs to: a
/// reload's new keys never see an old entry.
struct Recent {
    token: Box<[u8]>,
    /// This thread's own copy.
    verified: Arc<VerifiedToken>,
    forget_at: Instant,
}

/// A slot of a thread's table: the token kept there, and the last other token that asked for it
/// (its last bytes), which takes the slot if it asks again first.
#[derive(Default)]
struct Slot {
    kept: Option<Stamped<Recent>>,
    candidate: u64,
}

thread_local! {
    /// This thread's recent verifications, by [`recent_slot`].
    static RECENT: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// A token's slot in a thread's table: by its last bytes (signature, unpredictable without the
/// key). A collision only makes two tokens take turns.
pub(super) fn recent_slot(token: &[u8]) -> usize {
    per_thread::slot(token, RECENT_SLOTS)
}

/// Verified tokens by their bytes (looked up by the bytes of the request's header, before any
/// check of its text: only verified tokens are in it).
pub(super) struct VerifiedCache {
    id: OwnerId,
    entries: shared::SharedTable,
}

impl VerifiedCache {
    pub(super) fn new() -> Self {
        VerifiedCache {
            id: OwnerId::new(),
            entries: shared::SharedTable::new(MAX_ENTRIES),
        }
    }

    /// The remembered verification of `token`, if any: from this thread's table, else from the
    /// shared cache (and then offered to the table). Looked up by the token's bytes: a token found
    /// here passed every check of its text when it was verified.
    pub(super) fn get(&self, token: &[u8]) -> Option<Arc<VerifiedToken>> {
        let now = Instant::now();
        let recent = self.recent_at(token, now);
        if recent.is_some() {
            return recent;
        }
        let entry = self.entries.get(token, now)?;
        self.offer_recent(token, &entry);
        Some(entry.verified)
    }

    /// The remembered verification of `token` in this thread's table, if any.
    #[cfg(test)]
    pub(super) fn get_recent(&self, token: &[u8]) -> Option<Arc<VerifiedToken>> {
        self.recent_at(token, Instant::now())
    }

    /// The verification of `token` in this thread's table, if it is still good at `now`. Looked
    /// up by the token's bytes: a token found here passed every check of its text when it was
    /// verified.
    fn recent_at(&self, token: &[u8], now: Instant) -> Option<Arc<VerifiedToken>> {
        RECENT.with_borrow(|table| {
            let recent = table.get(recent_slot(token))?.kept.as_ref()?.get(self.id)?;
            let fresh = now < recent.forget_at;
            (fresh && *recent.token == *token).then(|| recent.verified.clone())
        })
    }

    /// Remembers a successful verification until the token's `exp` (at most [`MAX_AGE`]); a token
    /// already at or past its `exp` (accepted within the leeway) is not remembered.
    pub(super) fn remember(&self, token: &str, verified: &Arc<VerifiedToken>) {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let left = Duration::from_secs(verified.exp.saturating_sub(unix_now));
        if left.is_zero() {
            return;
        }
        let now = Instant::now();
        let entry = Entry {
            verified: verified.clone(),
            forget_at: now + left.min(MAX_AGE),
        };
        self.offer_recent(token.as_bytes(), &entry);
        self.entries.insert(token.as_bytes(), entry, now);
    }

    /// Puts a copy of `entry` in this thread's table when `token` asked for its slot last time
    /// too; otherwise only notes that it asked.
    fn offer_recent(&self, token: &[u8], entry: &Entry) {
        // The token's last bytes (its signature's) tell the tokens asking apart: a token mistaken
        // for another only takes a slot sooner.
        let mark = per_thread::last_eight(token);
        let index = recent_slot(token);
        let taken = RECENT.with_borrow_mut(|table| {
            if table.is_empty() {
                table.resize_with(RECENT_SLOTS, Slot::default);
            }
            let slot = &mut table[index];
            let again = slot.candidate == mark;
            slot.candidate = if again { 0 } else { mark };
            again
        });
        if !taken {
            return;
        }
        // Made outside the borrow: the old entry's drop and the copy's allocations run no code
        // that could reach the table, but nothing is assumed.
        let recent = Recent {
            token: token.into(),
            verified: Arc::new(entry.verified.unshared()),
            forget_at: entry.forget_at,
        };
        let old = RECENT
            .with_borrow_mut(|table| table[index].kept.replace(Stamped::new(self.id, recent)));
        drop(old);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
