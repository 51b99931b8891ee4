//! The worker threads that serve connections: one single-threaded tokio runtime each
//! (`server.workers`, one per CPU by default). The accept loop in `server.rs` hands every accepted
//! connection to the worker serving the fewest, and everything that connection does afterwards
//! (its requests, the upstream exchanges, a WebSocket relay) runs on that one thread.
//!
//! Why not one multi-threaded runtime: with a proxy, a request wakes several tasks (the client
//! connection, the upstream connection), and a work-stealing runtime spreads them over threads,
//! so each request paid for cross-thread wake-ups (futex calls, context switches); measured under
//! load, that was the largest single cost in the gateway's profile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

use super::connection::{Listener, Stop};

/// An accepted connection on its way to a worker, with its connection slot.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
}

/// One worker thread, as the accept loop sees it.
struct Worker {
    /// Where connections go; `None` once the gateway stopped accepting.
    intake: Option<mpsc::UnboundedSender<Accepted>>,
    /// Connections this worker is serving now.
    serving: Arc<AtomicUsize>,
    /// Fires once the thread's runtime (and every task on it) is gone.
    exited: oneshot::Receiver<()>,
}

/// The worker threads of one gateway.
pub(super) struct Workers {
    workers: Vec<Worker>,
    /// Set when the gateway is done: each worker then drops its runtime, and with it whatever it
    /// still runs (only what outlived the shutdown grace).
    finish: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` worker threads serving connections with `listener`'s settings; `stop` tells
    /// their connections to finish.
    pub(super) fn start(
        count: usize,
        listener: &Arc<Listener>,
        stop: &Stop,
    ) -> std::io::Result<Self> {
        let (finish, finished) = watch::channel(false);
        let workers = (0..count.max(1))
            .map(|index| spawn_worker(index, listener.clone(), stop.clone(), finished.clone()))
            .collect::<std::io::Result<_>>()?;
        Ok(Workers { workers, finish })
    }

    /// Hands an accepted connection to the worker serving the fewest.
    pub(super) fn hand(&self, stream: TcpStream, peer: SocketAddr, slot: OwnedSemaphorePermit) {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|worker| worker.serving.load(Ordering::Relaxed))
        else {
            return;
        };
        // Leaves this runtime's reactor; the worker registers the socket with its own.
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let Some(intake) = &worker.intake else { return };
        worker.serving.fetch_add(1, Ordering::Relaxed);
        if intake.send(Accepted { stream, peer, slot }).is_err() {
            worker.serving.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// No more connections: each worker lets go of its handle on the shutdown signal, so that
    /// the signal's channel closes once the last connection is done.
    pub(super) fn close_intake(&mut self) {
        for worker in &mut self.workers {
            worker.intake = None;
        }
    }

    /// Stops the workers and waits until their threads have dropped everything they ran. Called
    /// once the connections have finished, or the shutdown grace is over.
    pub(super) async fn finish(mut self) {
        self.close_intake();
        let _ = self.finish.send(true);
        for worker in self.workers {
            let _ = worker.exited.await;
        }
    }
}

/// How often a worker looks for pooled upstream connections past their idle time.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Closes the worker's expired pooled upstream connections, also those to upstreams no request
/// goes to any more.
async fn close_idle_upstream_connections() {
    let mut ticks = tokio::time::interval(POOL_SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        crate::upstream::close_expired(std::time::Instant::now());
    }
}

/// Starts one worker thread with its own single-threaded runtime.
fn spawn_worker(
    index: usize,
    listener: Arc<Listener>,
    stop: Stop,
    mut finished: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("wxgate-worker-{index}"))
        .build()?;
    let (intake, mut connections) = mpsc::unbounded_channel::<Accepted>();
    let serving = Arc::new(AtomicUsize::new(0));
    let (exit, exited) = oneshot::channel();
    let counter = serving.clone();
    std::thread::Builder::new()
        .name(format!("wxgate-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(close_idle_upstream_connections());
                let intake = async move {
                    while let Some(Accepted { stream, peer, slot }) = connections.recv().await {
                        let (listener, stop, counter) =
                            (listener.clone(), stop.clone(), counter.clone());
                        tokio::spawn(async move {
                            // Shared: a WebSocket relay keeps the slot after the connection task.
                            let slot = Arc::new(slot);
                            if let Ok(stream) = TcpStream::from_std(stream) {
                                listener.serve(stream, peer, slot, stop).await;
                            }
                            counter.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    // No more connections: the connections' own handles are the only ones left.
                    drop((listener, stop));
                    // What still runs (connections, relays) goes on until the gateway finishes.
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = intake => {}
                    _ = finished.wait_for(|done| *done) => {}
                }
            });
            drop(runtime);
            let _ = exit.send(());
        })?;
    Ok(Worker {
        intake: Some(intake),
        serving,
        exited,
    })
}
