//! Property tests of the header rules as `proxy` applies them: hop-by-hop removal, then removal of
//! gateway-owned headers, then the identity. Whatever a client sends, in whatever spelling, the
//! upstream sees the gateway's identity only, and every other end-to-end header unchanged.

use proptest::prelude::*;

use super::*;
use crate::identity::{Identity, Platform};

/// A client's spelling of a gateway-owned header: any letter case, any `-` written as `_`.
fn owned_spelling() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(GATEWAY_OWNED.to_vec()),
        proptest::collection::vec(any::<(bool, bool)>(), 20),
    )
        .prop_map(|(name, flips)| {
            name.chars()
                .zip(flips)
                .map(|(c, (upper, underscore))| match c {
                    '-' if underscore => '_',
                    _ if upper => c.to_ascii_uppercase(),
                    _ => c,
                })
                .collect()
        })
}

/// Whether `name` spells a gateway-owned header, decided here independently of the code under test.
fn spells_owned(name: &HeaderName) -> bool {
    let folded = name.as_str().to_ascii_lowercase().replace('_', "-");
    GATEWAY_OWNED.contains(&folded.as_str())
}

/// An end-to-end header name that is neither gateway-owned nor hop-by-hop.
fn other_name() -> impl Strategy<Value = HeaderName> {
    "[a-z][a-z0-9_-]{0,10}"
        .prop_map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap())
        .prop_filter("an ordinary header", |name| {
            !spells_owned(name) && !HOP_BY_HOP.contains(name)
        })
}

fn value() -> impl Strategy<Value = HeaderValue> {
    "[a-zA-Z0-9 ,;=._-]{0,12}".prop_map(|text| HeaderValue::from_str(&text).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn only_the_gateways_identity_and_the_clients_ordinary_headers_survive(
        spoofs in proptest::collection::vec((owned_spelling(), value()), 0..8),
        others in proptest::collection::vec((other_name(), value()), 0..8),
        connection in proptest::collection::vec(
            prop_oneof![owned_spelling(), other_name().prop_map(|name| name.to_string())],
            0..4,
        ),
        openid in "[a-zA-Z0-9_-]{1,28}",
        unionid in proptest::option::of("[a-zA-Z0-9_-]{1,28}"),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in &spoofs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.clone());
        }
        for (name, value) in &others {
            map.append(name.clone(), value.clone());
        }
        if !connection.is_empty() {
            map.append(CONNECTION, HeaderValue::from_str(&connection.join(", ")).unwrap());
        }
        let named_in_connection: Vec<HeaderName> = connection
            .iter()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap())
            .collect();

        let removed = remove_hop_by_hop(&mut map);
        let identity = Identity {
            openid: openid.clone(),
            unionid: unionid.clone(),
            appid: None,
            platform: Platform::Qq,
        };
        let identity = IdentityHeaders::of(&identity).unwrap();
        let peer = PeerAddress::new(IpAddr::from([203, 0, 113, 7]));
        let request_id = HeaderValue::from_static("id-1");
        let owned = GatewayOwned {
            client: &peer,
            proto: "https",
            host: None,
            from_proxy: None,
            names: &IdentityNames::default(),
            identity: Some(ForwardedIdentity { headers: &identity, app: None, assertion: None }),
            request_id: &request_id,
        };
        set_gateway_owned(&mut map, removed, owned);

        let values = |name: &HeaderName| -> Vec<HeaderValue> {
            map.get_all(name).iter().cloned().collect()
        };
        prop_assert_eq!(values(&X_OPENID), vec![HeaderValue::from_str(&openid).unwrap()]);
        let expected_unionid: Vec<HeaderValue> =
            unionid.iter().map(|id| HeaderValue::from_str(id).unwrap()).collect();
        prop_assert_eq!(values(&X_UNIONID), expected_unionid);
        prop_assert_eq!(values(&X_PLATFORM), vec![HeaderValue::from_static("qq")]);
        prop_assert_eq!(values(&X_FORWARDED_FOR), vec![HeaderValue::from_static("203.0.113.7")]);
        prop_assert_eq!(values(&X_REQUEST_ID), vec![request_id.clone()]);
        let set_by_the_gateway =
            [X_OPENID, X_UNIONID, X_PLATFORM, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID];
        for name in map.keys() {
            prop_assert!(!HOP_BY_HOP.contains(name), "{} kept", name);
            prop_assert!(
                !spells_owned(name) || set_by_the_gateway.contains(name),
                "client's {} kept", name
            );
        }
        for (name, _) in &others {
            let sent: Vec<HeaderValue> = others
                .iter()
                .filter(|(other, _)| other == name)
                .map(|(_, value)| value.clone())
                .collect();
            let expected = if named_in_connection.contains(name) { Vec::new() } else { sent };
            prop_assert_eq!(values(name), expected, "{}", name);
        }
    }
}
