//! `POST /wx/decrypt`: the user data WeChat hands the client encrypted with the session_key
//! (wx.getUserInfo, share tickets, run data...), decrypted by the gateway, the only holder of the
//! key. See `shared/wechat-api.md`: AES-128-CBC with a strict PKCS#7 check, the watermark's appid
//! must be the app's own, and `rawData` is checked against `signature` = sha1(rawData +
//! session_key) in constant time when both are given.
//!
//! Every failure is a 4xx telling the client what to do; no message or log carries key material
//! or plaintext.

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::auth::{self, Identity};
use crate::config::Platform;
use crate::endpoints::login::store_failed;
use crate::http::error::{json_response, Body, BoxError, GatewayError};
use crate::state::AppState;

/// The endpoint's path.
pub(crate) const PATH: &str = crate::config::DECRYPT_PATH;

/// Encrypted user data is a few KiB; anything far larger is not WeChat's.
const MAX_ENCRYPTED_BASE64: usize = 64 * 1024;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// What the client posts: the whole `e.detail` of the API that gave the data may come, its other
/// members (`errMsg`, `cloudID`) ignored; a member of the wrong type is refused.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecryptRequest {
    /// `encryptedData`; Baidu's clients call it `data`.
    #[serde(alias = "data")]
    pub(crate) encrypted_data: String,
    pub(crate) iv: String,
    pub(crate) raw_data: Option<String>,
    pub(crate) signature: Option<String>,
}

/// Why decryption failed, in words for the client.
const STALE_KEY: &str = "the data does not decrypt with this user's current session_key \
    (a newer wx.login replaced it); call wx.login, log in again, then fetch the data again";

/// Handles a decryption request from an authenticated user.
pub(crate) async fn handle<B>(
    state: &AppState,
    request: Request<B>,
) -> Result<(Response<Body>, Identity), GatewayError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (identity, body) = auth::authenticated_post(state, request).await?;
    let input: DecryptRequest = serde_json::from_slice(&body).map_err(|_| {
        GatewayError::InvalidRequest(
            "the body must be JSON {\"encryptedData\", \"iv\"[, \"rawData\", \"signature\"]}",
        )
    })?;
    let appid = identity
        .appid
        .as_deref()
        .unwrap_or(&state.config.wechat.default_app().appid);
    let session = state
        .sessions
        .touch(appid, &identity.openid)
        .await
        .map_err(store_failed)?
        .ok_or(GatewayError::SessionExpired)?;
    if state
        .sessions
        .key_stale(&session.sid)
        .await
        .map_err(store_failed)?
    {
        return Err(GatewayError::SessionKeyStale);
    }
    let data = open(
        session.session_key.expose(),
        &input,
        appid,
        identity.platform,
    )?;
    Ok((json_response(StatusCode::OK, &data), identity))
}

/// The user data of `input`, its rawData signature checked when it has one, decrypted with
/// `session_key` for the app `appid` on `platform`: for `/wx/decrypt`, and for a login that
/// posts its data. WeChat's and QQ's data always carries a watermark; Douyin documents it for
/// phone numbers only and Kuaishou not at all, so there it is checked when present. Baidu's is
/// its own scheme ([`crate::wechat::baidu`]), bound to the app by its AppKey instead.
pub(crate) fn open(
    session_key: &str,
    input: &DecryptRequest,
    appid: &str,
    platform: Platform,
) -> Result<serde_json::Value, GatewayError> {
    match platform {
        Platform::Baidu => return open_baidu(session_key, input, appid),
        Platform::Alipay => {
            return Err(GatewayError::PlatformNotSupported(
                "Alipay has no session key, so no user data encrypted with one",
            ))
        }
        _ => {}
    }
    if let (Some(raw), Some(signature)) = (&input.raw_data, &input.signature) {
        check_signature(raw, session_key, signature)?;
    } else if input.raw_data.is_some() || input.signature.is_some() {
        return Err(GatewayError::InvalidRequest(
            "rawData and signature go together",
        ));
    }
    let data = decrypt_any(session_key, &input.encrypted_data, &input.iv)?;
    match (watermark(&data, appid), platform) {
        (Watermark::Own, _) | (Watermark::Missing, Platform::Douyin | Platform::Kuaishou) => {
            Ok(data)
        }
        (other, _) => Err(other.refusal()),
    }
}

