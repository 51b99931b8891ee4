//! Signed identity assertions (`[identity] assertion`): a short-lived JWT of who the caller is,
//! for one route's backends (`aud`), signed with the gateway's signing key under its kid and typed
//! `wxgate-assertion+jwt`, so that a backend can verify the identity instead of trusting a header
//! because only the gateway can reach it. A client token is never accepted as an assertion (its
//! `typ` is `JWT`), nor an assertion as a client token (`TokenKeys::verify` refuses any other
//! `typ`).
//!
//! Signing costs far more than forwarding a request, so an assertion is minted once per token and
//! route audience (the worker threads' copies of a cached token share their assertions) and
//! reused until shortly before it expires. Each thread's copy of the token also keeps the
//! assertions it used in memory of its own, so that a request reads no line another core writes
//! (bench/RESULTS.md, "Identity assertions").

use std::fmt;
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use serde::Serialize;

use super::{unix_now, TokenKeys, VerifiedToken};
use crate::http::error::GatewayError;
use crate::identity::Identity;

/// The `typ` header of every assertion.
pub const ASSERTION_TYPE: &str = "wxgate-assertion+jwt";

/// A token's assertions kept per audience beyond this are dropped, oldest first: a token used on
/// more routes than this mints again.
const SLOTS: usize = 16;

/// Renewed this long before expiry at most (a quarter of the lifetime for short ones), so that a
/// backend never receives an assertion about to expire in transit.
const RENEW_BEFORE_SECS: u64 = 10;

/// What an assertion says, besides the audience and times.
pub(crate) struct AssertionOf<'a> {
    /// The caller.
    pub(crate) identity: &'a Identity,
    /// The name of the caller's app (`[wechat]` is "default"), looked up when one is minted.
    pub(crate) app: &'a dyn Fn() -> Option<String>,
    /// The route's audience.
    pub(crate) audience: &'a str,
    /// How long it is valid, at most.
    pub(crate) ttl_secs: u64,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
    platform: &'static str,
}

impl TokenKeys {
    /// The assertion of `verified`'s identity for `of.audience`: the one this copy of the token
    /// minted before while it is fresh, or a new one. Never valid past the token's own `exp`.
    pub(crate) fn assertion(
        &self,
        verified: &VerifiedToken,
        of: AssertionOf<'_>,
    ) -> Result<HeaderValue, GatewayError> {
        let now = unix_now();
        verified.assertions.get_or_mint(of.audience, now, || {
            let exp = now.saturating_add(of.ttl_secs).min(verified.exp);
            let app = (of.app)();
            let claims = AssertionClaims {
                iss: &self.issuer,
                sub: &of.identity.openid,
                aud: of.audience,
                iat: now,
                exp,
                unionid: of.identity.unionid.as_deref(),
                appid: of.identity.appid.as_deref(),
                app: app.as_deref(),
                platform: of.identity.platform.name(),
            };
            let mut header = self.header.clone();
            header.typ = Some(ASSERTION_TYPE.to_string());
            let signed = jsonwebtoken::encode(&header, &claims, &self.encoding)
                .map_err(|_| GatewayError::Internal("the assertion could not be signed"))?;
            let value = HeaderValue::try_from(signed)
                .map_err(|_| GatewayError::Internal("an assertion is not a header value"))?;
            let renew_at = exp.saturating_sub(RENEW_BEFORE_SECS.min(exp.saturating_sub(now) / 4));
            Ok((value, renew_at))
        })
    }
}

/// One minted assertion.
struct Slot {
    audience: String,
    value: HeaderValue,
    /// Unix seconds from which a new one is minted.
    renew_at: u64,
}

/// The assertions of one copy of a verified token: its own, read by one thread, backed by those
/// every copy shares, where each is minted once (locked while it is signed: one token's requests
/// on several threads wait for one signature rather than making one each).
#[derive(Default)]
pub(crate) struct Assertions {
    own: Slots,
    shared: Arc<Slots>,
}

impl Assertions {
    /// The fresh assertion for `audience`: this copy's, the shared one, or the one `mint` makes
    /// (with when to renew it).
    fn get_or_mint(
        &self,
        audience: &str,
        now: u64,
        mint: impl FnOnce() -> Result<(HeaderValue, u64), GatewayError>,
    ) -> Result<HeaderValue, GatewayError> {
        if let Some((value, _)) = self.own.fresh(audience, now) {
            return Ok(value);
        }
        let (value, renew_at) = {
            let mut shared = self.shared.lock();
            match fresh(&shared, audience, now) {
                Some(fresh) => fresh,
                None => {
                    let (value, renew_at) = mint()?;
                    put(&mut shared, audience, value.clone(), renew_at);
                    (value, renew_at)
                }
            }
        };
        // A copy of the bytes of its own: a clone of the shared value would count its references
        // in memory every thread writes.
        let own = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| GatewayError::Internal("an assertion is not a header value"))?;
        put(&mut self.own.lock(), audience, own.clone(), renew_at);
        Ok(own)
    }
}

/// A new copy: none of its own yet, the shared ones shared.
impl Clone for Assertions {
    fn clone(&self) -> Self {
        Assertions {
            own: Slots::default(),
            shared: self.shared.clone(),
        }
    }
}

/// Assertions are bookkeeping, not part of what a token says.
impl PartialEq for Assertions {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Assertions {}

impl fmt::Debug for Assertions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Assertions")
    }
}

/// Minted assertions by audience, at most [`SLOTS`].
#[derive(Default)]
struct Slots(Mutex<Vec<Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A poisoned lock only means a panic elsewhere mid-update: the slots are still whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fresh(&self, audience: &str, now: u64) -> Option<(HeaderValue, u64)> {
        fresh(&self.lock(), audience, now)
    }
}

/// The assertion for `audience` in `slots` and when to renew it, while it is fresh.
fn fresh(slots: &[Slot], audience: &str, now: u64) -> Option<(HeaderValue, u64)> {
    slots
        .iter()
        .find(|slot| slot.audience == audience && now < slot.renew_at)
        .map(|slot| (slot.value.clone(), slot.renew_at))
}

/// Keeps `value` for `audience`, in place of an older one; the oldest goes beyond [`SLOTS`].
fn put(slots: &mut Vec<Slot>, audience: &str, value: HeaderValue, renew_at: u64) {
    slots.retain(|slot| slot.audience != audience);
    if slots.len() >= SLOTS {
        slots.remove(0);
    }
    slots.push(Slot {
        audience: audience.to_string(),
        value,
        renew_at,
    });
}
