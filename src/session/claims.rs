//! Names claimed for a while (a delivered message push, so its redeliveries are not forwarded
//! again), for the stores of a single gateway: in memory, lost on restart. Redis keeps them
//! fleet-wide instead (`SET NX PX`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many live claims; past it, claims are granted without being kept (a redelivery
/// may then be forwarded twice, never a message lost).
const MAX_CLAIMS: usize = 100_000;

/// The claimed names and until when each holds.
#[derive(Default)]
pub(super) struct LocalClaims {
    held: Mutex<HashMap<String, Instant>>,
}

impl LocalClaims {
    /// Claims `name` for `ttl`: true when nobody held it.
    pub(super) fn claim(&self, name: &str, ttl: Duration) -> bool {
        let Ok(mut held) = self.held.lock() else {
            return true;
        };
        let now = Instant::now();
        if held.get(name).is_some_and(|until| now < *until) {
            return false;
        }
        if held.len() >= MAX_CLAIMS {
            held.retain(|_, until| now < *until);
        }
        if held.len() < MAX_CLAIMS {
            held.insert(name.to_string(), now + ttl);
        }
        true
    }

    /// Gives `name` up, so the next claim of it succeeds.
    pub(super) fn release(&self, name: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(name);
        }
    }

    /// How many claims are kept (for Debug output).
    pub(super) fn len(&self) -> usize {
        self.held.lock().map_or(0, |held| held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_released_or_expired() {
        let claims = LocalClaims::default();
        assert!(claims.claim("a", Duration::from_secs(60)));
        assert!(!claims.claim("a", Duration::from_secs(60)));
        claims.release("a");
        assert!(claims.claim("a", Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(claims.claim("a", Duration::from_secs(60)));
        assert_eq!(claims.len(), 1);
    }
}
