//! Header rules for forwarded messages: hop-by-hop removal, the headers only the gateway may set
//! (identity and forwarding), and setting them.
//!
//! Order matters and is fixed by `proxy`: hop-by-hop headers (and every name listed in
//! `Connection`) go first, then client-supplied gateway-owned headers, and only then does the
//! gateway add its own; a client that names `X-OpenId` in `Connection:` cannot strip the real one.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};

use crate::http::request_id::X_REQUEST_ID;

mod identity;
pub(crate) mod request_head;

pub(crate) use identity::reserved_for_the_gateway;
pub use identity::{set_identity, ForwardedIdentity, IdentityHeaders, IdentityNames};

/// The header carrying the authenticated user's openid to upstreams.
pub const X_OPENID: HeaderName = HeaderName::from_static("x-openid");
/// The header carrying the user's unionid, when the platform gave one.
pub const X_UNIONID: HeaderName = HeaderName::from_static("x-unionid");
/// The header naming the user's platform (`wechat`, `qq`, `douyin`, `baidu`, `kuaishou`,
/// `alipay`): ids are per platform.
pub const X_PLATFORM: HeaderName = HeaderName::from_static("x-platform");
/// The default header carrying the signed identity assertion (`[identity] assertion_header`).
pub const X_WXGATE_ASSERTION: HeaderName = HeaderName::from_static("x-wxgate-assertion");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const HOP_BY_HOP_COUNT: usize = 9;
/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1, plus the
/// non-standard `proxy-connection` and `keep-alive`).
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];
/// [`HOP_BY_HOP`] as text, in the same order.
const HOP_BY_HOP_NAMES: [&str; HOP_BY_HOP_COUNT] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers whose value upstreams trust because the gateway sets them: identity (under its default
/// names, whatever `[identity.headers]` says), forwarding information and path overrides.
/// Compared after folding `_` to `-`, because some servers (CGI, WSGI, PHP) read `X_OpenId` and
/// `X-OpenId` as the same variable.
const GATEWAY_OWNED: [&str; 15] = [
    "x-openid",
    "x-unionid",
    "x-platform",
    "x-wxgate-assertion",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    // Replaced by the request id the gateway logged (the client's own, when sane).
    "x-request-id",
];

/// Proof that a request's hop-by-hop headers are gone, which [`set_gateway_owned`] takes: the
/// gateway's own headers can only be set once `Connection` has had its say, so a client naming
/// `X-OpenId` in `Connection` cannot strip the identity the gateway set. Only
/// [`remove_hop_by_hop`] makes one:
///
/// ```compile_fail
/// let forged = wxgate::headers::HopByHopRemoved(());
/// ```
#[derive(Debug)]
pub struct HopByHopRemoved(());

/// Removes hop-by-hop headers, including every header the `Connection` header names. Looks at
/// each name once and touches the map only for the names it holds: most messages carry none of
/// them, or only `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> HopByHopRemoved {
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut any = false;
    for name in headers.keys() {
        if let Some(index) = hop_by_hop_index(name) {
            present[index] = true;
            any = true;
        }
    }
    if !any {
        return HopByHopRemoved(());
    }
    // `present[0]` is `Connection`: the names it lists go too.
    if present[0] {
        let mut named = Vec::new();
        for value in &headers.get_all(CONNECTION) {
            for option in value.as_bytes().split(|&byte| byte == b',') {
                let option = option.trim_ascii();
                // `keep-alive`, the option an upstream's answers usually carry, is removed below.
                if option.eq_ignore_ascii_case(b"keep-alive") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(option) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    HopByHopRemoved(())
}

/// Where `name` sits in [`HOP_BY_HOP`], if it is one: compared as text, lengths first, which
/// settles almost every name without looking at its bytes.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    HOP_BY_HOP_NAMES
        .iter()
        .position(|hop| hop.len() == name.len() && *hop == name)
}

/// Whether a header name is one only the gateway may set, in any case or `_` spelling.
pub(crate) fn is_gateway_owned(name: &HeaderName) -> bool {
    GATEWAY_OWNED.iter().any(|owned| spells(owned, name))
}

/// Whether `name` is `folded` (lower case, `-`) in some case or `_` spelling.
fn spells(folded: &str, name: &HeaderName) -> bool {
    let name = name.as_str();
    folded.len() == name.len()
        && folded
            .bytes()
            .zip(name.bytes())
            .all(|(want, got)| want == if got == b'_' { b'-' } else { got })
}

/// What the gateway writes on a request it forwards: where the request came from, who sent it
/// and its id.
#[derive(Debug)]
pub struct GatewayOwned<'a> {
    /// The client connection's address.
    pub client: &'a PeerAddress,
    /// The client connection's scheme (`http` or `https`).
    pub proto: &'static str,
    /// The host the client asked for.
    pub host: Option<HeaderValue>,
    /// What a trusted proxy in front said about the original request, when the peer is one.
    pub from_proxy: Option<ProxyForwarding>,
    /// The names identity headers are set under.
    pub names: &'a IdentityNames,
    /// Who the verified token says the caller is; `None`: no identity is forwarded.
    pub identity: Option<ForwardedIdentity<'a>>,
    /// The request's id (X-Request-Id).
    pub request_id: &'a HeaderValue,
}

/// The one rewrite of the headers only the gateway may set, after hop-by-hop removal: every
/// client copy of them goes (any case, `_` spellings), then the gateway's own are set.
pub fn set_gateway_owned(headers: &mut HeaderMap, _: HopByHopRemoved, owned: GatewayOwned<'_>) {
    remove_gateway_owned(headers, owned.names);
    set_forwarding(
        headers,
        owned.client,
        owned.proto,
        owned.host,
        owned.from_proxy,
    );
    if let Some(identity) = owned.identity {
        set_identity(headers, owned.names, identity);
    }
    headers.insert(X_REQUEST_ID, owned.request_id.clone());
}

/// Removes every client-supplied gateway-owned header, the configured identity names included.
fn remove_gateway_owned(headers: &mut HeaderMap, names: &IdentityNames) {
    let owned = |name: &HeaderName| is_gateway_owned(name) || names.owns(name);
    if !headers.keys().any(owned) {
        return;
    }
    let owned: Vec<HeaderName> = headers.keys().filter(|name| owned(name)).cloned().collect();
    for name in owned {
        headers.remove(name);
    }
}

/// What a trusted proxy in front of the gateway said about the original request, read after the
/// hop-by-hop headers are gone and before the gateway-owned ones are stripped.
#[derive(Debug, Default, PartialEq)]
pub struct ProxyForwarding {
    /// The `X-Forwarded-For` chain so far, all values joined.
    chain: Option<String>,
    /// `X-Forwarded-Proto`, when it is exactly `http` or `https`.
    proto: Option<HeaderValue>,
    /// `X-Forwarded-Host`, when there is exactly one.
    host: Option<HeaderValue>,
}

impl ProxyForwarding {
    /// Reads the forwarding headers a trusted proxy set (exact names only: a `_` spelling is not
    /// what a proxy writes).
    pub fn read(headers: &HeaderMap) -> Self {
        let chain: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .collect();
        let proto = single(headers, &X_FORWARDED_PROTO).and_then(|value| {
            let value = value.to_str().ok()?.trim().to_ascii_lowercase();
            match value.as_str() {
                "http" => Some(HeaderValue::from_static("http")),
                "https" => Some(HeaderValue::from_static("https")),
                _ => None,
            }
        });
        ProxyForwarding {
            chain: (!chain.is_empty()).then(|| chain.join(", ")),
            proto,
            host: single(headers, &X_FORWARDED_HOST).cloned(),
        }
    }
}

/// The value of a header that must appear exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// A client's address, and its text as a header value, made once per connection: formatting an
/// address costs more than the rest of [`set_forwarding`].
#[derive(Clone, Debug)]
pub struct PeerAddress {
    ip: IpAddr,
    text: HeaderValue,
}

impl PeerAddress {
    /// The address of a connection's peer.
    pub fn new(ip: IpAddr) -> Self {
        let text =
            HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value");
        PeerAddress { ip, text }
    }

    /// The address itself.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// Adds `X-Forwarded-For/-Proto/-Host` describing the client connection. Behind a trusted proxy
/// (`from_proxy`), the peer is appended to the proxy's chain and the proxy's scheme and host are
/// kept; otherwise the peer is the whole chain.
fn set_forwarding(
    headers: &mut HeaderMap,
    client: &PeerAddress,
    proto: &'static str,
    host: Option<HeaderValue>,
    from_proxy: Option<ProxyForwarding>,
) {
    let from_proxy = from_proxy.unwrap_or_default();
    let value = match &from_proxy.chain {
        Some(chain) => HeaderValue::from_str(&format!("{chain}, {}", client.ip)),
        None => Ok(client.text.clone()),
    };
    if let Ok(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = from_proxy
        .proto
        .unwrap_or_else(|| HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_PROTO, proto);
    if let Some(host) = from_proxy.host.or(host) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map from name/value pairs, repeated names kept; shared by the header tests.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn identity_headers_are_owned_in_every_spelling() {
        for name in [
            "X-OpenId",
            "x-openid",
            "X_OPENID",
            "x_OpenId",
            "X-UnionId",
            "x_unionid",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_gateway_owned(&name), "{name}");
        }
        for name in ["x-openid2", "openid", "x-open-id-x", "authorization"] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!is_gateway_owned(&name), "{name}");
        }
    }

    #[test]
    fn owned_headers_are_removed_including_duplicates() {
        let mut map = headers(&[
            ("x-openid", "evil"),
            ("X_OpenId", "evil2"),
            ("x-openid", "evil3"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_host", "evil.example"),
            ("accept", "*/*"),
        ]);
        remove_gateway_owned(&mut map, &IdentityNames::default());
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("accept"));
    }

    #[test]
    fn hop_by_hop_names_match_their_text() {
        for (name, text) in HOP_BY_HOP.iter().zip(HOP_BY_HOP_NAMES) {
            assert_eq!(name.as_str(), text);
            assert_eq!(
                hop_by_hop_index(name),
                HOP_BY_HOP.iter().position(|n| n == name)
            );
        }
        for other in [
            "x-openid",
            "accept",
            "connections",
            "tee",
            "upgrade-insecure-requests",
        ] {
            let other = HeaderName::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(hop_by_hop_index(&other), None, "{other}");
        }
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Custom"),
            ("connection", "x-other"),
            ("x-custom", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("accept"));
    }

    #[test]
    fn trusted_proxy_chain_is_extended_and_its_scheme_kept() {
        let incoming = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "shop.example"),
        ]);
        let from_proxy = ProxyForwarding::read(&incoming);
        let mut map = HeaderMap::new();
        let peer = PeerAddress::new("10.0.0.3".parse().unwrap());
        set_forwarding(&mut map, &peer, "http", None, Some(from_proxy));
        assert_eq!(map[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.2, 10.0.0.3");
        assert_eq!(map[X_FORWARDED_PROTO], "https");
        assert_eq!(map[X_FORWARDED_HOST], "shop.example");
    }

    #[test]
    fn odd_proxy_values_fall_back_to_the_connection() {
        let incoming = headers(&[
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "a.example"),
            ("x-forwarded-host", "b.example"),
        ]);
        let mut map = HeaderMap::new();
        let peer = PeerAddress::new("10.0.0.3".parse().unwrap());
        let host = HeaderValue::from_static("gw.example");
        let from_proxy = Some(ProxyForwarding::read(&incoming));
        set_forwarding(&mut map, &peer, "https", Some(host), from_proxy);
        assert_eq!(map[X_FORWARDED_FOR], "10.0.0.3");
        assert_eq!(map[X_FORWARDED_PROTO], "https");
        assert_eq!(map[X_FORWARDED_HOST], "gw.example");
    }
}
