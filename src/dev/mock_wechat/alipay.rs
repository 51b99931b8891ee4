//! The mock as Alipay's gateway for `alipay.system.oauth.token` (`POST /gateway.do`): it verifies
//! the request's RSA2 signature with the app's public key, and signs its answers with its own
//! (Alipay's) private key, over the exact node text, as Alipay does. Codes: any code logs its user
//! in once (`open_id` `oMock_<user>`, `user_id` 2088...; then `isv.code-invalid`);
//! `mock-invalid` -> `isv.code-invalid`; `mock-busy` -> 20000 (unsigned); `mock-tampered` -> a
//! signed answer altered after signing (what a gateway must refuse); `mock-garbage` -> not JSON;
//! `mock-slow` -> the answer after 10 seconds.

use std::collections::BTreeMap;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use rsa::pkcs1v15::{SigningKey, VerifyingKey};
use sha2::Sha256;

use super::{reply, Login, MockWeChat};
use crate::http::error::Body;
use crate::wechat::alipay::{sign, signing_string, verified};

/// The keys of the one Alipay app the mock serves.
pub(super) struct MockAlipay {
    appid: String,
    app_public: VerifyingKey<Sha256>,
    alipay_private: SigningKey<Sha256>,
}

/// One request the mock's Alipay gateway received: its query and form body, as sent.
#[derive(Clone, Debug)]
pub struct AlipayRequest {
    /// The URL query (the common parameters and `sign`).
    pub query: String,
    /// The form body (`grant_type`, `code`).
    pub body: String,
}

impl MockWeChat {
    /// Serves the Alipay app `appid`: its requests must verify with `app_public_pem`, and the
    /// mock signs its answers with `alipay_private_pem` (PEM, PKCS#8).
    pub fn serve_alipay(
        &self,
        appid: &str,
        app_public_pem: &str,
        alipay_private_pem: &str,
    ) -> Result<(), String> {
        use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
        let app_public = rsa::RsaPublicKey::from_public_key_pem(app_public_pem)
            .map_err(|error| format!("the app's public key: {error}"))?;
        let alipay_private = rsa::RsaPrivateKey::from_pkcs8_pem(alipay_private_pem)
            .map_err(|error| format!("Alipay's private key: {error}"))?;
        let keys = MockAlipay {
            appid: appid.to_string(),
            app_public: VerifyingKey::new(app_public),
            alipay_private: SigningKey::new(alipay_private),
        };
        *self.inner.alipay.lock().map_err(|_| "poisoned")? = Some(keys);
        Ok(())
    }

    /// The requests its Alipay gateway received, oldest first.
    pub fn alipay_requests(&self) -> Vec<AlipayRequest> {
        self.inner
            .alipay_requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    /// Answers `POST /gateway.do`.
    pub(super) async fn alipay_gateway(&self, query: &str, body: &[u8]) -> http::Response<Body> {
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut requests) = self.inner.alipay_requests.lock() {
            requests.push(AlipayRequest {
                query: query.to_string(),
                body: String::from_utf8_lossy(body).into_owned(),
            });
        }
        if form_urlencoded::parse(body).any(|(name, value)| name == "code" && value == "mock-slow")
        {
            tokio::time::sleep(super::SLOW_ANSWER).await;
        }
        let Ok(keys) = self.inner.alipay.lock() else {
            return answer("{}".into());
        };
        let Some(keys) = keys.as_ref() else {
            return answer(r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"mock: no Alipay app"}}"#.into());
        };
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(body))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        for (name, value) in &pairs {
            params.insert(name.as_str(), value.clone());
        }
        let param = |name: &str| params.get(name).cloned().unwrap_or_default();
        let refuse = |code: &str, sub_code: &str, sub_msg: &str| {
            let node = serde_json::json!({
                "code": code, "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg,
            })
            .to_string();
            answer(signed(keys, "error_response", &node))
        };
        if param("app_id") != keys.appid {
            return refuse("40002", "isv.invalid-app-id", "无效的AppID参数");
        }
        if !verified(&keys.app_public, &signing_string(&params), &param("sign")) {
            return refuse("40002", "isv.invalid-signature", "验签出错");
        }
        if param("method") != "alipay.system.oauth.token"
            || param("grant_type") != "authorization_code"
        {
            return refuse("40002", "isv.invalid-parameter", "参数无效");
        }
        let code = param("code");
        match code.as_str() {
            "mock-invalid" => return refuse("40002", "isv.code-invalid", "授权码code无效"),
            "mock-busy" => {
                return answer(r#"{"error_response":{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}}"#.into())
            }
            "mock-garbage" => return answer(super::GARBAGE.into()),
            _ => {}
        }
        match self.log_in(&code) {
            Login::User(user) => {
                let mut node = serde_json::json!({
                    "user_id": "2088102150477652",
                    "open_id": user.openid,
                    "access_token": "mock-alipay-user-token",
                    "expires_in": 1_296_000,
                    "refresh_token": "mock-alipay-refresh-token",
                    "re_expires_in": 2_592_000,
                });
                if let Some(unionid) = user.unionid {
                    node["union_id"] = unionid.into();
                }
                let text = signed(
                    keys,
                    "alipay_system_oauth_token_response",
                    &node.to_string(),
                );
                if code == "mock-tampered" {
                    // Another user's id put in after Alipay signed.
                    return answer(text.replace(&user.openid, "oMock_mallory"));
                }
                answer(text)
            }
            Login::Reused | Login::Busy => refuse("40002", "isv.code-invalid", "授权码code无效"),
        }
    }
}

/// `{"<node_name>": <node>, "sign": "<Alipay's signature over node>"}`.
fn signed(keys: &MockAlipay, node_name: &str, node: &str) -> String {
    let signature = sign(&keys.alipay_private, node);
    format!(r#"{{"{node_name}":{node},"sign":"{signature}"}}"#)
}

fn answer(text: String) -> http::Response<Body> {
    let mut response = reply(StatusCode::OK, text);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    response
}
