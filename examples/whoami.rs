//! A minimal backend to put behind wxgate: it trusts `X-OpenId` because only the gateway can reach
//! it (it listens on localhost), and greets the user it names.
//!
//! ```text
//! cargo run --example whoami                    # listens on 127.0.0.1:3000, the example config's upstream
//! cargo run --example whoami -- 127.0.0.1:0     # any free port; the first line printed names it
//! ```
//! A backend must never be reachable except through the gateway: anyone who can reach it directly
//! can send any `X-OpenId` they like.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn whoami(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let openid = request
        .headers()
        .get("x-openid")
        .and_then(|value| value.to_str().ok());
    let text = match openid {
        Some(openid) => format!("hello, {openid}\n"),
        None => "hello, anonymous visitor\n".to_string(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listener = TcpListener::bind(&address).await?;
    println!("whoami backend on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(whoami))
                .await;
        });
    }
}
