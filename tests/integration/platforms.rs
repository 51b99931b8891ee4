//! Mini-programs of other platforms (`[apps.NAME] platform = ...`) against the mock speaking each
//! platform's API: a QQ and a Douyin login reach the upstream with `X-OpenId`, `X-UnionId` and
//! `X-Platform`; every Douyin error class maps as documented; WeChat-only endpoints refuse other
//! platforms' tokens; a WeChat-only config behaves as before, now with `X-Platform: wechat`.

use crate::common::{request, Harness, Response, Setup};

const QQ_APPID: &str = "1112223334";
const DOUYIN_APPID: &str = "tt0123456789abcdef";

async fn two_platforms() -> Harness {
    Harness::start_with(Setup {
        platform_apps: vec![
            ("qqshop", "qq", QQ_APPID, "qq-app-secret"),
            ("dyshop", "douyin", DOUYIN_APPID, "douyin-app-secret"),
        ],
        ..Setup::default()
    })
    .await
}

async fn login(gateway: &Harness, app: &str, body: serde_json::Value) -> Response {
    let path = format!("/login/{app}");
    let headers = [("Content-Type", "application/json")];
    request(
        gateway.addr,
        "POST",
        &path,
        &headers,
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn qq_and_douyin_logins_reach_the_upstream_with_their_platform() {
    let gateway = two_platforms().await;
    for (app, platform, code) in [("qqshop", "qq", "pat.1"), ("dyshop", "douyin", "pat.2")] {
        let answer = login(&gateway, app, serde_json::json!({ "code": code })).await;
        assert_eq!(answer.status, 200, "{app}: {}", answer.text());
        let json = answer.json();
        assert_eq!(json["platform"], platform, "{json}");
        assert_eq!(json["openid"], "oMock_pat");
        assert_eq!(json["unionid"], "uMock_pat");
        let token = json["token"].as_str().unwrap();
        // A client's own X-Platform never reaches the upstream.
        let forged = [("X-Platform", "wechat"), ("X_Platform", "wechat")];
        let proxied = gateway.get_with_token("/api/who", token, &forged).await;
        assert_eq!(proxied.status, 200);
        assert_eq!(proxied.upstream_header("x-openid"), ["oMock_pat"]);
        assert_eq!(proxied.upstream_header("x-unionid"), ["uMock_pat"]);
        assert_eq!(proxied.upstream_header("x-platform"), [platform], "{app}");
        // A forward-auth answer names the platform too.
        let checked = gateway.get_with_token("/auth/api/who", token, &[]).await;
        assert_eq!(checked.status, 200, "{}", checked.text());
        assert_eq!(checked.header("x-platform"), Some(platform));
    }
    let wechat = gateway.login("wes").await;
    let proxied = gateway.get_with_token("/api/who", &wechat, &[]).await;
    assert_eq!(proxied.upstream_header("x-platform"), ["wechat"]);
    let public = gateway.get("/public/x", &[("X-Platform", "qq")]).await;
    assert!(public.upstream_header("x-platform").is_empty());
}

#[tokio::test]
async fn douyin_errors_map_to_the_documented_classes() {
    let gateway = two_platforms().await;
    let code = |code: &str| serde_json::json!({ "code": code });
    let calls = gateway.wechat.calls();
    let busy = login(&gateway, "dyshop", code("mock-busy")).await;
    assert_eq!(
        (busy.status, busy.error_code().as_str()),
        (502, "wechat_busy")
    );
    assert_eq!(gateway.wechat.calls(), calls + 2, "retried once");
    let cases = [
        ("mock-invalid", 401, "invalid_code"),
        ("mock-garbage", 502, "wechat_bad_answer"),
    ];
    for (value, status, error) in cases {
        let refused = login(&gateway, "dyshop", code(value)).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (status, error),
            "{value}"
        );
    }
    assert_eq!(login(&gateway, "dyshop", code("dan.1")).await.status, 200);
    let reused = login(&gateway, "dyshop", code("dan.1")).await;
    assert_eq!(
        (reused.status, reused.error_code().as_str()),
        (401, "invalid_code")
    );
    let anonymous = login(
        &gateway,
        "dyshop",
        serde_json::json!({ "anonymous_code": "a1" }),
    )
    .await;
    assert_eq!(anonymous.status, 400);
    assert!(
        anonymous.text().contains("anonymous"),
        "{}",
        anonymous.text()
    );
}

#[tokio::test]
async fn wechat_only_endpoints_refuse_other_platforms() {
    let gateway = two_platforms().await;
    let answer = login(&gateway, "dyshop", serde_json::json!({ "code": "ida.1" })).await;
    let token = answer.json()["token"].as_str().unwrap().to_string();
    for path in ["/wx/phone", "/wx/session/check"] {
        let body = serde_json::json!({ "code": "c" });
        let refused = gateway.post_json_with_token(path, &token, &body).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (400, "platform_not_supported"),
            "{path}"
        );
    }
    assert_eq!(gateway.wechat.stable_token_calls(), 0);
}

