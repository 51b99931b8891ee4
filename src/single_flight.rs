//! Single flight for logins: concurrent logins with the same code share one code2session call
//! and one answer. A mini-program that retries a slow login (or a double-tapped button) gets the
//! same token twice instead of a 40163 "code already used".
//!
//! The shared work runs in a task of its own, so it completes (and its session is stored) even
//! when the client that started it hangs up; the others still get the answer. Only calls in
//! flight are shared: once the answer is out, the code is forgotten and WeChat's single-use rule
//! applies again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use opentelemetry::context::FutureExt as _;
use tokio::sync::watch;

use crate::config::Secret;
use crate::http::error::GatewayError;
use crate::identity::Identity;

/// Logins in flight, by (appid, code): the running state keeps one, the login endpoint uses it.
pub(crate) type LoginFlights = SingleFlight<(String, String), LoginOutcome>;

/// What one login produced, shared by every request that carried its code.
/// The answer's JSON body, who logged in, and the session_key WeChat gave (in memory only: a
/// login that posted encrypted data decrypts it with this key).
pub(crate) type LoginOutcome = Result<(Bytes, Identity, Secret), GatewayError>;

/// Calls in flight by key; each waiter holds a receiver of the one answer.
pub(crate) struct SingleFlight<K, V> {
    in_flight: Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Arc::default(),
        }
    }
}

impl<K, V> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingleFlight")
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `work` for `key`, unless a call for the same key is already in flight: then waits for
    /// that call's answer instead. `None` if the shared work panicked.
    pub(crate) async fn run<F>(&self, key: K, work: F) -> Option<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut answer = {
            let mut in_flight = self.lock();
            match in_flight.get(&key) {
                Some(receiver) => receiver.clone(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    in_flight.insert(key.clone(), receiver.clone());
                    let done = Done {
                        in_flight: self.in_flight.clone(),
                        key,
                    };
                    // The caller's trace goes with the work (its spans, when traced).
                    let trace = opentelemetry::Context::current();
                    let shared = async move {
                        let value = work.await;
                        // Forget the key first: a later login with this code is a new call.
                        drop(done);
                        let _ = sender.send(Some(value));
                    };
                    tokio::spawn(shared.with_context(trace));
                    receiver
                }
            }
        };
        let value = answer.wait_for(Option::is_some).await.ok()?;
        value.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, watch::Receiver<Option<V>>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes the key when the work ends, panics included.
struct Done<K: Hash + Eq, V> {
    in_flight: Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>,
    key: K,
}

impl<K: Hash + Eq, V> Drop for Done<K, V> {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_calls_share_one_run_and_later_calls_run_again() {
        let flights = Arc::new(SingleFlight::<String, usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |flights: Arc<SingleFlight<String, usize>>, runs: Arc<AtomicUsize>| async move {
            flights
                .run("code".to_string(), async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    runs.fetch_add(1, Ordering::SeqCst)
                })
                .await
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| tokio::spawn(call(flights.clone(), runs.clone())))
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Some(0));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(call(flights.clone(), runs.clone()).await, Some(1));
        assert!(flights.lock().is_empty());
    }

    #[tokio::test]
    async fn the_work_finishes_when_its_first_caller_goes_away() {
        let flights = Arc::new(SingleFlight::<u8, u8>::default());
        let (finished, mut finished_rx) = tokio::sync::mpsc::channel(1);
        let first = tokio::spawn({
            let flights = flights.clone();
            async move {
                flights
                    .run(1, async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = finished.send(()).await;
                        7
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        assert_eq!(flights.run(1, async { 8 }).await, Some(7));
        assert!(finished_rx.recv().await.is_some());
    }
}
