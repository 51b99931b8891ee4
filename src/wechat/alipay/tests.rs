//! Answers signed by an independent implementation: pyca/cryptography (RSASSA-PKCS1-v1_5, SHA-256)
//! with `tests/support/alipay/alipay_private.pem`, verified here with its public key.

use super::*;

const ALIPAY_PUBLIC: &str = include_str!("../../../tests/support/alipay/alipay_public.pem");
const APP_PRIVATE: &str = include_str!("../../../tests/support/alipay/app_private.pem");
const APP_PUBLIC: &str = include_str!("../../../tests/support/alipay/app_public.pem");

const SIGNED: &str = r#"{"alipay_system_oauth_token_response":{"user_id":"2088102150477652","open_id":"074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5","union_id":"092aSPrsmhTbexLh9zgoYb2uvZNC4D8izCpGKTem8QiIOQb","access_token":"20120823ac6ffaa4d2d84e7384bf983531473993","expires_in":3600,"refresh_token":"20120823ac6ffdsdf2d84e7384bf983531473993","re_expires_in":"3600"},"sign":"JapPFD3iq3t+EFRRXmJXExkkhumBl5KGnoAfFaSYrHnExjrism6OWCpvBKV+ncnbdvaf6mA1P2m0L+EJR1XZrKpji67HUp7RN9WlcTbvn5m/zdegWYa800dFuLdhxnaCC74yN0F9Es5RekwxugWuczq15Hyn7rKiGRa4HPSAShMO2G6n7xYn8dGqDaFPJtFxeBkBzhOVB1V8dFz7qy+u6E34wKSh7a4cBZOYhI+LOOMGD1Lj7UJ86L/z8xaxWNx6sGuIKiizTq16yPVSJEhLp4UHWljkkzpyj/UjLf3seQ/JmL0s3gcXBt6dmYtBHnVQLWT0rozqDiiffXbrIC+eaQ=="}"#;
const ESCAPED: &str = r#"{"alipay_system_oauth_token_response":{"user_id":"2088102150477652","open_id":"a\/b","union_id":""},"sign":"QXxT0JlOHJ14eOKosyyPNcTBkYjsAj8zuNwFlik0PtNWQccB/WPY8OuUvi3mOg7bjc63R0cCIkYVNmUG5nIsFOidC86qcosfbJDw8yTxEMA+ZiyPpJWyYx8l+kolPBsBFeHgcu3CPLqFVPhRvzwpK+AcxzHl0ufJ/Bu63Sch1n4bwQeJlle5cn8iEWBt2MP5rjC2fp/hYewWo9SzzP6RvYIFMaiB7F8QHvZX/AzoTNiFDH2+ea5uhstzlOezvcWznQGI7nPYr1RijQyAVtEParPTDq57nDrt4Rcy5zmzdYQ468XhCdpZZdHczfrnG1OIxAcTWD5B3OKnFPesGUC1Uw=="}"#;
const CODE_INVALID: &str = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"授权码code无效"},"sign":"c0OnHYzjKoNHZN9B19cUFUN2N1++ePg0JcIsk3x7f9dNS+Ey1Iu1i7oMB13Bbigx/FT1lZt4EUErbHTcoXYBQkWBAlggFVmJeo8Hj6ljHwfssMzp6DRzPcBcC9qUns+ntAs+JcwDEd74jEqsok8EOjoBHVrG3za4UoZnMFtO01HW8qJ5CLsE7pZXZnQk0pufkVncdVUoo/f0fO0Rj3o2Thf9BHQiEGPQUqInaQuHzJCxgpJlKEuiYKrEul3R8+zLe4yPLHoAFBJu3jS04SO8l2PN6VXGfJQH4YHIncOk+hWMYdfj9GnZrdDY/W6jlpP1/+1Bqj5qTh6SbKzOCBD/UQ=="}"#;
const BUSY_UNSIGNED: &str = r#"{"error_response":{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}}"#;

