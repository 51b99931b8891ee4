//! The cap on requests in flight to upstreams for the whole gateway (`upstream.max_in_flight`).
//! Each one holds an upstream connection, a socket and buffers from the moment it is sent until its
//! response body is done; without a cap, HTTP/2 clients holding many streams with unfinished bodies
//! could open upstream connections until the process ran out of file descriptors. Past the cap a
//! request is refused at once (503 `upstream_busy`) instead of waiting. The default cap is derived
//! from the open-files limit when the config is read (`config/validate.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight to upstreams of one running gateway, across its workers and reloads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InFlightCount(&'static AtomicUsize);

impl InFlightCount {
    /// A new count, made once per gateway start (a process runs one gateway; the tests run many,
    /// which must not share one) and carried over on reload. Leaked on purpose: with a `'static`
    /// counter each request's place is given back without a reference count of its own.
    pub(crate) fn new() -> Self {
        InFlightCount(Box::leak(Box::new(AtomicUsize::new(0))))
    }

    /// A place, when fewer than `limit` requests are in flight.
    pub(crate) fn try_take(self, limit: usize) -> Option<InFlight> {
        let before = self.0.fetch_add(1, Ordering::Relaxed);
        if before >= limit {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(self.0))
    }
}

/// One request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(&'static AtomicUsize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_refused_past_the_limit_and_given_back_when_dropped() {
        let count = InFlightCount::new();
        let first = count.try_take(2).expect("room for one");
        let second = count.try_take(2).expect("room for two");
        assert!(count.try_take(2).is_none());
        drop(first);
        let third = count.try_take(2).expect("a place given back is free again");
        drop((second, third));
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        assert!(
            InFlightCount::new().try_take(1).is_some(),
            "counts are not shared"
        );
    }
}
