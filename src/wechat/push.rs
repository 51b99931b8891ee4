//! The crypto of WeChat's message push (消息推送), as WeChat's documentation and its sample code
//! define it: `signature` / `msg_signature` = hex(sha1(the sorted concatenation of the token, the
//! timestamp, the nonce and, for `msg_signature`, the `Encrypt` text)); `Encrypt` =
//! base64(AES-256-CBC(key = base64-decode(EncodingAESKey + "="), iv = the key's first 16 bytes,
//! PKCS#7 padding to 32-byte blocks, plaintext = 16 random bytes + the message's length as 4
//! bytes big-endian + the message + the appid)).

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::config::Secret;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// The padding block size WeChat's push crypto uses (not AES's 16).
pub(crate) const PAD_BLOCK: usize = 32;

/// Why an `Encrypt` text was refused; never carries key material or plaintext.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not base64, or not a whole number of AES blocks.
    Malformed,
    /// The padding is not PKCS#7 to 32-byte blocks.
    BadPadding,
    /// The length prefix does not fit the plaintext.
    BadFrame,
    /// The message is for another app.
    WrongApp,
}

/// hex(sha1(the sorted concatenation of `parts`)).
pub(crate) fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let digest = Sha1::digest(sorted.concat().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `given` is the signature of `parts`, compared in constant time.
pub(crate) fn signature_matches(given: &str, parts: &[&str]) -> bool {
    let expected = signature(parts);
    expected
        .as_bytes()
        .ct_eq(given.trim().to_ascii_lowercase().as_bytes())
        .into()
}

/// The message inside `encrypted`, once its padding, length and appid check out.
pub(crate) fn decrypt(aes_key: &Secret, encrypted: &str, appid: &str) -> Result<Vec<u8>, Refused> {
    let key: [u8; 32] = STANDARD
        .decode(aes_key.expose())
        .ok()
        .and_then(|key| key.try_into().ok())
        .ok_or(Refused::Malformed)?;
    let mut buffer = STANDARD
        .decode(encrypted.trim())
        .map_err(|_| Refused::Malformed)?;
    if buffer.is_empty() || buffer.len() % 16 != 0 {
        return Err(Refused::Malformed);
    }
    let iv: [u8; 16] = key[..16].try_into().map_err(|_| Refused::Malformed)?;
    let mut decryptor = Aes256CbcDec::new(&key.into(), &iv.into());
    for block in buffer.chunks_exact_mut(16) {
        decryptor.decrypt_block_mut(block.into());
    }
    let plaintext = super::pkcs7::strip(&buffer, PAD_BLOCK).ok_or(Refused::BadPadding)?;
    unframe(plaintext, appid).map(<[u8]>::to_vec)
}

/// The message of a frame `16 random bytes | 4-byte big-endian length N | N bytes | owner id`,
/// once the trailing owner id is `owner` (compared in constant time): WeChat's pushes end with
/// the appid, Baidu's user data with the AppKey.
pub(crate) fn unframe<'a>(plaintext: &'a [u8], owner: &str) -> Result<&'a [u8], Refused> {
    if plaintext.len() < 20 {
        return Err(Refused::BadFrame);
    }
    let length = u32::from_be_bytes([plaintext[16], plaintext[17], plaintext[18], plaintext[19]]);
    let length = usize::try_from(length).map_err(|_| Refused::BadFrame)?;
    let rest = &plaintext[20..];
    if length > rest.len() {
        return Err(Refused::BadFrame);
    }
    let (message, trailer) = rest.split_at(length);
    if !bool::from(trailer.ct_eq(owner.as_bytes())) {
        return Err(Refused::WrongApp);
    }
    Ok(message)
}

impl super::WeChatClient {
    /// POSTs a decrypted message to the app's backend as JSON, with `X-App`; 2xx is delivered.
    pub(crate) async fn deliver_push(
        &self,
        upstream: &str,
        app: &str,
        message: &serde_json::Value,
        timeout: std::time::Duration,
    ) -> Result<(), crate::http::error::GatewayError> {
        use crate::http::error::GatewayError;
        let sent = self
            .http
            .post(upstream)
            .timeout(timeout)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-App", app)
            .body(message.to_string())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => {
                tracing::warn!(
                    status = answer.status().as_u16(),
                    app,
                    "the push backend refused a message; WeChat will push it again"
                );
                Err(GatewayError::UpstreamFailed)
            }
            Err(error) if error.is_timeout() => {
                tracing::warn!(
                    app,
                    "the push backend did not answer in time; WeChat will push it again"
                );
                Err(GatewayError::UpstreamTimeout)
            }
            Err(error) => {
                let error = error.without_url();
                tracing::warn!(%error, app, "could not deliver a push to its backend; WeChat will push it again");
                Err(GatewayError::UpstreamUnreachable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_over_the_sorted_parts() {
        // Python: hashlib.sha1("".join(sorted(["token", "1700000000", "nonce"])).encode()).hexdigest()
        assert_eq!(
            signature(&["token", "1700000000", "nonce"]),
            signature(&["nonce", "token", "1700000000"])
        );
        assert!(signature_matches(
            &signature(&["a", "b"]).to_uppercase(),
            &["b", "a"]
        ));
        assert!(!signature_matches("00", &["a", "b"]));
    }
}
