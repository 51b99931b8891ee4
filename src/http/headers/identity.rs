//! The identity as the gateway forwards it: the header values made once per token, the names
//! `[identity]` configures (and which of them clients' copies are stripped of), the names no
//! identity header may take, and setting them.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{
    spells, GATEWAY_OWNED, HOP_BY_HOP_NAMES, X_OPENID, X_PLATFORM, X_UNIONID, X_WXGATE_ASSERTION,
};
use crate::identity::Identity;

/// Headers an `[identity]` name may not take besides the hop-by-hop ones: their meaning is
/// HTTP's.
const REQUEST_HEADERS: [&str; 7] = [
    "host",
    "authorization",
    "content-length",
    "content-type",
    "content-encoding",
    "cookie",
    "expect",
];

/// Whether `folded` (a header name in lower case, `_` as `-`) is one whose meaning HTTP or the
/// gateway fixes: hop-by-hop, forwarding, a request header, `X-Platform` or the request id. The
/// default identity names are not: they are what `[identity]` renames.
pub(crate) fn reserved_for_the_gateway(folded: &str) -> bool {
    const IDENTITY_DEFAULTS: [&str; 3] = ["x-openid", "x-unionid", "x-wxgate-assertion"];
    HOP_BY_HOP_NAMES.contains(&folded)
        || REQUEST_HEADERS.contains(&folded)
        || (GATEWAY_OWNED.contains(&folded) && !IDENTITY_DEFAULTS.contains(&folded))
}

/// The identity header names of the running config (`[identity]`), and those of them that
/// clients' copies must be stripped of besides [`GATEWAY_OWNED`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityNames {
    openid: HeaderName,
    unionid: HeaderName,
    app: Option<HeaderName>,
    assertion: HeaderName,
    /// Configured names not in [`GATEWAY_OWNED`], folded; empty with the defaults, so that the
    /// default configuration's requests pay nothing for configurable names.
    also_owned: Vec<String>,
}

impl IdentityNames {
    /// The names the gateway sets the openid, unionid, app name (if any) and assertion under.
    pub fn new(
        openid: HeaderName,
        unionid: HeaderName,
        app: Option<HeaderName>,
        assertion: HeaderName,
    ) -> Self {
        let (openid, unionid, assertion) =
            (interned(openid), interned(unionid), interned(assertion));
        let mut also_owned: Vec<String> = Vec::new();
        for name in [
            Some(&openid),
            Some(&unionid),
            app.as_ref(),
            Some(&assertion),
        ]
        .into_iter()
        .flatten()
        {
            let folded = name.as_str().replace('_', "-");
            if !GATEWAY_OWNED.contains(&folded.as_str()) && !also_owned.contains(&folded) {
                also_owned.push(folded);
            }
        }
        IdentityNames {
            openid,
            unionid,
            app,
            assertion,
            also_owned,
        }
    }

    /// Whether clients' copies of `name` are stripped because the config names it.
    pub(super) fn owns(&self, name: &HeaderName) -> bool {
        self.also_owned.iter().any(|owned| spells(owned, name))
    }
}

/// The default name's constant when `name` is one: a name parsed from the config file is held
/// in shared memory whose reference count every request on every core would touch when the name
/// is inserted; a constant's is never counted.
fn interned(name: HeaderName) -> HeaderName {
    [X_OPENID, X_UNIONID, X_WXGATE_ASSERTION]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or(name)
}

impl Default for IdentityNames {
    fn default() -> Self {
        IdentityNames::new(X_OPENID, X_UNIONID, None, X_WXGATE_ASSERTION)
    }
}

/// The identity as one forwarded request (or forward-auth answer) carries it.
#[derive(Debug)]
pub struct ForwardedIdentity<'a> {
    /// The token's identity as header values.
    pub headers: &'a IdentityHeaders,
    /// The app's name, when `[identity.headers] app` names a header for it.
    pub app: Option<&'a HeaderValue>,
    /// The signed assertion of it, when `[identity] assertion` is on.
    pub assertion: Option<HeaderValue>,
}

/// An identity as the headers that forward it, made once per verified token rather than once
/// per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeaders {
    openid: HeaderValue,
    unionid: Option<HeaderValue>,
    platform: HeaderValue,
}

impl IdentityHeaders {
    /// The header values of `identity`; `None` when one cannot be a header value (such a token is
    /// refused: forwarding it without its identity would fail open).
    pub fn of(identity: &Identity) -> Option<Self> {
        let openid = HeaderValue::from_str(&identity.openid).ok()?;
        let unionid = match &identity.unionid {
            Some(unionid) => Some(HeaderValue::from_str(unionid).ok()?),
            None => None,
        };
        let platform = HeaderValue::from_static(identity.platform.name());
        Some(IdentityHeaders {
            openid,
            unionid,
            platform,
        })
    }
}

