//! WebSocket pass-through (HTTP/1.1 `Upgrade`): the upgrade request is authenticated and rewritten
//! like any other request, then, once the upstream answers 101, bytes are relayed both ways until
//! either side closes. The relay holds a drain guard so shutdown waits for open sockets.

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// Held by every open relay; shutdown waits until all of them are dropped.
pub(crate) type DrainGuard = mpsc::Sender<()>;

/// The protocol a request asks to switch to, when it is an upgrade request
/// (`Connection: upgrade` and an `Upgrade` header).
pub(crate) fn requested_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks_upgrade
        .then(|| headers.get(UPGRADE).cloned())
        .flatten()
}

/// Restores the upgrade headers that hop-by-hop removal dropped.
pub(crate) fn set_upgrade_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Splits the token parameter out of a query: (the token, the query without it). A parameter given
/// twice is ambiguous and refused.
pub(crate) fn take_query_token(
    query: &str,
    param: &str,
) -> Result<(Option<String>, String), crate::error::GatewayError> {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split('=').next().unwrap_or_default();
        let decoded: String = form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default();
        if decoded == param {
            if token.is_some() {
                return Err(crate::error::GatewayError::InvalidToken(
                    "more than one token in the query",
                ));
            }
            token = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(_, value)| value.into_owned());
        } else {
            rest.push(pair);
        }
    }
    // Kept pairs are copied byte for byte: the upstream sees the rest of the query unchanged.
    Ok((token, rest.join("&")))
}

/// Relays bytes between the client and the upstream once both sides have switched protocols.
pub(crate) fn spawn_relay(client: OnUpgrade, upstream: OnUpgrade, guard: DrainGuard) {
    tokio::spawn(async move {
        let _guard = guard;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "websocket relay ended with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested_protocol(&headers).is_none());
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(requested_protocol(&headers).unwrap(), "websocket");
    }

    #[test]
    fn query_token_is_taken_and_the_rest_kept_verbatim() {
        let (token, rest) =
            take_query_token("a=1&access_token=abc%2Edef&b=x%20y", "access_token").unwrap();
        assert_eq!(token.as_deref(), Some("abc.def"));
        assert_eq!(rest, "a=1&b=x%20y");
        let (token, rest) = take_query_token("a=1", "access_token").unwrap();
        assert_eq!((token, rest.as_str()), (None, "a=1"));
        assert!(take_query_token("access_token=1&access_token=2", "access_token").is_err());
    }
}
