//! Vectors made by an independent AES implementation (pyca/cryptography):
//! `tests/support/make_decrypt_vectors.py` prints them.

use super::*;

const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const IV: &str = "AAECAwQFBgcICQoLDA0ODw==";
const APPID: &str = "wxtest0000000001";
const USER: &str = "Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwXSGrKzSz4/0ErDrOM42sOn5EyOGYRvxBbAss6msa2A0PtE93n6qMRHe8d3X4b381t7QbBugS1kWlbDRC4eb55G";
const OTHER_APP: &str = "Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwVHsCxGmj7MIuWsgZsv2cedU7kvgTEEGzjrZh2Tlfk2UpvUhzIyyG6oxN8im/e9lW0=";
const NOT_JSON: &str = "Bt+gC5xemVGyVL/53THz9w==";
const BAD_PADDING: &str = "7LFQ4hyYHboQffP7p3keAw==";
const ZERO_PADDING: &str = "mvykwDbhvfnOIswJCajSFQ==";
const RAW: &str = r#"{"nickName":"Olivia"}"#;
const SIGNATURE: &str = "85e403ad064f238232ad46a131d2cd603b24d067";

fn refused(result: Result<serde_json::Value, GatewayError>) -> String {
    match result {
        Err(GatewayError::UndecryptableData(message)) => message.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn decrypts_the_independent_vector_and_checks_the_watermark() {
    let data = decrypt(KEY, USER, IV, APPID).unwrap();
    assert_eq!(data["openId"], "oMock_olivia");
    assert_eq!(data["watermark"]["appid"], APPID);
    assert!(refused(decrypt(KEY, OTHER_APP, IV, APPID)).contains("another mini-program"));
    assert!(refused(decrypt(KEY, USER, IV, "wxsomeoneelse0001")).contains("another"));
}

#[test]
fn a_wrong_key_bad_padding_or_non_json_says_log_in_again() {
    let other_key = "AAAAAAAAAAAAAAAAAAAAAA==";
    for (key, data) in [
        (other_key, USER),
        (KEY, BAD_PADDING),
        (KEY, ZERO_PADDING),
        (KEY, NOT_JSON),
    ] {
        assert!(
            refused(decrypt(key, data, IV, APPID)).contains("log in again"),
            "{data}"
        );
    }
}

#[test]
fn malformed_inputs_are_refused_without_panicking() {
    let cases = [
        ("not base64!", IV, "encryptedData is not valid base64"),
        ("", IV, "non-empty multiple of 16"),
        ("AAAA", IV, "non-empty multiple of 16"),
        (USER, "AAAA", "16 bytes"),
        (USER, "%%%", "iv is not valid base64"),
    ];
    for (data, iv, expected) in cases {
        let message = refused(decrypt(KEY, data, iv, APPID));
        assert!(message.contains(expected), "{data:?} {iv:?}: {message}");
    }
    let huge = "A".repeat(MAX_ENCRYPTED_BASE64 + 4);
    assert!(refused(decrypt(KEY, &huge, IV, APPID)).contains("too large"));
    assert_eq!(
        decrypt("short", USER, IV, APPID),
        Err(GatewayError::SessionExpired)
    );
}

#[test]
fn raw_data_signature_is_checked() {
    assert!(check_signature(RAW, KEY, SIGNATURE).is_ok());
    assert!(check_signature(RAW, KEY, &SIGNATURE.to_ascii_uppercase()).is_ok());
    assert!(check_signature(r#"{"nickName":"Mallory"}"#, KEY, SIGNATURE).is_err());
    assert!(check_signature(RAW, "AAAAAAAAAAAAAAAAAAAAAA==", SIGNATURE).is_err());
    assert!(check_signature(RAW, KEY, "").is_err());
}

/// The user data's padding, to AES's 16-byte blocks.
fn strip_pkcs7(data: &[u8]) -> Option<&[u8]> {
    crate::wechat::pkcs7::strip(data, 16)
}

#[test]
fn strict_pkcs7() {
    assert_eq!(strip_pkcs7(&[b'a'; 16]), None, "0x61 is not a pad length");
    let mut block = [b'a'; 16];
    block[15] = 1;
    assert_eq!(strip_pkcs7(&block).map(<[u8]>::len), Some(15));
    block[14..].copy_from_slice(&[2, 2]);
    assert_eq!(strip_pkcs7(&block).map(<[u8]>::len), Some(14));
    block[14] = 3;
    assert_eq!(strip_pkcs7(&block), None);
    assert_eq!(strip_pkcs7(&[16u8; 16]).map(<[u8]>::len), Some(0));
    assert_eq!(strip_pkcs7(&[17u8; 16]), None);
    assert_eq!(strip_pkcs7(&[]), None);
}
