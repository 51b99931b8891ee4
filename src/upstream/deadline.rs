//! The upstream timeout (`routes[].timeout_ms`) without a timer per request.
//!
//! A tokio timer costs its registration in the runtime's timer wheel at its first poll and its
//! removal when dropped, each under the wheel's lock: a large share of a proxied request's cost
//! (bench/RESULTS.md), for a timer that almost never fires. So each client connection keeps one timer
//! and lends it to its requests, one at a time. The timer stays set for the deadline of the
//! request that first needed it; when it fires before the deadline of the exchange in flight (the
//! connection was busy since), it is moved to that deadline, and when an exchange is due before it
//! (a route with a shorter timeout), it is moved back. On a keep-alive connection that means one
//! timer operation per timeout period instead of two per request. A request that finds the timer
//! lent out (concurrent HTTP/2 streams) times itself with a timer of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// One client connection's timer for the upstream deadlines of its requests.
#[derive(Debug, Default)]
pub(crate) struct DeadlineTimer {
    /// The timer while no request has it; `None` before the first proxied request.
    idle: Mutex<Option<Pin<Box<Sleep>>>>,
}

/// The exchange was still going at its deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Runs `exchange` to its end or until `deadline` passes (`None`: never), timed by `timer` when
/// no other request of the connection has it.
pub(crate) fn within<F: Future>(
    timer: &DeadlineTimer,
    deadline: Option<Instant>,
    exchange: F,
) -> Within<'_, F> {
    Within {
        exchange,
        deadline,
        lent: Lent { timer, sleep: None },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`]: a struct rather than an `async` block, which would keep the
    /// exchange twice (as captured, and pinned). The exchange is most of the proxied request's
    /// future, boxed per request, which must stay within what glibc serves from its per-thread
    /// cache (`server::dispatch::GLIBC_TCACHE_MAX_BYTES`, guarded by a release-profile test; the
    /// sizes measured are in bench/RESULTS.md).
    pub(crate) struct Within<'a, F> {
        #[pin]
        exchange: F,
        deadline: Option<Instant>,
        lent: Lent<'a>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.exchange.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match *this.deadline {
            Some(deadline) => this.lent.poll_due(deadline, cx).map(|()| Err(TimedOut)),
            None => Poll::Pending,
        }
    }
}

/// The timer a request is using, from its first wait on the deadline to its end: the
/// connection's, or one of its own when the connection had none to lend.
struct Lent<'a> {
    timer: &'a DeadlineTimer,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Lent<'_> {
    /// Ready once `deadline` has passed; until then, the task is woken by the time it does.
    fn poll_due(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = match &mut self.sleep {
            Some(sleep) => sleep,
            None => {
                let borrowed = self
                    .timer
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                self.sleep.insert(borrowed.unwrap_or_else(|| {
                    // The first request of the connection, or the timer is lent out already.
                    Box::pin(tokio::time::sleep_until(deadline))
                }))
            }
        };
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // Set for an earlier request's deadline: wait on until this one's.
            sleep.as_mut().reset(deadline);
        }
    }
}

impl Drop for Lent<'_> {
    /// Gives the timer to the connection: its own back, or the one made when it had none to lend
    /// (the first request, or one concurrent with another: the slot keeps whichever comes last).
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            *self
                .timer
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An exchange that takes `delay`, on the paused test clock.
    async fn exchange(delay: Duration) -> &'static str {
        tokio::time::sleep(delay).await;
        "answered"
    }

    fn after(millis: u64) -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(millis))
    }

    #[tokio::test(start_paused = true)]
    async fn an_exchange_before_its_deadline_is_answered() {
        let timer = DeadlineTimer::default();
        let answer = within(&timer, after(100), exchange(Duration::from_millis(50))).await;
        assert_eq!(answer, Ok("answered"));
        assert!(
            timer.idle.lock().unwrap().is_some(),
            "the timer was given back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exchange_past_its_deadline_times_out_at_the_deadline() {
        let timer = DeadlineTimer::default();
        let started = Instant::now();
        let answer = within(&timer, after(100), exchange(Duration::from_secs(5))).await;
        assert_eq!(answer, Err(TimedOut));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_waits_for_the_exchange() {
        let timer = DeadlineTimer::default();
        let answer = within(&timer, None, exchange(Duration::from_secs(3600))).await;
        assert_eq!(answer, Ok("answered"));
    }

    /// The timer set for the first request fires during a later one, which is not due yet: that
    /// one is timed out at its own deadline, not the first's.
    #[tokio::test(start_paused = true)]
    async fn a_timer_set_for_an_earlier_request_times_a_later_one_by_its_own_deadline() {
        let timer = DeadlineTimer::default();
        let quick = within(&timer, after(1_000), exchange(Duration::from_millis(10))).await;
        assert_eq!(quick, Ok("answered"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let slow = within(&timer, after(1_000), exchange(Duration::from_secs(60))).await;
        assert_eq!(slow, Err(TimedOut));
        assert_eq!(started.elapsed(), Duration::from_millis(1_000));
        // And once more after the timer fired while no request had it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let later = within(&timer, after(300), exchange(Duration::from_millis(200))).await;
        assert_eq!(later, Ok("answered"));
    }

    /// A shorter timeout after a longer one on the same connection moves the timer back.
    #[tokio::test(start_paused = true)]
    async fn a_shorter_deadline_after_a_longer_one_is_kept() {
        let timer = DeadlineTimer::default();
        let long = within(&timer, after(60_000), exchange(Duration::from_millis(10))).await;
        assert_eq!(long, Ok("answered"));
        let started = Instant::now();
        let short = within(&timer, after(200), exchange(Duration::from_secs(30))).await;
        assert_eq!(short, Err(TimedOut));
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    /// Concurrent requests (HTTP/2 streams) each keep their own deadline.
    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_each_keep_their_deadline() {
        let timer = DeadlineTimer::default();
        let started = Instant::now();
        let (first, second, third) = tokio::join!(
            within(&timer, after(300), exchange(Duration::from_secs(10))),
            within(&timer, after(100), exchange(Duration::from_secs(10))),
            within(&timer, after(500), exchange(Duration::from_millis(400))),
        );
        assert_eq!(
            (first, second, third),
            (Err(TimedOut), Err(TimedOut), Ok("answered"))
        );
        assert_eq!(started.elapsed(), Duration::from_millis(400));
        let alone = within(&timer, after(50), exchange(Duration::from_secs(1))).await;
        assert_eq!(alone, Err(TimedOut));
    }
}
