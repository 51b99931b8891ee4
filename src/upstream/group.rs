//! A route's instances (`upstream = [...]`): which one a request goes to (`balance`), and which
//! are healthy (failures in a row take an instance out for `retry_after_ms`; active checks, in
//! `health.rs`, take it out until a check passes). Sending a request that could not reach its
//! instance to another one is the proxy's (`proxy/exchange.rs`).
//!
//! A route with one instance is a group of one: it is never taken out (there is nowhere else to
//! go, as nginx does with a one-server upstream), and its requests take no shared counter.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::Response;
use http_body_util::BodyExt;

use super::Upstream;
use crate::config::{Balance, UpstreamHealth};
use crate::http::body::GuardedBody;
use crate::http::error::Body;
use crate::metrics::InstanceMetrics;

/// `down_until` of an instance an active check found unhealthy: out until a check passes.
const UNTIL_A_CHECK_PASSES: u64 = u64::MAX;

/// How an exchange with an instance ended, for its health and its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No connection could be made (refused, connect timeout, TLS failure).
    ConnectFailed,
    /// The connection failed during the exchange (the instance closed it, reset it).
    Failed,
    /// No response head within the route's timeout.
    TimedOut,
}

/// One instance of a group: how to reach it, and its health.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) upstream: Upstream,
    /// Its host and port, for logs.
    pub(crate) label: Box<str>,
    /// The hash `openid_hash` mixes with a user's (of the authority: the same on every replica
    /// and whatever the order of the list).
    key: u64,
    /// Failures in a row.
    failures: AtomicU32,
    /// 0 while it takes requests; otherwise the group's milliseconds until which it is out, or
    /// [`UNTIL_A_CHECK_PASSES`].
    down_until: AtomicU64,
    /// Requests sent to it whose response has not ended (`least_requests` only).
    in_flight: AtomicUsize,
    metrics: InstanceMetrics,
}

/// A route's instances and the state of each; shared by the route and its active checks.
#[derive(Debug)]
pub(crate) struct UpstreamGroup {
    instances: Box<[Instance]>,
    balance: Balance,
    pub(crate) health: UpstreamHealth,
    /// Where round robin (and least_requests' tie-break) starts next.
    next: AtomicUsize,
    /// The clock `down_until` counts from.
    epoch: Instant,
    /// The route's prefix, for logs.
    route: Box<str>,
}