fn verifying() -> VerifyingKey<Sha256> {
    use rsa::pkcs8::DecodePublicKey;
    VerifyingKey::new(rsa::RsaPublicKey::from_public_key_pem(ALIPAY_PUBLIC).unwrap())
}

#[test]
fn a_signed_answer_is_believed_and_open_id_wins() {
    let login = interpret(SIGNED, &verifying()).unwrap();
    assert_eq!(
        login.openid,
        "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
    );
    assert_eq!(
        login.unionid.as_deref(),
        Some("092aSPrsmhTbexLh9zgoYb2uvZNC4D8izCpGKTem8QiIOQb")
    );
    let escaped = interpret(ESCAPED, &verifying()).unwrap();
    assert_eq!(
        escaped.openid, "a/b",
        "signed over the unescaped text, as Alipay's SDKs retry"
    );
}

#[test]
fn a_tampered_or_unsigned_answer_is_refused() {
    let tampered = SIGNED.replace("2088102150477652", "2088102150477653");
    assert_eq!(
        interpret(&tampered, &verifying()).err(),
        Some(GatewayError::WeChatBadAnswer)
    );
    let unsigned = SIGNED.split(",\"sign\"").next().unwrap().to_string() + "}";
    assert_eq!(
        interpret(&unsigned, &verifying()).err(),
        Some(GatewayError::WeChatBadAnswer)
    );
    let other_key = {
        use rsa::pkcs8::DecodePublicKey;
        VerifyingKey::new(rsa::RsaPublicKey::from_public_key_pem(APP_PUBLIC).unwrap())
    };
    assert_eq!(
        interpret(SIGNED, &other_key).err(),
        Some(GatewayError::WeChatBadAnswer)
    );
}

#[test]
fn errors_are_classed() {
    assert_eq!(
        interpret(CODE_INVALID, &verifying()).err(),
        Some(GatewayError::WeChatInvalidCode)
    );
    // An error without a signature is believed as far as its class goes (nothing is taken from it).
    assert_eq!(
        interpret(BUSY_UNSIGNED, &verifying()).err(),
        Some(GatewayError::WeChatBusy)
    );
    let forged = CODE_INVALID.replace("isv.code-invalid", "isv.invalid-app-id");
    assert_eq!(
        interpret(&forged, &verifying()).err(),
        Some(GatewayError::WeChatBadAnswer)
    );
    assert_eq!(
        interpret("{}", &verifying()).err(),
        Some(GatewayError::WeChatBadAnswer)
    );
}

#[test]
fn the_signing_string_is_sorted_without_sign_and_empty_values() {
    let mut params = BTreeMap::new();
    params.insert("method", "alipay.system.oauth.token".to_string());
    params.insert("app_id", "2021".to_string());
    params.insert("sign", "x".to_string());
    params.insert("app_auth_token", String::new());
    params.insert("code", "c1".to_string());
    assert_eq!(
        signing_string(&params),
        "app_id=2021&code=c1&method=alipay.system.oauth.token"
    );
    let signing = {
        use rsa::pkcs8::DecodePrivateKey;
        SigningKey::<Sha256>::new(rsa::RsaPrivateKey::from_pkcs8_pem(APP_PRIVATE).unwrap())
    };
    let app_verifying = {
        use rsa::pkcs8::DecodePublicKey;
        VerifyingKey::<Sha256>::new(rsa::RsaPublicKey::from_public_key_pem(APP_PUBLIC).unwrap())
    };
    assert!(verified(
        &app_verifying,
        "content",
        &sign(&signing, "content")
    ));
}

#[test]
fn the_timestamp_is_beijing_time() {
    let stamp = beijing_timestamp();
    assert_eq!(stamp.len(), 19, "{stamp}");
    assert_eq!(
        (&stamp[4..5], &stamp[10..11], &stamp[13..14]),
        ("-", " ", ":")
    );
}