/// Baidu user data: no rawData signature is documented, so none is taken.
fn open_baidu(
    session_key: &str,
    input: &DecryptRequest,
    app_key: &str,
) -> Result<serde_json::Value, GatewayError> {
    use crate::wechat::baidu::{self, Refused};
    if input.raw_data.is_some() || input.signature.is_some() {
        return Err(GatewayError::InvalidRequest(
            "Baidu documents no rawData signature; post data (or encryptedData) and iv only",
        ));
    }
    let key = crate::config::Secret::new(session_key);
    let refuse = GatewayError::UndecryptableData;
    let plaintext =
        baidu::decrypt(&key, &input.encrypted_data, &input.iv, app_key).map_err(|refused| {
            match refused {
                Refused::BadKey => GatewayError::SessionExpired,
                Refused::Malformed => {
                    refuse("data and iv must be base64: whole AES blocks and 16 bytes")
                }
                Refused::Undecryptable => refuse(STALE_KEY),
                Refused::WrongApp => {
                    refuse("the data was encrypted for another smart program (AppKey)")
                }
            }
        })?;
    serde_json::from_slice(&plaintext).map_err(|_| refuse(STALE_KEY))
}

/// Checks `signature` = hex(sha1(rawData + session_key)), in constant time.
pub(crate) fn check_signature(
    raw: &str,
    session_key: &str,
    signature: &str,
) -> Result<(), GatewayError> {
    let digest = Sha1::new()
        .chain_update(raw.as_bytes())
        .chain_update(session_key.as_bytes())
        .finalize();
    let expected: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let given = signature.trim().to_ascii_lowercase();
    if expected.as_bytes().ct_eq(given.as_bytes()).into() {
        Ok(())
    } else {
        Err(GatewayError::UndecryptableData(
            "rawData does not match its signature (tampered, or signed with an older \
             session_key: log in again)",
        ))
    }
}

/// Decrypts WeChat user data and checks its watermark; answers the decrypted JSON object. The
/// strict form the unit tests and the fuzz target exercise; requests go through [`open`].
#[cfg(any(test, feature = "dev-tools"))]
pub(crate) fn decrypt(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    appid: &str,
) -> Result<serde_json::Value, GatewayError> {
    let data = decrypt_any(session_key, encrypted_data, iv)?;
    match watermark(&data, appid) {
        Watermark::Own => Ok(data),
        other => Err(other.refusal()),
    }
}

/// What decrypted data says of the app it was encrypted for.
#[derive(PartialEq)]
enum Watermark {
    Own,
    Other,
    Missing,
}

impl Watermark {
    fn refusal(&self) -> GatewayError {
        GatewayError::UndecryptableData(match self {
            Watermark::Other => "the data was encrypted for another mini-program (watermark.appid)",
            _ => "the decrypted data carries no watermark.appid",
        })
    }
}

/// Whether the data's `watermark.appid` is `appid`, another app, or missing.
fn watermark(data: &serde_json::Value, appid: &str) -> Watermark {
    let owner = data
        .get("watermark")
        .and_then(|watermark| watermark.get("appid"))
        .and_then(serde_json::Value::as_str);
    match owner {
        Some(owner) if owner == appid => Watermark::Own,
        Some(_) => Watermark::Other,
        None => Watermark::Missing,
    }
}

/// Decrypts user data (AES-128-CBC, strict PKCS#7) into its JSON, its watermark unchecked.
fn decrypt_any(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
) -> Result<serde_json::Value, GatewayError> {
    let refuse = GatewayError::UndecryptableData;
    let key: [u8; 16] = STANDARD
        .decode(session_key)
        .ok()
        .and_then(|key| key.try_into().ok())
        .ok_or(GatewayError::SessionExpired)?;
    let iv: [u8; 16] = STANDARD
        .decode(iv.trim())
        .map_err(|_| refuse("iv is not valid base64"))?
        .try_into()
        .map_err(|_| refuse("iv must decode to 16 bytes"))?;
    if encrypted_data.len() > MAX_ENCRYPTED_BASE64 {
        return Err(refuse("encryptedData is too large"));
    }
    let mut buffer = STANDARD
        .decode(encrypted_data.trim())
        .map_err(|_| refuse("encryptedData is not valid base64"))?;
    if buffer.is_empty() || buffer.len() % 16 != 0 {
        return Err(refuse(
            "encryptedData must decode to a non-empty multiple of 16 bytes",
        ));
    }
    let mut decryptor = Aes128CbcDec::new(&key.into(), &iv.into());
    for block in buffer.chunks_exact_mut(16) {
        decryptor.decrypt_block_mut(block.into());
    }
    let plaintext = crate::wechat::pkcs7::strip(&buffer, 16).ok_or(refuse(STALE_KEY))?;
    serde_json::from_slice(plaintext).map_err(|_| refuse(STALE_KEY))
}

#[cfg(test)]
mod tests;
