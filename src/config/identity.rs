//! `[identity]`: how upstreams learn who the caller is. The header names (`[identity.headers]`),
//! and the signed assertion a backend can verify instead of trusting a header because only the
//! gateway can reach it.

use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::raw::{self, Flex};
use super::validate::positive;
use super::ConfigError;

/// `[identity]` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub(crate) assertion: Option<Flex<bool>>,
    pub(crate) assertion_header: Option<String>,
    pub(crate) assertion_ttl_secs: Option<Flex<u64>>,
    pub(crate) headers: RawIdentityHeaders,
}

/// `[identity.headers]` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawIdentityHeaders {
    pub(crate) openid: Option<String>,
    pub(crate) unionid: Option<String>,
    pub(crate) app: Option<String>,
}

/// The longest assertion lifetime accepted: an assertion is a per-request credential, not a
/// session.
const MAX_ASSERTION_TTL_SECS: u64 = 3600;

/// `[identity]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Whether every request forwarded with an identity carries a signed assertion of it.
    pub assertion: bool,
    /// The header carrying the assertion (`X-Wxgate-Assertion`).
    pub assertion_header: HeaderName,
    /// How long an assertion is valid (never past the client token's expiry).
    pub assertion_ttl: Duration,
    /// The header carrying the openid (`X-OpenId`).
    pub openid_header: HeaderName,
    /// The header carrying the unionid (`X-UnionId`).
    pub unionid_header: HeaderName,
    /// The header carrying the app's name; `None`: not sent.
    pub app_header: Option<HeaderName>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            assertion: false,
            assertion_header: HeaderName::from_static("x-wxgate-assertion"),
            assertion_ttl: Duration::from_secs(60),
            openid_header: HeaderName::from_static("x-openid"),
            unionid_header: HeaderName::from_static("x-unionid"),
            app_header: None,
        }
    }
}

impl IdentityConfig {
    /// Every header name this config has the gateway set, each with the key that names it.
    pub fn header_names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            Some(&self.openid_header),
            Some(&self.unionid_header),
            self.app_header.as_ref(),
            Some(&self.assertion_header),
        ]
        .into_iter()
        .flatten()
    }
}

impl RawIdentity {
    /// `[identity]`: names that are real header names, none a hop-by-hop, forwarding or request
    /// header, no two the same (after folding `_` to `-`, as the stripping does).
    pub(super) fn validate(&self) -> Result<IdentityConfig, ConfigError> {
        let defaults = IdentityConfig::default();
        let ttl = positive("identity.assertion_ttl_secs", &self.assertion_ttl_secs, 60)?;
        if ttl > MAX_ASSERTION_TTL_SECS {
            return Err(ConfigError::new(
                "identity.assertion_ttl_secs",
                format!("at most {MAX_ASSERTION_TTL_SECS}: an assertion vouches for one request"),
            ));
        }
        let or_default = |key: &str, written: &Option<String>, default: HeaderName| {
            written
                .as_deref()
                .map_or(Ok(default), |written| name(key, written))
        };
        let config = IdentityConfig {
            assertion: raw::number("identity.assertion", &self.assertion, false)?,
            assertion_header: or_default(
                "identity.assertion_header",
                &self.assertion_header,
                defaults.assertion_header,
            )?,
            assertion_ttl: Duration::from_secs(ttl),
            openid_header: or_default(
                "identity.headers.openid",
                &self.headers.openid,
                defaults.openid_header,
            )?,
            unionid_header: or_default(
                "identity.headers.unionid",
                &self.headers.unionid,
                defaults.unionid_header,
            )?,
            app_header: match &self.headers.app {
                Some(app) => Some(name("identity.headers.app", app)?),
                None => None,
            },
        };
        let keys = [
            ("identity.headers.openid", Some(&config.openid_header)),
            ("identity.headers.unionid", Some(&config.unionid_header)),
            ("identity.headers.app", config.app_header.as_ref()),
            ("identity.assertion_header", Some(&config.assertion_header)),
        ];
        for (index, (key, name)) in keys.iter().enumerate() {
            let Some(name) = name else { continue };
            let taken = keys[..index]
                .iter()
                .filter_map(|(other, seen)| Some((other, (*seen)?)))
                .find(|(_, seen)| folded(seen) == folded(name));
            if let Some((other, _)) = taken {
                return Err(ConfigError::new(*key, format!("is also {other}")));
            }
        }
        Ok(config)
    }
}

