//! A backend that does not trust `X-OpenId`: every request must carry the gateway's signed
//! identity assertion (`[identity] assertion = true`), which `wxgate-verify`'s tower layer checks
//! against the gateway's JWKS before the handler runs. A request sent straight to it with a forged
//! `X-OpenId` and no valid assertion is answered 401 and never reaches the handler.
//!
//! ```sh
//! cargo run --example axum_backend -- 127.0.0.1:3000
//! ```
//!
//! Settings (environment): `WXGATE_JWKS_URL` (default
//! `http://127.0.0.1:8080/.well-known/jwks.json`; or `WXGATE_JWT_SECRET` for an HS256 gateway),
//! `WXGATE_ISSUER` ("wxgate"), `WXGATE_AUDIENCE` (this route's `audience` in the gateway, default
//! its prefix: "/api"), `WXGATE_JWKS_REFETCH_SECS` (30: how soon a new key id may fetch the JWKS
//! again).

use std::time::Duration;

use axum::Router;
use wxgate_verify::{Verifier, VerifyLayer, WxgateIdentity};

/// Greets the user the assertion names.
async fn hello(who: WxgateIdentity) -> String {
    let app = who.app.as_deref().unwrap_or("?");
    format!("hello, {} (app {app}, {})\n", who.openid, who.platform)
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let builder = match std::env::var("WXGATE_JWT_SECRET") {
        Ok(secret) => Verifier::builder_with_secret(secret),
        Err(_) => Verifier::builder(setting(
            "WXGATE_JWKS_URL",
            "http://127.0.0.1:8080/.well-known/jwks.json",
        )),
    };
    let refetch: u64 = setting("WXGATE_JWKS_REFETCH_SECS", "30")
        .parse()
        .expect("WXGATE_JWKS_REFETCH_SECS is a number of seconds");
    let verifier = builder
        .issuer(setting("WXGATE_ISSUER", "wxgate"))
        .audience(setting("WXGATE_AUDIENCE", "/api"))
        .refetch_interval(Duration::from_secs(refetch))
        .build()
        .expect("a valid verifier configuration");
    let app = Router::new()
        .fallback(hello)
        .layer(VerifyLayer::new(verifier));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
