//! A steady load for shutdown and upstream-group tests: workers sending back-to-back GETs over
//! pooled keep-alive connections until told to stop, counting what was served and what failed.
//! Each request holds the load's gate, so a test can act between two requests (`pause`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{RwLock, RwLockWriteGuard};
use tokio::task::JoinHandle;

/// Workers hitting `{base}/{worker}`.
pub struct SteadyLoad {
    gate: Arc<RwLock<()>>,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl SteadyLoad {
    /// Starts `workers` workers; a request counts as served when it gets 200 and its whole body.
    pub fn start(base: &str, workers: usize) -> SteadyLoad {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let gate = Arc::new(RwLock::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|worker| {
                let (client, gate, stop, served, failures) = (
                    client.clone(),
                    gate.clone(),
                    stop.clone(),
                    served.clone(),
                    failures.clone(),
                );
                let uri: http::Uri = format!("{base}/{worker}").parse().unwrap();
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let _turn = gate.read().await;
                        let outcome = match client.get(uri.clone()).await {
                            Ok(response) if response.status() == 200 => response
                                .into_body()
                                .collect()
                                .await
                                .map(|_| ())
                                .map_err(|error| format!("body: {error}")),
                            Ok(response) => {
                                let status = response.status();
                                let body = response.into_body().collect().await;
                                let body = body.map(|body| body.to_bytes()).unwrap_or_default();
                                Err(format!(
                                    "status {status}: {}",
                                    String::from_utf8_lossy(&body)
                                ))
                            }
                            Err(error) => Err(format!("{error:?}")),
                        };
                        match outcome {
                            Ok(()) => {
                                served.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(failure) => failures.lock().unwrap().push(failure),
                        }
                    }
                })
            })
            .collect();
        SteadyLoad {
            gate,
            stop,
            served,
            failures,
            workers,
        }
    }

    /// Holds every worker before its next request until the guard is dropped (requests in
    /// flight complete first).
    pub async fn pause(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Tells the workers to send nothing new; what was already sent still completes.
    pub fn stop_sending(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the workers' last requests; returns (served, failures).
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop_sending();
        for worker in self.workers {
            worker.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.served.load(Ordering::SeqCst), failures)
    }
}