/// Douyin's user data is WeChat's scheme, its watermark documented for phone numbers only: data
/// without one decrypts for a Douyin login; another app's watermark is still refused. The data is
/// encrypted by pyca/cryptography with the mock's sample session_key.
#[tokio::test]
async fn douyin_user_data_decrypts_with_or_without_a_watermark() {
    if !crate::common::external::python_modules("cryptography", "pip install cryptography") {
        return;
    }
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key = base64.b64decode("tiihtNczf5v6AKRyjwEUhQ==")
iv = bytes(range(16))
out = {}
for name, data in [("plain", {"nickName": "dora"}), ("other", {"nickName": "x", "watermark": {"appid": "tt-other", "timestamp": 1}})]:
    padder = padding.PKCS7(128).padder()
    text = padder.update(json.dumps(data).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    out[name] = base64.b64encode(encryptor.update(text) + encryptor.finalize()).decode()
out["iv"] = base64.b64encode(iv).decode()
print(json.dumps(out))
"#;
    let vectors = crate::common::external::python_json(script);

    let gateway = two_platforms().await;
    let answer = login(
        &gateway,
        "dyshop",
        serde_json::json!({ "code": "samplekey.dy" }),
    )
    .await;
    let token = answer.json()["token"].as_str().unwrap().to_string();
    let decrypt = |data: &str| {
        let body = serde_json::json!({ "encryptedData": data, "iv": vectors["iv"] });
        let (gateway, token) = (&gateway, &token);
        async move {
            gateway
                .post_json_with_token("/wx/decrypt", token, &body)
                .await
        }
    };
    let plain = decrypt(vectors["plain"].as_str().unwrap()).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["nickName"], "dora");
    let other = decrypt(vectors["other"].as_str().unwrap()).await;
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (400, "decrypt_failed")
    );
    assert!(
        other.text().contains("another mini-program"),
        "{}",
        other.text()
    );
    // The same data for a WeChat login: WeChat's always carries a watermark, so none is refused.
    let wechat = gateway.login("samplekey.wx").await;
    let body = serde_json::json!({ "encryptedData": vectors["plain"], "iv": vectors["iv"] });
    let refused = gateway
        .post_json_with_token("/wx/decrypt", &wechat, &body)
        .await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "decrypt_failed")
    );
    assert!(
        refused.text().contains("no watermark"),
        "{}",
        refused.text()
    );
}

/// Baidu's published AppKey: with the mock's `samplekey` users (who get the vector's session_key)
/// Baidu's own decryption vector can go through the gateway.
const BAIDU_APP_KEY: &str = "y2dTfnWfkx2OXttMEMWlGHoB1KzMogm7";
const BAIDU_IV: &str = "1df09d0a1677dd72b8325Q==";
const BAIDU_DATA: &str = "OpCoJgs7RrVgaMNDixIvaCIyV2SFDBNLivgkVqtzq2GC10egsn+PKmQ/+5q+chT8xzldLUog2haTItyIkKyvzvmXonBQLIMeq54axAu9c3KG8IhpFD6+ymHocmx07ZKi7eED3t0KyIxJgRNSDkFk5RV1ZP2mSWa7ZgCXXcAbP0RsiUcvhcJfrSwlpsm0E1YJzKpYy429xrEEGvK+gfL+Cw==";

