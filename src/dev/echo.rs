//! An upstream that answers every request with a JSON description of what it received: method,
//! URI, every header (repeated ones kept apart) and the body's length, SHA-256 and text. The demo
//! puts it behind the gateway so users see the `X-OpenId` a backend gets; the tests use it to
//! assert what an upstream actually received.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::http::error::{json_response, Body};

/// Bodies up to this size are echoed as text too; larger ones only by length and hash.
const ECHOED_BODY_BYTES: usize = 4096;

/// The echo upstream; clone it to keep a handle on its request counter while it serves.
#[derive(Clone, Default)]
pub struct EchoUpstream {
    requests: Arc<AtomicUsize>,
}

impl EchoUpstream {
    /// A new echo upstream with its counter at zero.
    pub fn new() -> Self {
        EchoUpstream::default()
    }

    /// How many requests reached it: tests prove refused requests never did.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let requests = self.requests.clone();
        crate::simple_http::serve_handler(listener, shutdown, move |request| {
            requests.fetch_add(1, Ordering::SeqCst);
            describe(request)
        })
        .await
    }
}

/// The JSON description of a request.
async fn describe(request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "body"}),
            )
        }
    };
    let sha256: String = Sha256::digest(&body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let text =
        (body.len() <= ECHOED_BODY_BYTES).then(|| String::from_utf8_lossy(&body).into_owned());
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body_len": body.len(),
            "body_sha256": sha256,
            "body": text,
        }),
    )
}