impl Instance {
    pub(crate) fn new(upstream: Upstream, label: &str, metrics: InstanceMetrics) -> Self {
        metrics.healthy.set(1);
        Instance {
            upstream,
            key: fnv1a(label.to_ascii_lowercase().as_bytes()),
            label: label.into(),
            failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Whether it takes requests at `now` (read once, when first needed).
    fn available(&self, now: &mut Option<u64>, epoch: Instant) -> bool {
        match self.down_until.load(Ordering::Relaxed) {
            0 => true,
            UNTIL_A_CHECK_PASSES => false,
            until => *now.get_or_insert_with(|| millis_since(epoch)) >= until,
        }
    }
}

impl UpstreamGroup {
    pub(crate) fn new(
        route: &str,
        instances: Vec<Instance>,
        balance: Balance,
        health: UpstreamHealth,
    ) -> Self {
        UpstreamGroup {
            instances: instances.into_boxed_slice(),
            balance,
            health,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            route: route.into(),
        }
    }

    /// The instances, in the order configured.
    pub(crate) fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// The instance a request goes to, other than `except`; `None` when none takes requests.
    pub(crate) fn pick(&self, openid: Option<&str>, except: Option<usize>) -> Option<usize> {
        let count = self.instances.len();
        if count == 1 {
            return (except != Some(0)).then_some(0);
        }
        let mut now = None;
        let mut up = |index: &usize| {
            Some(*index) != except && self.instances[*index].available(&mut now, self.epoch)
        };
        match (self.balance, openid) {
            (Balance::OpenidHash, Some(openid)) => {
                // Rendezvous hashing: a user's instance changes only when that instance is out.
                let user = fnv1a(openid.as_bytes());
                (0..count)
                    .filter(up)
                    .max_by_key(|&index| mix(user ^ self.instances[index].key))
            }
            (Balance::LeastRequests, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|offset| (start + offset) % count)
                    .filter(up)
                    .min_by_key(|&index| self.instances[index].in_flight.load(Ordering::Relaxed))
            }
            _ => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|offset| (start + offset) % count)
                    .find(|index| up(index))
            }
        }
    }

    /// Records that instance `index` answered: its failures end, and it is back if it was out.
    pub(crate) fn answered(&self, index: usize) {
        let instance = &self.instances[index];
        // Read before written: a healthy instance's state is only read, on every request.
        if instance.failures.load(Ordering::Relaxed) != 0 {
            instance.failures.store(0, Ordering::Relaxed);
        }
        if instance.down_until.load(Ordering::Relaxed) != 0 {
            self.bring_back(index, "answered");
        }
        if self.instances.len() > 1 {
            instance.metrics.answered.inc();
        }
    }

    /// Records a failed exchange with instance `index`; `unhealthy_after` in a row take it out
    /// for `retry_after_ms`.
    pub(crate) fn failed(&self, index: usize, outcome: Outcome) {
        let instance = &self.instances[index];
        match outcome {
            Outcome::ConnectFailed => instance.metrics.connect_failed.inc(),
            Outcome::Failed => instance.metrics.failed.inc(),
            Outcome::TimedOut => instance.metrics.timed_out.inc(),
        }
        let failures = instance
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures < self.health.unhealthy_after {
            return;
        }
        let retry_after = u64::try_from(self.health.retry_after.as_millis()).unwrap_or(u64::MAX);
        let until = millis_since(self.epoch).saturating_add(retry_after);
        let previous = instance.down_until.load(Ordering::Relaxed);
        if previous != UNTIL_A_CHECK_PASSES {
            instance.down_until.store(until, Ordering::Relaxed);
        }
        if previous == 0 {
            instance.metrics.healthy.set(0);
            tracing::warn!(
                route = %self.route,
                instance = %instance.label,
                failures,
                ?outcome,
                retry_after_ms = retry_after,
                "upstream instance taken out after failures in a row"
            );
        }
    }

    /// Records an active check's result for instance `index`.
    pub(crate) fn checked(&self, index: usize, result: Result<(), String>) {
        let instance = &self.instances[index];
        match result {
            Ok(()) => {
                instance.failures.store(0, Ordering::Relaxed);
                if instance.down_until.load(Ordering::Relaxed) != 0 {
                    self.bring_back(index, "health check passed");
                }
            }
            Err(reason) => {
                let previous = instance
                    .down_until
                    .swap(UNTIL_A_CHECK_PASSES, Ordering::Relaxed);
                instance.metrics.healthy.set(0);
                if previous != UNTIL_A_CHECK_PASSES {
                    tracing::warn!(
                        route = %self.route,
                        instance = %instance.label,
                        %reason,
                        "upstream instance taken out: health check failed"
                    );
                }
            }
        }
    }

    fn bring_back(&self, index: usize, why: &'static str) {
        let instance = &self.instances[index];
        if instance.down_until.swap(0, Ordering::Relaxed) != 0 {
            instance.metrics.healthy.set(1);
            tracing::info!(
                route = %self.route,
                instance = %instance.label,
                why,
                "upstream instance back in rotation"
            );
        }
    }
}

impl UpstreamGroup {
    /// The place of a request to instance `index` among its requests in flight, for
    /// `least_requests` (`None` for the other ways to balance).
    pub(crate) fn load(group: &Arc<UpstreamGroup>, index: usize) -> Option<Load> {
        (group.balance == Balance::LeastRequests).then(|| Load::new(group, index))
    }

    /// Records the answer of instance `index`; the response body holds `load` (the request's
    /// place among the instance's requests in flight) until it ends.
    pub(crate) fn answered_with(
        &self,
        index: usize,
        response: Response<Body>,
        load: Option<Load>,
    ) -> Response<Body> {
        self.answered(index);
        match load {
            Some(load) => response.map(|body| GuardedBody::new(body, load).boxed_unsync()),
            None => response,
        }
    }
}

/// A request's place in its instance's `in_flight` (`least_requests`), given back when the
/// response body ends or the exchange fails.
pub(crate) struct Load {
    group: Arc<UpstreamGroup>,
    index: usize,
}

impl Load {
    fn new(group: &Arc<UpstreamGroup>, index: usize) -> Self {
        group.instances[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Load {
            group: group.clone(),
            index,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.group.instances[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Milliseconds since `epoch`, at least 1 (0 means "up").
fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// FNV-1a: a stable hash (the same in every replica and release), for `openid_hash`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A finalizer (splitmix64's) spreading a combined user and instance hash over all bits.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests;
