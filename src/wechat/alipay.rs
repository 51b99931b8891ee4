//! Alipay's login (`shared/platforms.md`, section 3): `alipay.system.oauth.token` on the
//! gateway `POST {api_base}/gateway.do`, RSA2-signed with the app's private key (every sent
//! parameter but `sign`, empty ones dropped, sorted, joined `k=v` with `&`, RSASSA-PKCS1-v1_5 over
//! SHA-256, base64), the common parameters in the query and `grant_type` + `code` in a form body.
//! The answer's `sign` is verified with Alipay's public key over the exact text of the answer's
//! node (never a re-serialization), before anything in it is believed: an answer that fails is
//! refused (502) and logged at error. Alipay has no session key.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::{Code2Session, WeChatClient};
use crate::config::{Secret, WeChatApp};
use crate::http::error::GatewayError;

/// The method of the login exchange (its answer node: `alipay_system_oauth_token_response`).
const METHOD: &str = "alipay.system.oauth.token";

/// One Alipay app's keys, loaded from `private_key_file` and `alipay_public_key_file`.
pub(crate) struct AlipayKeys {
    signing: SigningKey<Sha256>,
    verifying: VerifyingKey<Sha256>,
}

impl std::fmt::Debug for AlipayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlipayKeys(<redacted>)")
    }
}

impl AlipayKeys {
    /// Reads the app's RSA private key (PKCS#8 or PKCS#1 PEM) and Alipay's public key (SPKI or
    /// PKCS#1 PEM); the error says which file and why, never what it holds.
    pub(crate) fn load(
        private_key_file: &Path,
        public_key_file: &Path,
    ) -> Result<Self, (bool, String)> {
        use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
        use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
        };
        let private = read(private_key_file).map_err(|message| (true, message))?;
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(&private)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&private))
            .map_err(|_| {
                (
                    true,
                    format!("{}: not an RSA private key PEM", private_key_file.display()),
                )
            })?;
        let public = read(public_key_file).map_err(|message| (false, message))?;
        let public = rsa::RsaPublicKey::from_public_key_pem(&public)
            .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&public))
            .map_err(|_| {
                (
                    false,
                    format!("{}: not an RSA public key PEM", public_key_file.display()),
                )
            })?;
        Ok(AlipayKeys {
            signing: SigningKey::new(private),
            verifying: VerifyingKey::new(public),
        })
    }
}

/// The string Alipay signs and verifies: the non-empty parameters but `sign`, sorted by name,
/// joined as `name=value` with `&`, values as they are (not URL-encoded).
pub(crate) fn signing_string(params: &BTreeMap<&str, String>) -> String {
    params
        .iter()
        .filter(|(name, value)| **name != "sign" && !value.is_empty())
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// base64(RSASSA-PKCS1-v1_5 with SHA-256 of `content`) with `key`.
pub(crate) fn sign(key: &SigningKey<Sha256>, content: &str) -> String {
    STANDARD.encode(key.sign(content.as_bytes()).to_bytes())
}

/// Whether `signature` (base64) is Alipay's over `content`; Alipay's SDKs also try once with
/// `\/` unescaped.
pub(crate) fn verified(key: &VerifyingKey<Sha256>, content: &str, signature: &str) -> bool {
    let Some(signature) = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
    else {
        return false;
    };
    key.verify(content.as_bytes(), &signature).is_ok()
        || (content.contains("\\/")
            && key
                .verify(content.replace("\\/", "/").as_bytes(), &signature)
                .is_ok())
}

/// Now as Alipay's gateway wants it: `yyyy-MM-dd HH:mm:ss` in Beijing time (UTC+8).
fn beijing_timestamp() -> String {
    let seconds = crate::session::unix_now() + 8 * 3600;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

impl WeChatClient {
    /// The keys of the Alipay app `appid`.
    pub(crate) fn alipay_keys(&self, appid: &str) -> Option<&AlipayKeys> {
        self.alipay.get(appid)
    }

    /// Exchanges an `my.getAuthCode()` code for the user's open_id (or user_id).
    pub(super) async fn alipay_code2session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<Code2Session, GatewayError> {
        let keys = self
            .alipay
            .get(&app.appid)
            .ok_or(GatewayError::Internal("an Alipay app without its keys"))?;
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in [
            ("app_id", app.appid.as_str()),
            ("method", METHOD),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("version", "1.0"),
            ("grant_type", "authorization_code"),
            ("code", code),
        ] {
            params.insert(name, value.to_string());
        }
        params.insert("timestamp", beijing_timestamp());
        let signature = sign(&keys.signing, &signing_string(&params));
        let mut url = super::api_url(&app.api_base, "/gateway.do");
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in &params {
                if !matches!(*name, "grant_type" | "code") {
                    query.append_pair(name, value);
                }
            }
            query.append_pair("sign", &signature);
        }
        let pairs = [("grant_type", "authorization_code"), ("code", code)];
        let request = || self.post_form(&url, &pairs);
        let verifying = &keys.verifying;
        self.call(
            "alipay_oauth_token",
            &app.api_base,
            request,
            |answer: Box<RawValue>| interpret(answer.get(), verifying),
        )
        .await
    }
}

/// The answer's envelope, its nodes kept as the exact text that was signed.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "alipay_system_oauth_token_response")]
    response: Option<&'a RawValue>,
    #[serde(borrow)]
    error_response: Option<&'a RawValue>,
    sign: Option<String>,
}