/// Adds the authenticated identity under the configured names (to a forwarded request through
/// [`set_gateway_owned`]; to a forward-auth answer, which starts with no header, directly).
pub fn set_identity(
    headers: &mut HeaderMap,
    names: &IdentityNames,
    identity: ForwardedIdentity<'_>,
) {
    let who = identity.headers;
    headers.insert(names.openid.clone(), who.openid.clone());
    if let Some(unionid) = &who.unionid {
        headers.insert(names.unionid.clone(), unionid.clone());
    }
    headers.insert(X_PLATFORM, who.platform.clone());
    if let (Some(name), Some(app)) = (&names.app, identity.app) {
        headers.insert(name.clone(), app.clone());
    }
    if let Some(assertion) = identity.assertion {
        headers.insert(names.assertion.clone(), assertion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::headers::remove_gateway_owned;
    use crate::http::headers::tests::headers;

    #[test]
    fn configured_names_are_set_and_their_client_copies_stripped() {
        let names = IdentityNames::new(
            HeaderName::from_static("x-user"),
            X_UNIONID,
            Some(HeaderName::from_static("x-app")),
            HeaderName::from_static("x-assert"),
        );
        let mut map = headers(&[
            ("X_User", "evil"),
            ("x-app", "evil"),
            ("X-Assert", "evil"),
            ("x-openid", "evil"),
            ("X_Wxgate_Assertion", "evil"),
            ("x-userx", "kept"),
        ]);
        remove_gateway_owned(&mut map, &names);
        assert_eq!(map.len(), 1, "{map:?}");
        let identity = Identity {
            openid: "o-real".into(),
            unionid: Some("u-real".into()),
            appid: None,
            platform: crate::identity::Platform::WeChat,
        };
        let app = HeaderValue::from_static("shop");
        let who = IdentityHeaders::of(&identity).unwrap();
        let forwarded = ForwardedIdentity {
            headers: &who,
            app: Some(&app),
            assertion: Some(HeaderValue::from_static("a.b.c")),
        };
        set_identity(&mut map, &names, forwarded);
        assert_eq!(map["x-user"], "o-real");
        assert_eq!(map["x-unionid"], "u-real");
        assert_eq!(map["x-app"], "shop");
        assert_eq!(map["x-assert"], "a.b.c");
        assert!(!map.contains_key("x-openid"));
        assert_eq!(IdentityNames::default().also_owned, Vec::<String>::new());
    }

    #[test]
    fn default_names_read_from_a_file_are_the_constants() {
        let parsed = [
            HeaderName::from_bytes(b"X-OpenId").unwrap(),
            HeaderName::from_bytes(b"x-unionid").unwrap(),
            HeaderName::from_bytes(b"X-Wxgate-Assertion").unwrap(),
        ];
        // Where the parsed names' text lives (the heap): the names kept must live elsewhere.
        let heap: Vec<usize> = parsed
            .iter()
            .map(|name| name.as_str().as_ptr() as usize)
            .collect();
        let [openid, unionid, assertion] = parsed;
        let names = IdentityNames::new(openid, unionid, None, assertion);
        for (name, heap) in [&names.openid, &names.unionid, &names.assertion]
            .into_iter()
            .zip(heap)
        {
            assert_ne!(name.as_str().as_ptr() as usize, heap, "{name}");
        }
        assert_eq!(names, IdentityNames::default());
        let custom = IdentityNames::new(
            HeaderName::from_bytes(b"x-user").unwrap(),
            X_UNIONID,
            None,
            X_WXGATE_ASSERTION,
        );
        assert_eq!(custom.openid, "x-user");
    }

    #[test]
    fn names_whose_meaning_is_fixed_are_reserved() {
        for name in HOP_BY_HOP_NAMES.iter().chain(&REQUEST_HEADERS) {
            assert!(reserved_for_the_gateway(name), "{name}");
        }
        for name in GATEWAY_OWNED {
            let identity = ["x-openid", "x-unionid", "x-wxgate-assertion"].contains(&name);
            assert_eq!(reserved_for_the_gateway(name), !identity, "{name}");
        }
        assert!(!reserved_for_the_gateway("x-app"));
    }

    #[test]
    fn identity_is_set_after_stripping() {
        let mut map = headers(&[
            ("x-openid", "evil"),
            ("x-unionid", "evil"),
            ("x_platform", "qq"),
        ]);
        let names = IdentityNames::default();
        remove_gateway_owned(&mut map, &names);
        let identity = Identity {
            openid: "o-real".into(),
            unionid: None,
            appid: None,
            platform: crate::identity::Platform::WeChat,
        };
        let who = IdentityHeaders::of(&identity).unwrap();
        let forwarded = ForwardedIdentity {
            headers: &who,
            app: None,
            assertion: None,
        };
        set_identity(&mut map, &names, forwarded);
        assert_eq!(map.get_all(X_OPENID).iter().count(), 1);
        assert_eq!(map[X_OPENID], "o-real");
        assert!(!map.contains_key(X_UNIONID));
        assert_eq!(
            map.get_all(X_PLATFORM).iter().collect::<Vec<_>>(),
            ["wechat"]
        );
        assert!(
            !map.contains_key("x_platform"),
            "a client's X_Platform spelling is stripped"
        );
    }
}