/// A configured header name: valid, and not one whose meaning the gateway or HTTP fixes.
fn name(key: &str, written: &str) -> Result<HeaderName, ConfigError> {
    let name = HeaderName::from_bytes(written.trim().as_bytes())
        .map_err(|_| ConfigError::new(key, format!("{written:?} is not a header name")))?;
    if crate::http::headers::reserved_for_the_gateway(&folded(&name)) {
        return Err(ConfigError::new(
            key,
            format!("{written:?} is a hop-by-hop, forwarding or request header: name another"),
        ));
    }
    Ok(name)
}

/// The name as the stripping compares it: lower case, `_` as `-`.
fn folded(name: &HeaderName) -> String {
    name.as_str().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use crate::config::minimal_with;

    #[test]
    fn defaults_are_todays_headers_and_no_assertion() {
        let config = minimal_with("").unwrap();
        assert!(!config.identity.assertion);
        assert_eq!(config.identity.openid_header, "x-openid");
        assert_eq!(config.identity.unionid_header, "x-unionid");
        assert_eq!(config.identity.assertion_header, "x-wxgate-assertion");
        assert_eq!(config.identity.app_header, None);
        assert_eq!(config.identity.assertion_ttl.as_secs(), 60);
    }

    #[test]
    fn names_are_configurable() {
        let config = minimal_with(
            "[identity]\nassertion = true\nassertion_ttl_secs = 30\n\
             [identity.headers]\nopenid = \"X-User\"\napp = \"X-App\"\n",
        )
        .unwrap();
        assert!(config.identity.assertion);
        assert_eq!(config.identity.openid_header, "x-user");
        assert_eq!(config.identity.app_header.as_ref().unwrap(), "x-app");
        assert_eq!(config.identity.assertion_ttl.as_secs(), 30);
    }

    #[test]
    fn colliding_names_are_refused_naming_the_key() {
        let cases = [
            (
                "[identity.headers]\nopenid = \"Connection\"",
                "identity.headers.openid",
            ),
            (
                "[identity.headers]\nopenid = \"X-Forwarded-For\"",
                "identity.headers.openid",
            ),
            (
                "[identity.headers]\nunionid = \"x_forwarded_for\"",
                "identity.headers.unionid",
            ),
            ("[identity.headers]\napp = \"Host\"", "identity.headers.app"),
            (
                "[identity.headers]\napp = \"Authorization\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\napp = \"Transfer-Encoding\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\napp = \"X-Request-Id\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\napp = \"X-OpenId\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\napp = \"X_UnionId\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\napp = \"X-Platform\"",
                "identity.headers.app",
            ),
            (
                "[identity.headers]\nopenid = \"bad name\"",
                "identity.headers.openid",
            ),
            (
                "[identity]\nassertion_header = \"X-OpenId\"",
                "identity.assertion_header",
            ),
            (
                "[identity]\nassertion_ttl_secs = 0",
                "identity.assertion_ttl_secs",
            ),
            (
                "[identity]\nassertion_ttl_secs = 7200",
                "identity.assertion_ttl_secs",
            ),
            (
                "[identity.headers]\nuser = \"X-User\"",
                "identity.headers.user",
            ),
        ];
        for (extra, key) in cases {
            let refused = minimal_with(extra).expect_err(extra);
            assert!(
                refused.key.starts_with(key) || refused.to_string().contains(key),
                "{extra}: {refused}"
            );
        }
    }
}
