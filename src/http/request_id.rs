//! The request id: the client's `X-Request-Id` when it is a sane one, a fresh random one
//! otherwise. It is logged with the request, sent upstream (replacing whatever the client sent,
//! in any spelling) and returned to the client, so one id ties a client report, the gateway's log
//! and the backend's log together.

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the request id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept.
const MAX_LEN: usize = 128;

/// One request's id, handed to the proxy and to the log line.
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

    /// A new id: 32 hex digits, 128 random bits from the OS, unique in practice. Each thread
    /// formats [`IDS_PER_BATCH`] ids at once, from one request for randomness to the OS, into one
    /// shared buffer; an id is a slice of it, so making, cloning (to the upstream request, to the
    /// response) and dropping one allocates nothing.
    fn generate() -> RequestId {
        let hex = IDS.with_borrow_mut(IdBatch::take);
        RequestId(HeaderValue::from_maybe_shared(hex).expect("hex digits are a valid header value"))
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

/// Ids formatted at once. A batch's buffer (`IDS_PER_BATCH` x 32 bytes) lives until its last id
/// is dropped.
const IDS_PER_BATCH: usize = 128;
/// The length of an id in hex digits.
const ID_LEN: usize = 32;

thread_local! {
    /// This thread's formatted ids, handed out in order.
    static IDS: RefCell<IdBatch> = const { RefCell::new(IdBatch { hex: Bytes::new(), next: IDS_PER_BATCH }) };
}

/// A buffer of formatted random ids, and the index of the next one to hand out.
struct IdBatch {
    hex: Bytes,
    next: usize,
}

impl IdBatch {
    /// The next id's hex digits, formatting a new batch when this one is used up.
    fn take(&mut self) -> Bytes {
        if self.next == IDS_PER_BATCH {
            self.hex = fresh_ids();
            self.next = 0;
        }
        let start = self.next * ID_LEN;
        self.next += 1;
        self.hex.slice(start..start + ID_LEN)
    }
}

/// [`IDS_PER_BATCH`] new ids in a row, from the OS's randomness. Should the OS fail (it does not on
/// Linux once booted), a keyed hash of a counter, with keys the standard library drew from the
/// OS, stands in.
fn fresh_ids() -> Bytes {
    let mut random = [0u8; IDS_PER_BATCH * ID_LEN / 2];
    if getrandom::fill(&mut random).is_err() {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let keys = KEYS.get_or_init(RandomState::new);
        for chunk in random.chunks_exact_mut(8) {
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            chunk.copy_from_slice(&keys.hash_one(count).to_be_bytes());
        }
    }
    let mut hex = vec![0; random.len() * 2];
    crate::ascii::write_hex(&random, &mut hex);
    Bytes::from(hex)
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
    use crate::http::headers::tests::headers;

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
