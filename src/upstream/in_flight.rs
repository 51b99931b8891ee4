//! The process-wide cap on requests in flight to upstreams (`upstream.max_in_flight`). Each one
//! holds an upstream connection, a socket and buffers from the moment it is sent until its response
//! body is done; without a cap, HTTP/2 clients holding many streams with unfinished bodies could
//! open upstream connections until the process ran out of file descriptors. Past the cap a request
//! is refused at once (503 `upstream_busy`) instead of waiting.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight to upstreams, across every worker and config.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(());

impl InFlight {
    /// A place, when fewer than `limit` requests are in flight.
    pub(crate) fn try_take(limit: usize) -> Option<InFlight> {
        let before = IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        if before >= limit {
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The default cap: half the process's open-files limit (each request in flight takes one
/// descriptor upstream; the rest is for client connections, pooled connections and files), at
/// least 64.
pub(crate) fn default_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is handed, which lives on this stack frame.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let open_files = if read == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (open_files / 2).max(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_refused_past_the_limit_and_given_back_when_dropped() {
        // Other tests in this binary may hold places: measured relative to what is taken now.
        let base = IN_FLIGHT.load(Ordering::Relaxed);
        let limit = base + 2;
        let first = InFlight::try_take(limit).expect("room for one");
        let second = InFlight::try_take(limit).expect("room for two");
        assert!(InFlight::try_take(limit).is_none());
        drop(first);
        let third = InFlight::try_take(limit).expect("a place given back is free again");
        drop((second, third));
        assert!(default_limit() >= 64);
    }
}
