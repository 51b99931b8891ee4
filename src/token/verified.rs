//! A verified token: what it says, and what is made once for it (its identity's header values,
//! its revocation ids, the revocation memo, its identity assertions), since a cached token answers
//! many requests.

use std::sync::Arc;

use super::assertion::Assertions;
use super::NotRevokedMemo;
use crate::http::headers::IdentityHeaders;
use crate::identity::Identity;

/// What a verified token says: who the caller is, and which login and token it is (for refresh,
/// logout and the revocation check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The caller; shared, as a cached token answers many requests.
    pub identity: Arc<Identity>,
    /// The login session (`sid`), absent from tokens minted by other tooling.
    pub sid: Option<String>,
    /// The token's own id (`jti`).
    pub jti: Option<String>,
    /// When the token expires, in Unix seconds.
    pub exp: u64,
    /// When the token was issued (`iat`), in Unix seconds; 0 when it does not say. A token issued
    /// before the session store's generation is refused (its logout may have been lost).
    pub iat: u64,
    /// The identity's header values for upstreams; made once, as a cached token is forwarded on
    /// every request.
    pub(super) identity_headers: IdentityHeaders,
    /// The deny-list entries that would refuse it: its login (`sid:...`) and its own id
    /// (`jti:...`); computed once, as a cached token is checked against them on every request.
    pub(super) revocation_ids: Vec<String>,
    /// The revocations this token is known not to be among (see `session::RevocationEpoch`).
    pub(super) not_revoked_at: NotRevokedMemo,
    /// The identity assertions minted for it, by audience (each once, whatever thread asks).
    pub(super) assertions: Assertions,
}

impl VerifiedToken {
    /// The deny-list entries that would refuse this token: its login and its own id.
    pub(crate) fn revocation_ids(&self) -> &[String] {
        &self.revocation_ids
    }

    /// Whether the token was issued before the session store's `generation` (0: none), so that
    /// a logout of it may have been lost with the old store. Only tokens that a logout could have
    /// revoked (with a `sid` or `jti`) are concerned; one that does not say when it was issued
    /// counts as issued before.
    pub(crate) fn issued_before(&self, generation: u64) -> bool {
        generation > 0 && !self.revocation_ids.is_empty() && self.iat < generation
    }

    /// The identity as forwarded to upstreams.
    pub(crate) fn identity_headers(&self) -> &IdentityHeaders {
        &self.identity_headers
    }

    /// When this token was last found not revoked.
    pub(crate) fn not_revoked_at(&self) -> &NotRevokedMemo {
        &self.not_revoked_at
    }

    /// A copy sharing no memory with this one (header values included), for a thread to use on
    /// its own: shared reference counts are touched by every request.
    pub(crate) fn unshared(&self) -> VerifiedToken {
        let identity = Identity::clone(&self.identity);
        VerifiedToken {
            identity_headers: IdentityHeaders::of(&identity)
                .unwrap_or_else(|| self.identity_headers.clone()),
            identity: Arc::new(identity),
            sid: self.sid.clone(),
            jti: self.jti.clone(),
            exp: self.exp,
            iat: self.iat,
            revocation_ids: self.revocation_ids.clone(),
            not_revoked_at: self.not_revoked_at.clone(),
            assertions: self.assertions.clone(),
        }
    }
}
