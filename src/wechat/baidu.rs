//! Baidu smart programs (`shared/platforms.md`, section 4). Login: `POST
//! {api_base}/oauth/jscode2sessionkey`, form-encoded `code`, `client_id` (the app's AppKey, its
//! `appid` here) and `sk` (the AppSecret), answered `{"openid", "session_key"}`, or Baidu's OAuth
//! error `{"error", "error_description"}` (possibly with HTTP 400). User data: AES-192-CBC with the
//! 24-byte session_key and the client's iv, PKCS#7 over 32-byte blocks, and the plaintext framed
//! as 16 random bytes + 4-byte big-endian length + the JSON + the AppKey, which must be the app's.
//! On the second host (`openapi_base`): the access_token (`POST /oauth/2.0/token`, OAuth client
//! credentials, form-encoded) and the unionid (`POST /rest/2.0/smartapp/getunionid`).

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use super::access_token::AccessToken;
use super::{api_url, Code2Session, WeChatClient};
use crate::config::{Secret, WeChatApp};
use crate::http::error::GatewayError;

type Aes192CbcDec = cbc::Decryptor<aes::Aes192>;

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    openid: String,
    #[serde(default)]
    session_key: String,
    error: Option<String>,
    #[serde(default)]
    error_description: String,
}

impl WeChatClient {
    /// Exchanges a `swan.login()` code for the user's openid and session_key.
    pub(super) async fn baidu_code2session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<Code2Session, GatewayError> {
        let url = api_url(&app.api_base, "/oauth/jscode2sessionkey");
        let pairs = [
            ("code", code),
            ("client_id", &app.appid),
            ("sk", app.secret.expose()),
        ];
        let request = || self.post_form(&url, &pairs);
        self.call("baidu_code2session", &app.api_base, request, interpret)
            .await
    }
}

/// Baidu's access_token answer, or its OAuth error.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    #[serde(default)]
    error_description: String,
}

/// getunionid's answer: `errno` 0 and `data.unionid`, or `errno` 1 and `errmsg`.
#[derive(Deserialize)]
struct UnionidAnswer {
    #[serde(default)]
    errno: i64,
    #[serde(default)]
    errmsg: String,
    data: Option<UnionidData>,
}

#[derive(Deserialize)]
struct UnionidData {
    #[serde(default)]
    unionid: String,
}

impl WeChatClient {
    /// Fetches a Baidu app's access_token (scope `smartapp_snsapi_base`).
    pub(super) async fn baidu_token(&self, app: &WeChatApp) -> Result<AccessToken, GatewayError> {
        let base = app.server_api_base();
        let url = api_url(base, "/oauth/2.0/token");
        let pairs = [
            ("grant_type", "client_credentials"),
            ("client_id", &app.appid),
            ("client_secret", app.secret.expose()),
            ("scope", "smartapp_snsapi_base"),
        ];
        let request = || self.post_form(&url, &pairs);
        self.call("baidu_token", base, request, |answer: TokenAnswer| {
            match (answer.error, answer.access_token, answer.expires_in) {
                (None, Some(token), Some(expires_in)) if !token.is_empty() => Ok(AccessToken {
                    token: Secret::new(token),
                    expires_in,
                }),
                (None, _, _) => Err(GatewayError::WeChatBadAnswer),
                (Some(error), _, _) => {
                    tracing::error!(error, description = %answer.error_description, "Baidu refused the gateway's access_token request (AppKey or AppSecret); an operator must act");
                    Err(GatewayError::WeChatConfigRejected(0))
                }
            }
        })
        .await
    }

    /// The unionid of the Baidu user `openid` (the same for every app of the developer).
    pub(crate) async fn baidu_unionid(
        &self,
        app: &WeChatApp,
        access_token: &Secret,
        openid: &str,
    ) -> Result<String, GatewayError> {
        let base = app.server_api_base();
        let mut url = api_url(base, "/rest/2.0/smartapp/getunionid");
        url.query_pairs_mut()
            .append_pair("access_token", access_token.expose());
        let pairs = [("openid", openid)];
        let request = || self.post_form(&url, &pairs);
        self.call("baidu_getunionid", base, request, |answer: UnionidAnswer| {
            match (answer.errno, answer.data) {
                (0, Some(data)) if !data.unionid.is_empty() => Ok(data.unionid),
                (0, _) => Err(GatewayError::WeChatBadAnswer),
                (errno, _) => {
                    tracing::error!(errno, errmsg = %answer.errmsg, "Baidu's getunionid refused; logins fail while [apps.NAME] fetch_unionid is on");
                    Err(GatewayError::WeChatOther(errno))
                }
            }
        })
        .await
    }
}

/// `invalid_grant` is a bad, expired or used code; every other OAuth error (`invalid_client`,
/// `invalid_request`, `unauthorized_client`, ...) needs an operator.
fn interpret(answer: Answer) -> Result<Code2Session, GatewayError> {
    match answer.error.as_deref() {
        None if !answer.openid.is_empty() && !answer.session_key.is_empty() => Ok(Code2Session {
            openid: answer.openid,
            session_key: Secret::new(answer.session_key),
            unionid: None,
        }),
        None => {
            tracing::warn!("a Baidu jscode2sessionkey answer lacks openid or session_key");
            Err(GatewayError::WeChatBadAnswer)
        }
        Some("invalid_grant") => {
            tracing::info!(description = %answer.error_description, "Baidu refused the login code");
            Err(GatewayError::WeChatInvalidCode)
        }
        Some(error) => {
            tracing::error!(error, description = %answer.error_description, "Baidu refused the gateway itself (AppKey, AppSecret or a parameter); an operator must act");
            Err(GatewayError::WeChatConfigRejected(0))
        }
    }
}

