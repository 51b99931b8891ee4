//! What a verified token remembers of the revocation checks: the revocation count at which it was
//! last found not revoked, so its repeat requests skip the deny-list lookup until a logout happens.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The revocation count at which a verified (and cached) token was last found not revoked, so
/// its repeat requests skip the deny-list lookup until the next revocation.
#[derive(Default)]
pub(crate) struct NotRevokedMemo(AtomicU64);

impl NotRevokedMemo {
    /// Whether the token was found not revoked at `count`.
    pub(crate) fn holds_at(&self, count: u64) -> bool {
        // Stored plus one: 0 means never checked.
        self.0.load(Ordering::Relaxed) == count.wrapping_add(1)
    }

    /// Records that the token was found not revoked by a lookup that started at `count`.
    pub(crate) fn record(&self, count: u64) {
        self.0.store(count.wrapping_add(1), Ordering::Relaxed);
    }
}

impl Clone for NotRevokedMemo {
    fn clone(&self) -> Self {
        NotRevokedMemo(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// A memo is bookkeeping, not part of what a token says.
impl PartialEq for NotRevokedMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for NotRevokedMemo {}

impl fmt::Debug for NotRevokedMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotRevokedMemo")
    }
}
