//! Request path normalization: the path that picks the route and its auth mode is exactly the path
//! sent upstream, so `/public/../api/x` can never reach an upstream as an unauthenticated `/api/x`.
//!
//! What is done: percent-encoded unreserved characters (`%2e`, `%41`...) are decoded, every other
//! escape is kept with upper-case hex, empty segments (`//`) and `.` are dropped, `..` removes the
//! previous segment. What cannot be made safe is refused: an encoded `/`, `\` or NUL, a literal `\`,
//! double encoding of those or of `.` or `%`, `..` above the root, a dot segment carrying `;`
//! parameters (`..;`, which Java servers treat as `..`; also with the `;` encoded, `..%3B`), a
//! segment of parameters only (`/;/api`, which they treat as `/api`), escapes that are not UTF-8
//! (overlong forms such as `%c0%ae`), a fragment, and anything not starting with `/`.

use std::borrow::Cow;

use crate::http::error::GatewayError;

/// Normalizes a request path (without its query); see the module documentation. Borrowed when
/// `raw` is already its own normal form, as most request paths are.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, GatewayError> {
    if is_already_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_in_full(raw).map(Cow::Owned)
}

/// Whether `raw` is its own normal form, as most request paths are: starts with `/`, no escape,
/// no empty segment but a trailing one, no dot segment (with or without `;` parameters), and only
/// visible ASCII other than `\` and `#`. Checked in one pass without allocating.
fn is_already_normal(raw: &str) -> bool {
    let Some(rest) = raw.as_bytes().strip_prefix(b"/") else {
        return false;
    };
    let plain = |byte: u8| byte.is_ascii_graphic() && !matches!(byte, b'%' | b'\\' | b'#');
    if !crate::ascii::every_byte(rest, plain) {
        return false;
    }
    let mut segments = rest.split(|&byte| byte == b'/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        let name = segment
            .split(|&byte| byte == b';')
            .next()
            .unwrap_or_default();
        let parameters_only = name.is_empty() && !segment.is_empty();
        if (segment.is_empty() && !is_last) || parameters_only || name == b"." || name == b".." {
            return false;
        }
    }
    true
}

