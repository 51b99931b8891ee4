//! The in-memory deny-list of revoked logins: bounded, but never by eviction. An entry leaves only
//! once its own time to live is over (the revoked token could no longer be used anyway); when the
//! list is full of live entries, a new revocation is refused (the logout answers 503) rather than
//! one already promised being dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// Revoked ids (`sid:...`, `jti:...`) with the moment each may be forgotten.
pub(crate) struct DenyList {
    capacity: usize,
    entries: Mutex<HashMap<String, Instant>>,
}

/// What a revocation changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// At least one id was not revoked before.
    New,
    /// Every id was already revoked (a repeated logout): nothing new was stored.
    Already,
}

impl DenyList {
    /// An empty list holding at most `capacity` live entries.
    pub(crate) fn new(capacity: usize) -> Self {
        DenyList {
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Revokes `ids` for `ttl` (an id revoked already keeps the later of its two ends). All or
    /// nothing: when the new ids do not fit beside the live entries, none is recorded.
    pub(crate) fn insert(&self, ids: &[String], ttl: Duration) -> Result<Recorded, StoreError> {
        let now = Instant::now();
        let until = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        let mut entries = self.lock();
        let new = ids.iter().filter(|id| !entries.contains_key(*id)).count();
        if entries.len() + new > self.capacity {
            entries.retain(|_, end| *end > now);
        }
        // Expired ids still listed are new again: count them after the purge.
        let new = ids.iter().filter(|id| !entries.contains_key(*id)).count();
        if entries.len() + new > self.capacity {
            return Err(StoreError(
                "the revocation deny-list is full (session.max_entries x 4 live logouts)".into(),
            ));
        }
        let mut recorded = Recorded::Already;
        for id in ids {
            match entries.get_mut(id) {
                Some(end) if *end > now => *end = (*end).max(until),
                _ => {
                    entries.insert(id.clone(), until);
                    recorded = Recorded::New;
                }
            }
        }
        Ok(recorded)
    }

    /// Whether `id` is revoked now.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|end| *end > Instant::now())
    }

    /// Whether another revocation could be recorded now (expired entries do not count).
    pub(crate) fn has_room(&self) -> bool {
        let mut entries = self.lock();
        if entries.len() < self.capacity {
            return true;
        }
        let now = Instant::now();
        entries.retain(|_, end| *end > now);
        entries.len() < self.capacity
    }

    /// Live and expired-but-not-yet-purged entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_full_list_refuses_instead_of_dropping() {
        let list = DenyList::new(2);
        let hour = Duration::from_secs(3600);
        assert_eq!(list.insert(&ids(&["sid:a"]), hour).unwrap(), Recorded::New);
        assert_eq!(list.insert(&ids(&["sid:b"]), hour).unwrap(), Recorded::New);
        assert!(!list.has_room());
        assert!(list.insert(&ids(&["sid:c"]), hour).is_err());
        assert!(list.contains("sid:a") && list.contains("sid:b"));
        assert!(!list.contains("sid:c"));
        // a repeated revocation needs no room and stores nothing new
        assert_eq!(
            list.insert(&ids(&["sid:a"]), hour).unwrap(),
            Recorded::Already
        );
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn expired_entries_make_room_and_are_forgotten() {
        let list = DenyList::new(1);
        list.insert(&ids(&["sid:a"]), Duration::from_millis(20))
            .unwrap();
        assert!(list.contains("sid:a"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!list.contains("sid:a"));
        assert!(list.has_room());
        assert_eq!(
            list.insert(&ids(&["sid:b"]), Duration::from_secs(60))
                .unwrap(),
            Recorded::New
        );
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn a_revocation_keeps_its_later_end() {
        let list = DenyList::new(4);
        list.insert(&ids(&["sid:a"]), Duration::from_secs(60))
            .unwrap();
        list.insert(&ids(&["sid:a"]), Duration::from_millis(1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            list.contains("sid:a"),
            "a shorter repeat does not shorten it"
        );
    }

    #[test]
    fn ids_that_do_not_all_fit_are_not_recorded_at_all() {
        let list = DenyList::new(2);
        list.insert(&ids(&["sid:a"]), Duration::from_secs(60))
            .unwrap();
        assert!(list
            .insert(&ids(&["sid:b", "jti:c"]), Duration::from_secs(60))
            .is_err());
        assert!(!list.contains("sid:b"));
    }
}