async fn form_platforms() -> Harness {
    Harness::start_with(Setup {
        platform_apps: vec![
            ("bdshop", "baidu", BAIDU_APP_KEY, "baidu-app-secret"),
            ("ksshop", "kuaishou", "ks0123456789", "kuaishou-app-secret"),
        ],
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn baidu_and_kuaishou_logins_reach_the_upstream_with_their_platform() {
    let gateway = form_platforms().await;
    for (app, platform, code) in [
        ("bdshop", "baidu", "bea.1"),
        ("ksshop", "kuaishou", "kim.1"),
    ] {
        let answer = login(&gateway, app, serde_json::json!({ "code": code })).await;
        assert_eq!(answer.status, 200, "{app}: {}", answer.text());
        let json = answer.json();
        assert_eq!(json["platform"], platform);
        assert!(json.get("unionid").is_none(), "{json}");
        let token = json["token"].as_str().unwrap();
        let proxied = gateway.get_with_token("/api/who", token, &[]).await;
        assert_eq!(proxied.upstream_header("x-platform"), [platform]);
        assert!(proxied.upstream_header("x-unionid").is_empty());
        assert_eq!(proxied.upstream_header("x-openid").len(), 1);
        // A used code and a bad one: log in again.
        for again in [code, "mock-invalid"] {
            let refused = login(&gateway, app, serde_json::json!({ "code": again })).await;
            assert_eq!(
                (refused.status, refused.error_code().as_str()),
                (401, "invalid_code"),
                "{app} {again}: {}",
                refused.text()
            );
        }
    }
}

/// Baidu's user data: AES-192-CBC, 32-byte-block padding, the AppKey as trailer. Its published
/// vector decrypts through the gateway; data sealed for another AppKey (made by pyca/cryptography)
/// is refused.
#[tokio::test]
async fn baidu_user_data_decrypts_with_its_own_scheme() {
    let gateway = form_platforms().await;
    let answer = login(
        &gateway,
        "bdshop",
        serde_json::json!({ "code": "samplekey.bd" }),
    )
    .await;
    let token = answer.json()["token"].as_str().unwrap().to_string();
    let post = |body: serde_json::Value| {
        let (gateway, token) = (&gateway, &token);
        async move {
            gateway
                .post_json_with_token("/wx/decrypt", token, &body)
                .await
        }
    };
    let opened = post(serde_json::json!({ "data": BAIDU_DATA, "iv": BAIDU_IV })).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    assert_eq!(opened.json()["nickname"], "baidu_user");
    let as_wechat = post(serde_json::json!({ "encryptedData": BAIDU_DATA, "iv": BAIDU_IV })).await;
    assert_eq!(as_wechat.status, 200, "encryptedData is accepted too");
    let signed = post(serde_json::json!({
        "data": BAIDU_DATA, "iv": BAIDU_IV, "rawData": "{}", "signature": "00",
    }))
    .await;
    assert_eq!(signed.error_code(), "invalid_request");

    if !crate::common::external::python_modules("cryptography", "pip install cryptography") {
        return;
    }
    let script = r#"
import base64, json, os
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key = base64.b64decode("1df09d0a1677dd72b8325aec59576e0c")
iv = bytes(range(16))
text = json.dumps({"openid": "x"}).encode()
frame = os.urandom(16) + len(text).to_bytes(4, "big") + text + b"another-app-key"
pad = 32 - len(frame) % 32
frame += bytes([pad]) * pad
encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
print(json.dumps({"data": base64.b64encode(encryptor.update(frame) + encryptor.finalize()).decode(), "iv": base64.b64encode(iv).decode()}))
"#;
    let foreign = crate::common::external::python_json(script);
    let refused = post(foreign).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "decrypt_failed")
    );
    assert!(refused.text().contains("AppKey"), "{}", refused.text());
}

/// QQ's user data is WeChat's scheme, watermark required: data made by pyca/cryptography for the
/// QQ app decrypts; the same without a watermark is refused.
#[tokio::test]
async fn qq_user_data_decrypts_as_wechats() {
    if !crate::common::external::python_modules("cryptography", "pip install cryptography") {
        return;
    }
    let script = format!(
        r#"
import base64, json
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key = base64.b64decode("tiihtNczf5v6AKRyjwEUhQ==")
iv = bytes(range(16))
out = {{"iv": base64.b64encode(iv).decode()}}
for name, data in [("own", {{"nickName": "q", "watermark": {{"appid": "{QQ_APPID}", "timestamp": 1}}}}), ("bare", {{"nickName": "q"}})]:
    padder = padding.PKCS7(128).padder()
    text = padder.update(json.dumps(data).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    out[name] = base64.b64encode(encryptor.update(text) + encryptor.finalize()).decode()
print(json.dumps(out))
"#
    );
    let vectors = crate::common::external::python_json(&script);
    let gateway = two_platforms().await;
    let answer = login(
        &gateway,
        "qqshop",
        serde_json::json!({ "code": "samplekey.qq" }),
    )
    .await;
    let token = answer.json()["token"].as_str().unwrap().to_string();
    let post = |name: &str| {
        let body = serde_json::json!({ "encryptedData": vectors[name], "iv": vectors["iv"] });
        let (gateway, token) = (&gateway, &token);
        async move {
            gateway
                .post_json_with_token("/wx/decrypt", token, &body)
                .await
        }
    };
    let own = post("own").await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["watermark"]["appid"], QQ_APPID);
    let bare = post("bare").await;
    assert_eq!(
        (bare.status, bare.error_code().as_str()),
        (400, "decrypt_failed")
    );
}

const ALIPAY_APPID: &str = "2021000000000001";

/// Alipay: the login request is RSA2-signed (checked by pyca/cryptography with the app's public
/// key, over the string Alipay's documentation defines), the answer's signature verified with
/// Alipay's public key; a tampered answer is refused; errors classed; no session key, so no
/// decryption.
#[tokio::test]
async fn alipay_logins_are_signed_and_their_answers_verified() {
    let gateway = Harness::start_with(Setup {
        platform_apps: vec![("alishop", "alipay", ALIPAY_APPID, "")],
        ..Setup::default()
    })
    .await;
    let answer = login(&gateway, "alishop", serde_json::json!({ "code": "ali.1" })).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(
        (json["platform"].as_str(), json["openid"].as_str()),
        (Some("alipay"), Some("oMock_ali"))
    );
    assert_eq!(json["unionid"], "uMock_ali");
    let token = json["token"].as_str().unwrap().to_string();
    let proxied = gateway.get_with_token("/api/who", &token, &[]).await;
    assert_eq!(proxied.upstream_header("x-platform"), ["alipay"]);
    assert_eq!(proxied.upstream_header("x-openid"), ["oMock_ali"]);

    let cases = [
        ("ali.1", 401, "invalid_code"),
        ("mock-invalid", 401, "invalid_code"),
        ("mock-tampered", 502, "wechat_bad_answer"),
    ];
    for (code, status, error) in cases {
        let refused = login(&gateway, "alishop", serde_json::json!({ "code": code })).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (status, error),
            "{code}"
        );
    }
    let calls = gateway.wechat.calls();
    let busy = login(
        &gateway,
        "alishop",
        serde_json::json!({ "code": "mock-busy" }),
    )
    .await;
    assert_eq!(busy.error_code(), "wechat_busy");
    assert_eq!(gateway.wechat.calls(), calls + 2, "retried once");
    let decrypt = serde_json::json!({ "encryptedData": "AAAA", "iv": "AAAA" });
    let refused = gateway
        .post_json_with_token("/wx/decrypt", &token, &decrypt)
        .await;
    assert_eq!(refused.error_code(), "platform_not_supported");

    if !crate::common::external::python_modules("cryptography", "pip install cryptography") {
        return;
    }
    // Every request the gateway sent, its signature checked by an independent implementation.
    let requests: Vec<serde_json::Value> = gateway
        .wechat
        .alipay_requests()
        .iter()
        .map(|request| serde_json::json!({ "query": request.query, "body": request.body }))
        .collect();
    let script = format!(
        r#"
import base64, json, urllib.parse
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_public_key(open("{dir}/tests/support/alipay/app_public.pem", "rb").read())
verdicts = []
for request in json.loads({requests:?}):
    params = dict(urllib.parse.parse_qsl(request["query"]) + urllib.parse.parse_qsl(request["body"]))
    signature = base64.b64decode(params.pop("sign"))
    content = "&".join(f"{{k}}={{v}}" for k, v in sorted(params.items()) if v)
    try:
        key.verify(signature, content.encode(), padding.PKCS1v15(), hashes.SHA256())
        verdicts.append(params["sign_type"] == "RSA2" and params["method"] == "alipay.system.oauth.token")
    except Exception:
        verdicts.append(False)
print(json.dumps(verdicts))
"#,
        dir = env!("CARGO_MANIFEST_DIR"),
        requests = serde_json::Value::Array(requests).to_string(),
    );
    let verdicts = crate::common::external::python_json(&script);
    let verdicts = verdicts.as_array().unwrap();
    assert!(verdicts.len() >= 5, "{verdicts:?}");
    assert!(
        verdicts.iter().all(|verdict| verdict == true),
        "{verdicts:?}"
    );
}