/// The general case of [`normalize`]: escapes, dot segments and empty segments resolved.
pub(crate) fn normalize_in_full(raw: &str) -> Result<String, GatewayError> {
    if !raw.starts_with('/') {
        return Err(GatewayError::InvalidPath("the path must start with '/'"));
    }
    let mut segments: Vec<String> = Vec::new();
    let mut decoded_bytes = Vec::with_capacity(raw.len());
    let raw_segments: Vec<&str> = raw[1..].split('/').collect();
    let mut trailing_slash = false;
    for (index, raw_segment) in raw_segments.iter().enumerate() {
        let is_last = index + 1 == raw_segments.len();
        // Checked per segment: `%c5/%ae` must not pass as one character split by a '/'.
        decoded_bytes.clear();
        let segment = normalize_segment(raw_segment, &mut decoded_bytes)?;
        if std::str::from_utf8(&decoded_bytes).is_err() {
            return Err(GatewayError::InvalidPath(
                "percent-encoded bytes are not valid UTF-8",
            ));
        }
        let name = segment_name(&segment);
        if (name == "." || name == "..") && segment.len() != name.len() {
            return Err(GatewayError::InvalidPath("dot segment with ';' parameters"));
        }
        // `/;/api` is `/api` to a server that cuts parameters off, but `;` is no route's segment.
        if name.is_empty() && !segment.is_empty() {
            return Err(GatewayError::InvalidPath(
                "empty segment with ';' parameters",
            ));
        }
        match segment.as_str() {
            "" => trailing_slash = is_last,
            "." => trailing_slash = is_last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(GatewayError::InvalidPath("'..' goes above the root"));
                }
                trailing_slash = is_last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normalized = String::with_capacity(raw.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if segments.is_empty() || trailing_slash {
        normalized.push('/');
    }
    Ok(normalized)
}

/// A normalized segment up to its `;` parameters. An encoded `;` (`%3B`, upper case once
/// normalized) counts too: a backend that decodes before cutting parameters reads `.%3B` as `.;`.
fn segment_name(segment: &str) -> &str {
    let end = [segment.find(';'), segment.find("%3B")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    &segment[..end]
}

/// Normalizes the escapes of one segment, appending its fully decoded bytes to `decoded`.
fn normalize_segment(raw: &str, decoded: &mut Vec<u8>) -> Result<String, GatewayError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'%' => {
                let value = hex_pair(bytes, i + 1)
                    .ok_or(GatewayError::InvalidPath("malformed percent-encoding"))?;
                decoded.push(value);
                match value {
                    b'/' => return Err(GatewayError::InvalidPath("encoded '/' in the path")),
                    b'\\' => return Err(GatewayError::InvalidPath("encoded '\\' in the path")),
                    0 => return Err(GatewayError::InvalidPath("encoded NUL in the path")),
                    _ if is_unreserved(value) => out.push(char::from(value)),
                    _ => {
                        out.push('%');
                        out.push_str(&format!("{value:02X}"));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(GatewayError::InvalidPath("'\\' in the path")),
            b'#' => return Err(GatewayError::InvalidPath("fragment in the request target")),
            _ if !byte.is_ascii() || byte.is_ascii_control() => {
                return Err(GatewayError::InvalidPath(
                    "raw non-ASCII or control byte in the path",
                ));
            }
            _ => {
                decoded.push(byte);
                out.push(char::from(byte));
                i += 1;
            }
        }
    }
    // Checked on the output, not the input: `%25%32e` becomes `%252e` once `%32` is decoded.
    if is_double_encoded(out.as_bytes()) {
        return Err(GatewayError::InvalidPath("double percent-encoding"));
    }
    Ok(out)
}

/// Whether an encoded `%` is followed by the escape of a character that, decoded a second time by
/// a careless upstream, would change the path's meaning.
fn is_double_encoded(segment: &[u8]) -> bool {
    segment.windows(3).enumerate().any(|(at, window)| {
        window == b"%25" && hex_pair(segment, at + 3).is_some_and(is_dangerous_when_decoded)
    })
}

/// Characters that, decoded a second time by a careless upstream, would change the path's meaning.
fn is_dangerous_when_decoded(byte: u8) -> bool {
    matches!(byte, b'.' | b'/' | b'\\' | b'%' | 0)
}

/// RFC 3986 unreserved characters: their escaped and plain forms are the same path.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The byte encoded by the two hex digits at `at`, if there are two.
fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let high = char::from(*bytes.get(at)?).to_digit(16)?;
    let low = char::from(*bytes.get(at + 1)?).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw} was refused: {e}"))
            .into_owned()
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for path in [
            "/",
            "/api",
            "/api/",
            "/api/v1/users",
            "/a:b@c/~x_y-z.json",
            "/%E4%BD%A0",
        ] {
            assert_eq!(ok(path), path);
        }
    }

    #[test]
    fn dot_segments_and_repeated_slashes_are_resolved() {
        assert_eq!(ok("/public/../api/x"), "/api/x");
        assert_eq!(ok("/public/./x"), "/public/x");
        assert_eq!(ok("//api///x"), "/api/x");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/.."), "/");
    }

    #[test]
    fn encoded_dots_are_dot_segments_in_any_case() {
        assert_eq!(ok("/public/%2e%2e/api/x"), "/api/x");
        assert_eq!(ok("/public/%2E%2E/api/x"), "/api/x");
        assert_eq!(ok("/public/.%2e/api/x"), "/api/x");
        assert_eq!(ok("/public/%2e/x"), "/public/x");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(ok("/%61pi/x"), "/api/x");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%20b"), "/a%20b");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in [
            "/public%2f..%2fapi",
            "/public%2F..%2Fapi",
            "/public%5c..%5capi",
            "/public\\..\\api",
            "/a%00b",
            "/..",
            "/../api",
            "/a/../../api",
            "/%2e%2e/api",
            "/public/%252e%252e/api",
            "/public/%252f",
            "/public/%25252e",
            "/public/%25%32e%25%32e/api",
            "/public/%25%32%66",
            "/p%c5/%ae/../x",
            "/;/api/x",
            "/;x=1/api",
            "/api/;",
            "/public/..;/api",
            "/public/.;x/api",
            // An encoded `;` is a `;` to a backend that decodes before cutting parameters.
            "/public/..%3b/api",
            "/public/%2e%2e%3B/api",
            "/A/%2e%3b/%2b",
            "/%3B/api",
            "/%c0%ae%c0%ae/api",
            "/a%zz",
            "/a%2",
            "/a#frag",
            "*",
            "api",
        ] {
            assert!(normalize(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn percent_encoded_percent_that_is_not_double_encoding_is_kept() {
        assert_eq!(ok("/discount%2550"), "/discount%2550");
        assert_eq!(ok("/100%25"), "/100%25");
    }

    #[test]
    fn semicolon_parameters_on_normal_segments_are_kept() {
        assert_eq!(ok("/api;v=1/x"), "/api;v=1/x");
    }

    #[test]
    fn the_shortcut_agrees_with_the_full_normalization() {
        for raw in [
            "/",
            "/api",
            "/api/",
            "/api/x/y",
            "/api/x;v=1/y",
            "/a.b/c..d/.e/f.",
            "/api//x",
            "//",
            "/./",
            "/..",
            "/api/.",
            "/api/..",
            "/api/.;x/y",
            "/api/..;/y",
            "/;/api",
            "/api/;v",
            "/api/%41",
            "/api/%2e%2E/x",
            "/a\\b",
            "/a#b",
            "/a b",
            "/\u{e9}",
            "api",
            "",
            "/~user/-_.!$&'()*+,=:@",
        ] {
            if is_already_normal(raw) {
                assert_eq!(normalize_in_full(raw).as_deref().ok(), Some(raw), "{raw:?}");
            }
            assert_eq!(
                normalize(raw).as_deref().map_err(|error| error.to_string()),
                normalize_in_full(raw)
                    .as_deref()
                    .map_err(|error| error.to_string()),
                "{raw:?}"
            );
        }
        assert!(is_already_normal("/api/orders/123/items"));
        assert!(!is_already_normal("/api/../x"));
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for path in [
            "/public/../api/x",
            "//a/%2e/b/",
            "/%61pi;x/%3a",
            "/a/b/..",
            "/",
        ] {
            let once = ok(path);
            assert_eq!(ok(&once), once, "{path}");
        }
    }

    /// Request paths built from the pieces path-confusion attacks are made of: route names, dot
    /// segments plain and encoded, empty segments, `;` parameters, encoded separators, double and
    /// overlong encodings, multi-byte UTF-8, and random safe text.
    pub(crate) fn attack_path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("api".to_string()),
            Just("public".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just(String::new()),
            Just("%2e".to_string()),
            Just("%2E%2e".to_string()),
            Just(".%2e".to_string()),
            Just("%61pi".to_string()),
            Just("api;v=1".to_string()),
            Just("..;x".to_string()),
            Just("%2f".to_string()),
            Just("%5C".to_string()),
            Just("%25".to_string()),
            Just("%252e".to_string()),
            Just("%25%32e".to_string()),
            Just("%c0%ae".to_string()),
            Just("%e4%bd%a0".to_string()),
            Just("%e4".to_string()),
            Just("%bd%a0".to_string()),
            "[a-zA-Z0-9._~;=%-]{0,6}",
        ];
        proptest::collection::vec(segment, 0..8)
            .prop_map(|segments| format!("/{}", segments.join("/")))
    }

    /// What an upstream that decodes everything (as many frameworks do) makes of a segment.
    fn fully_decoded(segment: &str) -> String {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn normalizing_is_idempotent(raw in attack_path()) {
            if let Ok(once) = normalize(&raw) {
                prop_assert_eq!(normalize(&once), Ok(once.clone()));
            }
        }

        #[test]
        fn a_normalized_path_has_no_dot_segment_even_when_decoded(raw in attack_path()) {
            if let Ok(normalized) = normalize(&raw) {
                prop_assert!(normalized.starts_with('/'));
                for segment in normalized.split('/') {
                    let decoded = fully_decoded(segment);
                    let name = decoded.split(';').next().unwrap_or_default();
                    prop_assert!(name != "." && name != "..", "{} from {}", normalized, raw);
                    prop_assert!(!decoded.contains('/') && !decoded.contains('\\'));
                }
            }
        }

        #[test]
        fn the_shortcut_agrees_with_the_full_normalization_on_anything(raw in "\\PC{0,40}") {
            prop_assert_eq!(
                normalize(&raw).map(Cow::into_owned).map_err(|error| error.to_string()),
                normalize_in_full(&raw).map_err(|error| error.to_string())
            );
        }
    }
}