/// A node's fields.
#[derive(Deserialize, Default)]
struct Node {
    code: Option<String>,
    #[serde(default)]
    sub_code: String,
    #[serde(default)]
    sub_msg: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    open_id: String,
    #[serde(default)]
    union_id: String,
}

/// Verifies, then classes the answer (`shared/platforms.md`'s table): `isv.code-invalid` is a bad
/// code; 20000 busy; anything else an operator's.
fn interpret(text: &str, key: &VerifyingKey<Sha256>) -> Result<Code2Session, GatewayError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|_| {
        tracing::warn!("an Alipay answer is not its JSON envelope");
        GatewayError::WeChatBadAnswer
    })?;
    let (node, signed) = match (envelope.response, envelope.error_response) {
        (Some(node), _) => (node, true),
        (None, Some(node)) => (node, envelope.sign.is_some()),
        (None, None) => {
            tracing::warn!("an Alipay answer has neither its response node nor error_response");
            return Err(GatewayError::WeChatBadAnswer);
        }
    };
    // A success must be signed; an error is checked when it carries a signature.
    if signed
        && !envelope
            .sign
            .as_deref()
            .is_some_and(|sign| verified(key, node.get(), sign))
    {
        tracing::error!(
            "an Alipay answer's signature does not verify with alipay_public_key_file; refused"
        );
        return Err(GatewayError::WeChatBadAnswer);
    }
    let fields: Node = serde_json::from_str(node.get()).unwrap_or_default();
    let succeeded = envelope.response.is_some()
        && fields.sub_code.is_empty()
        && fields.code.as_deref().is_none_or(|code| code == "10000");
    if succeeded {
        let openid = if fields.open_id.is_empty() {
            fields.user_id
        } else {
            fields.open_id
        };
        if openid.is_empty() {
            tracing::warn!("an Alipay token answer has neither open_id nor user_id");
            return Err(GatewayError::WeChatBadAnswer);
        }
        return Ok(Code2Session {
            openid,
            // Alipay has no session key: an empty one, which every decryption path refuses
            // before using it (decryption is not Alipay's).
            session_key: Secret::new(""),
            unionid: Some(fields.union_id).filter(|union_id| !union_id.is_empty()),
        });
    }
    let code = fields.code.unwrap_or_default();
    match (code.as_str(), fields.sub_code.as_str()) {
        (_, "isv.code-invalid") => {
            tracing::info!(sub_msg = %fields.sub_msg, "Alipay refused the auth code");
            Err(GatewayError::WeChatInvalidCode)
        }
        ("20000", _) => Err(GatewayError::WeChatBusy),
        (code, sub_code) => {
            tracing::error!(code, sub_code, sub_msg = %fields.sub_msg, "Alipay refused the gateway itself (app id, keys or a permission); an operator must act");
            Err(GatewayError::WeChatConfigRejected(
                code.parse().unwrap_or(0),
            ))
        }
    }
}

pub(crate) mod phone;

#[cfg(test)]
mod tests;
