//! Alipay's phone numbers (`my.getPhoneNumber`, `shared/platforms.md`): the client forwards the
//! answer object `{"response", "sign", "sign_type", "encrypt_type", "charset"}` as it got it. The
//! signature is checked first, with Alipay's public key, over `"` + response + `"` when the
//! response is encrypted (it does not open with `{`), else over the response; only then is it
//! decrypted: AES-128-CBC with the app's content-encryption key, a zero IV, PKCS#7. The plaintext
//! `{"code": "10000", "msg": "Success", "mobile"}` holds no user id: the number belongs to the
//! gateway's own session user.

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use super::{verified, AlipayKeys};
use crate::config::Secret;
use crate::http::error::GatewayError;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// What `my.getPhoneNumber` handed the client.
#[derive(Deserialize)]
pub(crate) struct PhoneAnswer {
    response: String,
    #[serde(default)]
    sign: String,
    #[serde(default = "rsa2")]
    sign_type: String,
    #[serde(default = "aes")]
    encrypt_type: String,
}

fn rsa2() -> String {
    "RSA2".into()
}

fn aes() -> String {
    "AES".into()
}

/// The decrypted content, errors in camelCase as Alipay writes them there.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(default)]
    code: String,
    #[serde(default)]
    sub_code: String,
    #[serde(default)]
    mobile: String,
}

/// The mobile number in `answer`, for the app whose keys are `keys` and content key `aes_key`.
pub(crate) fn mobile(
    keys: &AlipayKeys,
    aes_key: Option<&Secret>,
    answer: &PhoneAnswer,
) -> Result<String, GatewayError> {
    let refuse = GatewayError::UndecryptableData;
    if answer.sign_type != "RSA2" || answer.encrypt_type != "AES" {
        return Err(refuse("only sign_type RSA2 and encrypt_type AES are taken"));
    }
    let encrypted = !answer.response.trim_start().starts_with('{');
    let signed = if encrypted {
        format!("\"{}\"", answer.response)
    } else {
        answer.response.clone()
    };
    if !verified(&keys.verifying, &signed, &answer.sign) {
        tracing::warn!(
            "an Alipay phone answer's signature does not verify with alipay_public_key_file"
        );
        return Err(refuse(
            "the phone answer's sign does not verify with Alipay's key: post my.getPhoneNumber's answer unchanged",
        ));
    }
    let plaintext = if encrypted {
        let key = aes_key.ok_or(GatewayError::PlatformNotSupported(
            "this Alipay app has no aes_key configured, so its phone numbers cannot be read",
        ))?;
        decrypt(key, &answer.response).ok_or(refuse(
            "the phone answer does not decrypt with the app's aes_key",
        ))?
    } else {
        answer.response.clone().into_bytes()
    };
    let content: Content = serde_json::from_slice(&plaintext)
        .map_err(|_| refuse("the phone answer is not Alipay's JSON"))?;
    match (content.code.as_str(), content.sub_code.as_str()) {
        ("10000", _) if !content.mobile.is_empty() => Ok(content.mobile),
        ("10000", _) => Err(GatewayError::WeChatBadAnswer),
        (_, "isv.invalid-auth-relations") => Err(GatewayError::InvalidPhoneCode),
        ("20000", _) => Err(GatewayError::WeChatBusy),
        (code, sub_code) => {
            tracing::error!(code, sub_code, "Alipay refused the phone number for the app itself (keys, encryption settings or a permission); an operator must act");
            Err(GatewayError::WeChatConfigRejected(
                code.parse().unwrap_or(0),
            ))
        }
    }
}

/// AES-128-CBC with a zero IV and strict PKCS#7; `None` when it does not open.
fn decrypt(key: &Secret, response: &str) -> Option<Vec<u8>> {
    let key: [u8; 16] = STANDARD.decode(key.expose()).ok()?.try_into().ok()?;
    let mut buffer = STANDARD.decode(response.trim()).ok()?;
    if buffer.is_empty() || buffer.len() % 16 != 0 {
        return None;
    }
    let mut decryptor = Aes128CbcDec::new(&key.into(), &[0u8; 16].into());
    for block in buffer.chunks_exact_mut(16) {
        decryptor.decrypt_block_mut(block.into());
    }
    crate::wechat::pkcs7::strip(&buffer, 16).map(<[u8]>::to_vec)
}
