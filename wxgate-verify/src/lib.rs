//! Verifies wxgate's signed identity assertions in a Rust backend, so that the backend does not
//! have to trust `X-OpenId` because only the gateway can reach it.
//!
//! With `[identity] assertion = true`, wxgate adds `X-Wxgate-Assertion` to every request it
//! forwards with an identity: a JWT typed `wxgate-assertion+jwt`, signed with the gateway's key,
//! for one route's audience, valid for a minute (see the gateway's `docs/identity.md`).
//! [`VerifyLayer`] is a tower layer (axum, hyper, tonic) that requires a valid one on every
//! request, checks its signature against the gateway's JWKS (fetched and cached; fetched again
//! when a token names a key it does not know, at most once per interval), its `typ`, `iss`, `aud`
//! and `exp`, and puts the [`WxgateIdentity`] into the request's extensions. Anything else is
//! answered 401 with the gateway's JSON error shape, and the service behind it is not called.
//!
//! ```no_run
//! # async fn run() {
//! use wxgate_verify::{Verifier, VerifyLayer, WxgateIdentity};
//!
//! let verifier = Verifier::builder("https://api.example.com/.well-known/jwks.json")
//!     .issuer("wxgate")
//!     .audience("orders")
//!     .build()
//!     .expect("a valid configuration");
//! let layer = VerifyLayer::new(verifier);
//! // axum: Router::new().route("/", get(handler)).layer(layer)
//! // handler: async fn handler(who: WxgateIdentity) -> String { who.openid }
//! # }
//! ```

use std::fmt;

mod error;
mod keys;
mod layer;
mod verifier;

#[cfg(feature = "axum")]
mod axum;

pub use error::Refusal;
pub use layer::{Verify, VerifyLayer};
pub use verifier::{Accept, Verifier, VerifierBuilder};

/// The `typ` header of every wxgate identity assertion.
pub const ASSERTION_TYPE: &str = "wxgate-assertion+jwt";

/// The header wxgate puts the assertion in by default (`[identity] assertion_header`).
pub const ASSERTION_HEADER: &str = "x-wxgate-assertion";

/// Who a verified assertion (or client token) says the caller is; in the request's extensions
/// after [`VerifyLayer`], and an axum extractor with the `axum` feature.
#[derive(Clone, PartialEq, Eq)]
pub struct WxgateIdentity {
    /// The user's id in the app (`sub`).
    pub openid: String,
    /// The user's id across the developer's apps, when the platform gave one.
    pub unionid: Option<String>,
    /// The mini-program's appid.
    pub appid: Option<String>,
    /// The app's name in the gateway's config ("default" for `[wechat]`); assertions only.
    pub app: Option<String>,
    /// The platform: "wechat", "qq", "douyin", "baidu", "kuaishou" or "alipay".
    pub platform: String,
    /// When the credential expires, in Unix seconds.
    pub expires_at: u64,
    /// What vouched for the identity.
    pub source: Source,
}

/// What a [`WxgateIdentity`] was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A signed identity assertion from the gateway.
    Assertion,
    /// A wxgate client token (only with [`Accept::AssertionOrClientToken`]); a logout at the
    /// gateway does not reach it.
    ClientToken,
}

/// Ids are personal data: the Debug output names the platform and app only.
impl fmt::Debug for WxgateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WxgateIdentity")
            .field("platform", &self.platform)
            .field("app", &self.app)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}
