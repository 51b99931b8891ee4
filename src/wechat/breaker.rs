//! The circuit breaker in front of the WeChat API. After `threshold` calls in a row fail (no
//! answer, errcode -1, an answer that is not JSON), it opens: calls are refused at once (503 with
//! Retry-After) instead of each waiting for WeChat's timeout. Once `open_for` has passed, one call
//! goes through as a probe; its success closes the circuit, its failure opens it again.
//!
//! Answers that are WeChat's verdict on the request (40029, 40163, 45011...) prove WeChat is up and
//! count as successes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the circuit stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are refused until `until`.
    Open { until: Instant },
    /// One probe is in flight; everyone else is refused until it reports.
    Probing,
}

/// The breaker's settings and state.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

/// Permission to make one call; report its outcome with [`Permit::record`]. A probe dropped
/// without a report (its caller went away) opens the circuit again, so a lost probe cannot leave
/// it half-open for ever; any other unreported call is simply not counted.
#[must_use]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    reported: bool,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Lets a call through, or says how long until the next probe.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now >= until => *state = State::Probing,
            State::Open { until } => return Err(until - now),
            // The probe's own timeout bounds this; clients retry in a second.
            State::Probing => return Err(Duration::from_secs(1)),
        }
        Ok(Permit {
            breaker: self,
            reported: false,
        })
    }

    /// Whether calls are being refused or probed (for the metrics gauge).
    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    fn record(&self, healthy: bool) {
        let mut state = self.lock();
        *state = match (*state, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (State::Closed { .. } | State::Probing, false) => {
                tracing::warn!(
                    open_secs = self.open_for.as_secs_f64(),
                    "WeChat keeps failing: circuit open, logins answered 503 until a probe succeeds"
                );
                State::Open {
                    until: Instant::now() + self.open_for,
                }
            }
            // A call admitted before the circuit opened failed too: nothing new.
            (open @ State::Open { .. }, false) => open,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Permit<'_> {
    /// Reports whether WeChat answered properly.
    pub(crate) fn record(mut self, healthy: bool) {
        self.reported = true;
        self.breaker.record(healthy);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.reported {
            return;
        }
        let mut state = self.breaker.lock();
        if *state == State::Probing {
            *state = State::Open {
                until: Instant::now() + self.breaker.open_for,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_one_probe_closes_it() {
        let breaker = Breaker::new(3, Duration::from_millis(50));
        breaker.admit().unwrap().record(false);
        breaker.admit().unwrap().record(false);
        // A success in between resets the count.
        breaker.admit().unwrap().record(true);
        for _ in 0..3 {
            breaker.admit().unwrap().record(false);
        }
        assert!(breaker.is_open());
        let wait = breaker.admit().err().unwrap();
        assert!(wait <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        let probe = breaker.admit().unwrap();
        // Only the probe goes through meanwhile.
        assert!(breaker.admit().is_err());
        probe.record(true);
        assert!(!breaker.is_open());
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn a_failed_or_abandoned_probe_opens_it_again() {
        let breaker = Breaker::new(1, Duration::from_millis(20));
        breaker.admit().unwrap().record(false);
        std::thread::sleep(Duration::from_millis(30));
        breaker.admit().unwrap().record(false);
        assert!(breaker.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        drop(breaker.admit().unwrap());
        assert!(breaker.admit().is_err());
    }
}
