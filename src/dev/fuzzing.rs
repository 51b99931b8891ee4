//! Entry points for the fuzz targets in `fuzz/` and for their regression test: each feeds
//! arbitrary bytes to one parser that reads attacker input and panics if an invariant breaks. They
//! live in the crate so the parsers can stay private, and so `cargo test` replays the kept corpus
//! (`tests/integration/fuzz_corpus.rs`) on the stable toolchain.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::token::{KeyMaterial, KeySpec, LoadedKey, TokenKeys, TokenSettings};

const SECRET: &[u8] = b"fuzzing-secret-that-is-at-least-32-bytes";
const ISSUER: &str = "wxgate-fuzz";
const LEEWAY_SECS: u64 = 30;
const APPID: &str = "wxfuzz0000000001";

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let settings = TokenSettings {
            issuer: ISSUER,
            audience: None,
            ttl_secs: 600,
            leeway_secs: LEEWAY_SECS,
        };
        let spec = KeySpec {
            algorithm: Algorithm::HS256,
            material: KeyMaterial::Secret(SECRET),
            kid: None,
        };
        let key = LoadedKey::load(&spec).expect("the fuzzing key loads");
        TokenKeys::new(settings, key, Vec::new()).expect("the fuzzing keys build")
    })
}

/// Token parsing and validation. The first byte picks what the rest is: `0`, a whole token as a
/// client would send it (nothing may verify, as the fuzzer cannot sign); otherwise a payload the
/// fuzzer controls under a valid HS256 signature, so every claim check is reached. Whatever
/// verifies must carry a forwardable subject, the configured issuer and an `exp` not yet passed
/// (beyond the leeway), and verify the same way again (the cache).
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = keys();
    if mode == 0 {
        let text = String::from_utf8_lossy(rest);
        assert!(keys.verify(&text).is_err(), "an unsigned input verified");
        return;
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(rest));
    let key = EncodingKey::from_secret(SECRET);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
        .expect("HS256 signs anything");
    let token = format!("{message}.{signature}");
    let Ok(verified) = keys.verify(&token) else {
        return;
    };
    assert!(!verified.identity.openid.is_empty());
    assert!(http::HeaderValue::from_str(&verified.identity.openid).is_ok());
    let claims: serde_json::Value = serde_json::from_slice(rest).expect("verified claims are JSON");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], verified.identity.openid.as_str());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    assert!(
        verified.exp.saturating_add(LEEWAY_SECS) >= now,
        "an expired token verified"
    );
    assert_eq!(
        keys.verify(&token).ok(),
        Some(verified),
        "the cache answers the same"
    );
}

/// Path normalization: whatever is accepted is absolute, normalizes to itself, has no dot segment
/// even after an upstream decodes it, and the fast path agrees with the full normalization.
pub fn path(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let normalized = crate::http::path::normalize(&raw);
    assert_eq!(
        normalized.as_deref().map_err(ToString::to_string),
        crate::http::path::normalize_in_full(&raw)
            .as_deref()
            .map_err(ToString::to_string),
        "the shortcut disagrees on {raw:?}"
    );
    let Ok(normalized) = normalized else {
        return;
    };
    assert!(normalized.starts_with('/'));
    assert_eq!(
        crate::http::path::normalize(&normalized).as_ref(),
        Ok(&normalized)
    );
    for segment in normalized.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        let name = decoded.split(';').next().unwrap_or_default();
        assert!(name != "." && name != "..", "{normalized:?} from {raw:?}");
        assert!(
            !decoded.contains(['/', '\\', '\0']),
            "{normalized:?} from {raw:?}"
        );
    }
}

/// The login body parser. The first byte picks the Content-Type (JSON, form, or something else);
/// an accepted code is non-empty printable ASCII of bounded length.
pub fn login_body(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let content_type = match mode % 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded; charset=utf-8",
        _ => "text/plain",
    };
    if let Ok(login) = crate::endpoints::login::login_body(content_type, body) {
        assert!(!login.code.trim().is_empty());
        assert!(login.code.len() <= crate::endpoints::login::MAX_CODE_LEN);
        assert!(login.code.bytes().all(|byte| byte.is_ascii_graphic()));
        assert!(login.app.as_deref() != Some(""));
    }
}

/// The `/wx/decrypt` input: the request JSON, the signature check and the decryption with the mock's
/// sample session_key. The first byte picks what the rest is: `0`, the request body a client posts;
/// otherwise a plaintext the fuzzer controls, encrypted properly, so the padding, JSON and
/// watermark checks are reached. Whatever decrypts carries this app's watermark.
pub fn decrypt_input(data: &[u8]) {
    use crate::mock_wechat::SAMPLE_SESSION_KEY;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (encrypted, iv) = if mode == 0 {
        let Ok(input) = serde_json::from_slice::<crate::endpoints::decrypt::DecryptRequest>(rest)
        else {
            return;
        };
        if let (Some(raw), Some(signature)) = (&input.raw_data, &input.signature) {
            let _ = crate::endpoints::decrypt::check_signature(raw, SAMPLE_SESSION_KEY, signature);
        }
        (input.encrypted_data, input.iv)
    } else {
        encrypt(SAMPLE_SESSION_KEY, rest)
    };
    if let Ok(data) = crate::endpoints::decrypt::decrypt(SAMPLE_SESSION_KEY, &encrypted, &iv, APPID)
    {
        assert_eq!(data["watermark"]["appid"], APPID);
    }
}

/// AES-128-CBC with PKCS#7 padding, as WeChat encrypts user data: (encryptedData, iv) in base64.
fn encrypt(session_key: &str, plaintext: &[u8]) -> (String, String) {
    use aes::cipher::{BlockEncryptMut, KeyIvInit};
    use base64::engine::general_purpose::STANDARD;
    let key: [u8; 16] = STANDARD
        .decode(session_key)
        .expect("base64 key")
        .try_into()
        .expect("16-byte key");
    let iv = [7u8; 16];
    let padding = 16 - plaintext.len() % 16;
    let mut buffer = plaintext.to_vec();
    buffer.resize(plaintext.len() + padding, padding as u8);
    let mut encryptor = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into());
    for block in buffer.chunks_exact_mut(16) {
        encryptor.encrypt_block_mut(block.into());
    }
    (STANDARD.encode(buffer), STANDARD.encode(iv))
}