/// Alipay's phone numbers: `my.getPhoneNumber`'s answer, made by pyca/cryptography as Alipay
/// does (AES-128-CBC with a zero IV, the ciphertext signed with Alipay's key inside quotes), is
/// verified first and then decrypted; a forged signature, another key's ciphertext and Alipay's
/// own refusals are each answered as such.
#[tokio::test]
async fn alipay_phone_numbers_are_verified_then_decrypted() {
    if !crate::common::external::python_modules("cryptography", "pip install cryptography") {
        return;
    }
    let script = format!(
        r#"
import base64, json, os
from cryptography.hazmat.primitives import hashes, padding as sym, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
alipay = serialization.load_pem_private_key(open("{dir}/tests/support/alipay/alipay_private.pem", "rb").read(), None)
def answer(content, key=base64.b64decode("{aes}")):
    padder = sym.PKCS7(128).padder()
    text = padder.update(json.dumps(content).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    response = base64.b64encode(encryptor.update(text) + encryptor.finalize()).decode()
    sign = base64.b64encode(alipay.sign(('"' + response + '"').encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return {{"response": response, "sign": sign, "sign_type": "RSA2", "encrypt_type": "AES", "charset": "UTF-8"}}
ok = answer({{"code": "10000", "msg": "Success", "mobile": "15976719050"}})
forged = dict(ok, sign=answer({{"code": "10000", "msg": "Success", "mobile": "1"}})["sign"])
print(json.dumps({{
    "ok": ok,
    "forged": forged,
    "other_key": answer({{"code": "10000", "msg": "Success", "mobile": "1"}}, os.urandom(16)),
    "not_authorized": answer({{"code": "40003", "msg": "Insufficient Conditions", "subCode": "isv.invalid-auth-relations", "subMsg": "x"}}),
    "no_key_set": answer({{"code": "40002", "msg": "Invalid Arguments", "subCode": "isv.invalid-encrypt", "subMsg": "x"}}),
}}))
"#,
        dir = env!("CARGO_MANIFEST_DIR"),
        aes = crate::common::ALIPAY_AES_KEY,
    );
    let answers = crate::common::external::python_json(&script);
    let gateway = Harness::start_with(Setup {
        platform_apps: vec![("alishop", "alipay", ALIPAY_APPID, "")],
        ..Setup::default()
    })
    .await;
    let login = login(&gateway, "alishop", serde_json::json!({ "code": "pia.1" })).await;
    let token = login.json()["token"].as_str().unwrap().to_string();
    let phone = |case: &str| {
        let body = answers[case].clone();
        let (gateway, token) = (&gateway, &token);
        async move {
            gateway
                .post_json_with_token("/wx/phone", token, &body)
                .await
        }
    };
    let ok = phone("ok").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["phone_info"]["phoneNumber"], "15976719050");
    let cases = [
        ("forged", 400, "decrypt_failed"),
        ("other_key", 400, "decrypt_failed"),
        ("not_authorized", 400, "invalid_phone_code"),
        ("no_key_set", 502, "wechat_config_rejected"),
    ];
    for (case, status, error) in cases {
        let refused = phone(case).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (status, error),
            "{case}: {}",
            refused.text()
        );
    }
}
