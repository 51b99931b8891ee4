//! A steady load for shutdown tests: workers sending back-to-back GETs over pooled keep-alive
//! connections until told to stop, counting what was served and what failed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

/// Workers hitting `{base}/{worker}`.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl SteadyLoad {
    /// Starts `workers` workers; a request counts as served when it gets 200 and its whole body.
    pub fn start(base: &str, workers: usize) -> SteadyLoad {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|worker| {
                let (client, stop, served, failures) = (
                    client.clone(),
                    stop.clone(),
                    served.clone(),
                    failures.clone(),
                );
                let uri: http::Uri = format!("{base}/{worker}").parse().unwrap();
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let outcome = match client.get(uri.clone()).await {
                            Ok(response) if response.status() == 200 => response
                                .into_body()
                                .collect()
                                .await
                                .map(|_| ())
                                .map_err(|error| format!("body: {error}")),
                            Ok(response) => Err(format!("status {}", response.status())),
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
            stop,
            served,
            failures,
            workers,
        }
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
