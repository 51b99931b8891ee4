//! The mock's other server APIs behind an access_token, the ones a backend calls through the
//! gateway's `[wechat_api]` listener: `cgi-bin/message/subscribe/send`, `wxa/msg_sec_check`,
//! `wxa/getwxacodeunlimit` (an image on success, JSON on error, as WeChat answers; content
//! `mock-leak-token` in `wxa/msg_sec_check` answers the access_token back, which a gateway must
//! never pass on) and
//! `cgi-bin/get_api_domain_ip` (GET). Each call is recorded as received.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};

use super::{error, reply, MockWeChat};
use crate::http::error::{full_body, Body};

/// Every path the mock serves, with the method WeChat requires for it (43002 for another).
const PATHS: [(&str, Method); 15] = [
    ("/gateway.do", Method::POST),
    ("/sns/jscode2session", Method::GET),
    ("/api/apps/v2/jscode2session", Method::POST),
    ("/oauth/jscode2sessionkey", Method::POST),
    ("/oauth2/mp/code2session", Method::POST),
    ("/cgi-bin/stable_token", Method::POST),
    ("/api/getToken", Method::GET),
    ("/oauth/2.0/token", Method::POST),
    ("/rest/2.0/smartapp/getunionid", Method::POST),
    ("/wxa/business/getuserphonenumber", Method::POST),
    ("/wxa/checksession", Method::GET),
    ("/cgi-bin/message/subscribe/send", Method::POST),
    ("/wxa/msg_sec_check", Method::POST),
    ("/wxa/getwxacodeunlimit", Method::POST),
    ("/cgi-bin/get_api_domain_ip", Method::GET),
];

/// The method the mock requires for `path`; `None` for a path it does not serve.
pub(super) fn method_of(path: &str) -> Option<Method> {
    PATHS
        .iter()
        .find(|(known, _)| *known == path)
        .map(|(_, method)| method.clone())
}

/// One call to an API of this module, as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// The path, e.g. `/wxa/msg_sec_check`.
    pub path: String,
    /// The query as received, `access_token` included.
    pub query: String,
    /// The request's Content-Type, if any.
    pub content_type: Option<String>,
    /// The request body, byte for byte.
    pub body: Vec<u8>,
}

impl MockWeChat {
    /// The calls received by the APIs of `api.rs`, oldest first.
    pub fn api_calls(&self) -> Vec<RecordedCall> {
        self.inner
            .api_calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }

    /// The picture `wxa/getwxacodeunlimit` answers for `scene`: a PNG signature, then every byte
    /// value, then the scene, so that a proxy that is not byte-exact shows.
    pub fn mock_wxacode(scene: &str) -> Vec<u8> {
        let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
        image.extend(0..=255u8);
        image.extend_from_slice(scene.as_bytes());
        image
    }

    /// Answers an API of this module, for a caller whose access_token is current.
    pub(super) fn api(
        &self,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> http::Response<Body> {
        if let Ok(mut calls) = self.inner.api_calls.lock() {
            calls.push(RecordedCall {
                path: path.to_string(),
                query: query.to_string(),
                content_type: headers
                    .get(CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string),
                body: body.to_vec(),
            });
        }
        if path == "/cgi-bin/get_api_domain_ip" {
            let answer = serde_json::json!({ "ip_list": ["101.226.103.0", "101.226.62.0"] });
            return reply(StatusCode::OK, answer.to_string());
        }
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return error(47001, "data format error");
        };
        let field = |name: &str| request[name].as_str().unwrap_or_default().to_string();
        match path {
            "/cgi-bin/message/subscribe/send" => {
                if field("touser").is_empty() || field("template_id").is_empty() {
                    return error(47003, "argument invalid! data.touser or template_id empty");
                }
                let msgid = self.api_calls().len();
                let answer = serde_json::json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid });
                reply(StatusCode::OK, answer.to_string())
            }
            "/wxa/msg_sec_check" => {
                if field("content").is_empty() || field("openid").is_empty() {
                    return error(47001, "data format error");
                }
                let (suggest, label) = if field("content").contains("mock-risky") {
                    ("risky", 20001)
                } else {
                    ("pass", 100)
                };
                // `mock-leak-token` stands for an API that would hand the token back: its
                // trace_id is the caller's access_token.
                let trace_id = if field("content").contains("mock-leak-token") {
                    super::query_param(query, "access_token")
                } else {
                    format!("mock-trace-{}", self.api_calls().len())
                };
                let answer = serde_json::json!({
                    "errcode": 0,
                    "errmsg": "ok",
                    "result": { "suggest": suggest, "label": label },
                    "detail": [{ "strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label }],
                    "trace_id": trace_id
                });
                reply(StatusCode::OK, answer.to_string())
            }
            _ => {
                let scene = field("scene");
                if scene.is_empty() || scene.len() > 32 {
                    return error(40169, "invalid length for scene");
                }
                let mut response = http::Response::new(full_body(Self::mock_wxacode(&scene)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
                response
            }
        }
    }
}
