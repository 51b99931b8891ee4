//! The floor under the gateway's throughput: a reverse proxy built from exactly the pieces the
//! gateway's proxy path is built from (one single-threaded tokio runtime per worker thread, hyper's
//! HTTP/1 server, hyper's HTTP/1 client connections pooled per thread) and nothing else: no
//! authentication, no header rules, no logging, no metrics, no limits. `bench/run --floor` measures
//! it next to nginx, so the cost of the stack and the cost of the gateway's own work show apart.
//!
//! Usage: hyper-floor LISTEN_PORT UPSTREAM_PORT [THREADS]

use std::cell::RefCell;
use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

type BoxError = Box<dyn Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

thread_local! {
    /// This thread's idle upstream connections.
    static POOL: RefCell<Vec<SendRequest<ProxyBody>>> = const { RefCell::new(Vec::new()) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = |index: usize| -> u16 {
        let usage = "usage: hyper-floor LISTEN_PORT UPSTREAM_PORT [THREADS]";
        args.get(index)
            .and_then(|arg| arg.parse().ok())
            .expect(usage)
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], port(1)));
    let upstream = SocketAddr::from(([127, 0, 0, 1], port(2)));
    let threads = args
        .get(3)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |count| count.get()));
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || serve(listen, upstream)))
        .collect();
    for worker in workers {
        worker.join().expect("worker thread");
    }
}

/// One worker: its own runtime and its own listening socket (`SO_REUSEPORT`: the kernel spreads
/// the connections over the workers).
fn serve(listen: SocketAddr, upstream: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket.bind(listen).expect("bind");
        let listener = socket.listen(4096).expect("listen");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(async move {
                let service = hyper::service::service_fn(move |request| forward(request, upstream));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Sends the request upstream on a pooled connection (a new one when none is idle) and answers
/// with the upstream's response; 502 when the upstream cannot be reached.
async fn forward(
    request: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(path) => path.clone().into(),
        None => hyper::Uri::from_static("/"),
    };
    let request = Request::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    let answer = async {
        let mut sender = pooled_or_new(upstream).await?;
        let response = sender.send_request(request).await?;
        Ok::<_, BoxError>(response.map(|body| {
            let body = GiveBack {
                body,
                sender: Some(sender),
            };
            body.map_err(BoxError::from).boxed_unsync()
        }))
    };
    Ok(answer.await.unwrap_or_else(|_| {
        let mut response = Response::new(ProxyBody::default());
        *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        response
    }))
}

/// An idle connection of this thread's pool that is still open, or a new one.
async fn pooled_or_new(upstream: SocketAddr) -> Result<SendRequest<ProxyBody>, BoxError> {
    while let Some(mut sender) = POOL.with(|pool| pool.borrow_mut().pop()) {
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(connection);
    Ok(sender)
}

/// A response body that returns its connection to the pool once read to the end.
struct GiveBack {
    body: Incoming,
    sender: Option<SendRequest<ProxyBody>>,
}

impl GiveBack {
    fn give_back(&mut self) {
        if let Some(sender) = self.sender.take() {
            POOL.with(|pool| pool.borrow_mut().push(sender));
        }
    }
}

/// hyper's server stops polling a body whose declared length it has written: the end is seen here.
impl Drop for GiveBack {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

impl Body for GiveBack {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