/// Why Baidu user data did not open; never carries key material or plaintext.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The session_key is not 24 bytes of base64: the login is not a Baidu one, or broken.
    BadKey,
    /// The iv or the data is not what Baidu sends (base64, 16 bytes, whole AES blocks).
    Malformed,
    /// The padding or the frame does not check out: another key (a newer login) made it.
    Undecryptable,
    /// The trailer is not this app's AppKey.
    WrongApp,
}

/// The JSON inside Baidu user data `data` (base64) with `iv`, for the app whose AppKey is
/// `app_key`.
pub(crate) fn decrypt(
    session_key: &Secret,
    data: &str,
    iv: &str,
    app_key: &str,
) -> Result<Vec<u8>, Refused> {
    let key: [u8; 24] = STANDARD
        .decode(session_key.expose())
        .ok()
        .and_then(|key| key.try_into().ok())
        .ok_or(Refused::BadKey)?;
    let iv: [u8; 16] = STANDARD
        .decode(iv.trim())
        .ok()
        .and_then(|iv| iv.try_into().ok())
        .ok_or(Refused::Malformed)?;
    let mut buffer = STANDARD
        .decode(data.trim())
        .map_err(|_| Refused::Malformed)?;
    if buffer.is_empty() || buffer.len() % 16 != 0 {
        return Err(Refused::Malformed);
    }
    let mut decryptor = Aes192CbcDec::new(&key.into(), &iv.into());
    for block in buffer.chunks_exact_mut(16) {
        decryptor.decrypt_block_mut(block.into());
    }
    let plaintext = super::pkcs7::strip(&buffer, 32).ok_or(Refused::Undecryptable)?;
    match super::push::unframe(plaintext, app_key) {
        Ok(message) => Ok(message.to_vec()),
        Err(super::push::Refused::WrongApp) => Err(Refused::WrongApp),
        Err(_) => Err(Refused::Undecryptable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Baidu's published vector: its 28 bytes of padding are what a 16-byte PKCS#7 check refuses.
    const APP_KEY: &str = "y2dTfnWfkx2OXttMEMWlGHoB1KzMogm7";
    const SESSION_KEY: &str = "1df09d0a1677dd72b8325aec59576e0c";
    const IV: &str = "1df09d0a1677dd72b8325Q==";
    const DATA: &str = "OpCoJgs7RrVgaMNDixIvaCIyV2SFDBNLivgkVqtzq2GC10egsn+PKmQ/+5q+chT8xzldLUog2haTItyIkKyvzvmXonBQLIMeq54axAu9c3KG8IhpFD6+ymHocmx07ZKi7eED3t0KyIxJgRNSDkFk5RV1ZP2mSWa7ZgCXXcAbP0RsiUcvhcJfrSwlpsm0E1YJzKpYy429xrEEGvK+gfL+Cw==";

    #[test]
    fn baidus_published_vector_decrypts() {
        let plaintext = decrypt(&Secret::new(SESSION_KEY), DATA, IV, APP_KEY).unwrap();
        assert_eq!(
            String::from_utf8(plaintext).unwrap(),
            r#"{"openid":"open_id","nickname":"baidu_user","headimgurl":"url of image","sex":1}"#
        );
    }

    #[test]
    fn another_app_key_or_session_key_is_refused() {
        let key = Secret::new(SESSION_KEY);
        assert_eq!(
            decrypt(&key, DATA, IV, "another-app-key"),
            Err(Refused::WrongApp)
        );
        let other = Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            decrypt(&other, DATA, IV, APP_KEY),
            Err(Refused::Undecryptable)
        );
        assert_eq!(
            decrypt(&Secret::new("tiihtNczf5v6AKRyjwEUhQ=="), DATA, IV, APP_KEY),
            Err(Refused::BadKey),
            "a 16-byte key is not Baidu's"
        );
        assert_eq!(
            decrypt(&key, "not base64!", IV, APP_KEY),
            Err(Refused::Malformed)
        );
        assert_eq!(
            decrypt(&key, DATA, "AAAA", APP_KEY),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn oauth_errors_are_classed() {
        let answer = |json: &str| interpret(serde_json::from_str(json).unwrap());
        assert_eq!(
            answer(r#"{"openid":"b1","session_key":"k"}"#)
                .unwrap()
                .openid,
            "b1"
        );
        let cases = [
            (
                r#"{"error":"invalid_grant","error_description":"used"}"#,
                GatewayError::WeChatInvalidCode,
            ),
            (
                r#"{"error":"invalid_client","error_description":"x"}"#,
                GatewayError::WeChatConfigRejected(0),
            ),
            (r#"{"openid":"b1"}"#, GatewayError::WeChatBadAnswer),
        ];
        for (json, expected) in cases {
            assert_eq!(answer(json).err(), Some(expected), "{json}");
        }
    }
}
