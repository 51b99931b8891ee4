//! The request id: the client's `X-Request-Id` when it is a sane one, a fresh random one
//! otherwise. It is logged with the request, sent upstream (replacing whatever the client sent,
//! in any spelling) and returned to the client, so one id ties a client report, the gateway's log
//! and the backend's log together.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the request id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept.
const MAX_LEN: usize = 128;

/// One request's id; travels in the request's extensions to the proxy.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id when it sent exactly one sane `X-Request-Id`, else a new one.
    pub(crate) fn for_request(headers: &HeaderMap) -> RequestId {
        let mut sent = headers.get_all(X_REQUEST_ID).iter();
        match (sent.next(), sent.next()) {
            (Some(value), None) if is_sane(value.as_bytes()) => RequestId(value.clone()),
            _ => RequestId::generate(),
        }
    }

    /// A new id: 32 hex digits, unpredictable and (128 bits) unique in practice. A keyed
    /// hash (keys drawn from the OS once per process) of a counter: no system call per request,
    /// unlike asking the OS for 16 fresh random bytes each time.
    fn generate() -> RequestId {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let keys = KEYS.get_or_init(RandomState::new);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let high = keys.hash_one((count, 0u8));
        let low = keys.hash_one((count, 1u8));
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        let bytes = high.to_be_bytes().into_iter().chain(low.to_be_bytes());
        for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        RequestId(HeaderValue::from_bytes(&hex).expect("hex digits are a valid header value"))
    }

    /// The id as a header value.
    pub(crate) fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text, for logs.
    pub(crate) fn as_str(&self) -> &str {
        // Only visible ASCII gets in (`is_sane`, or hex digits).
        self.0.to_str().unwrap_or("-")
    }
}

/// 1 to 128 characters from a conservative set: letters, digits and `-_.:/+=@`. Nothing that
/// could break a log line, a header or a shell.
fn is_sane(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/+=@".contains(byte))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::tests::headers;

    #[test]
    fn a_sane_client_id_is_kept() {
        for id in [
            "abc-123",
            "7f1e2d3c-aaaa-4bbb-8ccc-0123456789ab",
            "req:1/2+3=4@x_y.z",
        ] {
            let request_id = RequestId::for_request(&headers(&[("X-Request-Id", id)]));
            assert_eq!(request_id.as_str(), id);
        }
    }

    #[test]
    fn anything_else_gets_a_fresh_id() {
        let long = "a".repeat(MAX_LEN + 1);
        for sent in [
            vec![],
            vec![("X-Request-Id", "")],
            vec![("X-Request-Id", "has space")],
            vec![("X-Request-Id", "quote\"")],
            vec![("X-Request-Id", long.as_str())],
            vec![("X-Request-Id", "a"), ("X-Request-Id", "b")],
        ] {
            let id = RequestId::for_request(&headers(&sent));
            assert_eq!(id.as_str().len(), 32, "{sent:?}");
            assert!(id.as_str().bytes().all(|byte| byte.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn generated_ids_do_not_repeat_and_do_not_count_visibly() {
        let ids: Vec<String> = (0..10_000)
            .map(|_| {
                RequestId::for_request(&HeaderMap::new())
                    .as_str()
                    .to_string()
            })
            .collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Consecutive ids share no long prefix, as a counter's would.
        let shared_prefix =
            |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let longest = ids
            .windows(2)
            .map(|pair| shared_prefix(&pair[0], &pair[1]))
            .max();
        assert!(longest.unwrap_or(0) < 12, "{longest:?}");
    }
}
