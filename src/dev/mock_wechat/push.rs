//! The mock as WeChat's message push: a message signed and, in safe and compatible modes,
//! encrypted exactly as WeChat's documentation and sample code do it (`wechat::push` has the
//! rules), POSTed to a gateway's push URL. `wxgate mock-wechat push --to URL ...` uses it.

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::config::{PushFormat, PushMode};
use crate::wechat::push::{signature, PAD_BLOCK};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// One push, as WeChat would send it to an app's push URL.
#[derive(Clone, Debug)]
pub struct MockPush {
    /// The push URL, e.g. `http://127.0.0.1:8080/wx/push`.
    pub to: String,
    /// The console's Token.
    pub token: String,
    /// The console's EncodingAESKey (43 characters); unused in plain mode.
    pub encoding_aes_key: String,
    /// The app's appid, sealed into encrypted messages.
    pub appid: String,
    /// How the message is protected.
    pub mode: PushMode,
    /// How the message is written.
    pub format: PushFormat,
    /// The message itself, in `format`; empty: a text message with a fresh MsgId.
    pub message: String,
}

impl MockPush {
    /// The query and body WeChat would send for this push at `timestamp`.
    pub fn request(&self, timestamp: u64) -> Result<(String, String), String> {
        let timestamp = timestamp.to_string();
        let nonce = format!("{:08x}", random_u32()?);
        let message = if self.message.is_empty() {
            self.text_message(&timestamp)?
        } else {
            self.message.clone()
        };
        let plain_signature = signature(&[&self.token, &timestamp, &nonce]);
        let mut query = format!(
            "signature={plain_signature}&timestamp={timestamp}&nonce={nonce}&openid=oMock_pusher"
        );
        if self.mode == PushMode::Plain {
            return Ok((query, message));
        }
        let encrypted = encrypt(&self.encoding_aes_key, &message, &self.appid)?;
        let msg_signature = signature(&[&self.token, &timestamp, &nonce, &encrypted]);
        query.push_str(&format!("&encrypt_type=aes&msg_signature={msg_signature}"));
        let body = match (self.format, self.mode) {
            (PushFormat::Json, PushMode::Compatible) => {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&message)
                        .map_err(|_| "the message is not a JSON object")?;
                object.insert("Encrypt".into(), encrypted.into());
                serde_json::Value::Object(object).to_string()
            }
            (PushFormat::Json, _) => {
                serde_json::json!({ "ToUserName": "gh_mock", "Encrypt": encrypted }).to_string()
            }
            (PushFormat::Xml, PushMode::Compatible) => {
                let inner = message
                    .trim()
                    .strip_prefix("<xml>")
                    .and_then(|rest| rest.strip_suffix("</xml>"))
                    .ok_or("the message is not <xml>...</xml>")?;
                format!("<xml>{inner}<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
            }
            (PushFormat::Xml, _) => format!(
                "<xml><ToUserName><![CDATA[gh_mock]]></ToUserName>\
                 <Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
            ),
        };
        Ok((query, body))
    }

    /// Sends the push now: WeChat's status and answer (`success` when the gateway took it).
    pub async fn send(&self) -> Result<(u16, String), String> {
        let (query, body) = self.request(crate::session::unix_now())?;
        let separator = if self.to.contains('?') { '&' } else { '?' };
        let content_type = match self.format {
            PushFormat::Json => "application/json",
            PushFormat::Xml => "text/xml",
        };
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
        let answer = client
            .post(format!("{}{separator}{query}", self.to))
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|error| format!("cannot push to {}: {}", self.to, error.without_url()))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// A user's text message, as WeChat pushes one.
    fn text_message(&self, timestamp: &str) -> Result<String, String> {
        let msg_id = u64::from(random_u32()?) + 1_000_000;
        Ok(match self.format {
            PushFormat::Json => serde_json::json!({
                "ToUserName": "gh_mock", "FromUserName": "oMock_pusher",
                "CreateTime": timestamp.parse::<u64>().unwrap_or_default(),
                "MsgType": "text", "Content": "hello from the mock", "MsgId": msg_id,
            })
            .to_string(),
            PushFormat::Xml => format!(
                "<xml><ToUserName><![CDATA[gh_mock]]></ToUserName>\
                 <FromUserName><![CDATA[oMock_pusher]]></FromUserName>\
                 <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                 <Content><![CDATA[hello from the mock]]></Content><MsgId>{msg_id}</MsgId></xml>"
            ),
        })
    }
}

/// base64(AES-256-CBC(16 random bytes + length + message + appid, PKCS#7 to 32-byte blocks)).
fn encrypt(encoding_aes_key: &str, message: &str, appid: &str) -> Result<String, String> {
    let key = crate::config::aes_key_bytes(encoding_aes_key)
        .ok_or("the EncodingAESKey must be 43 base64 characters")?;
    let mut frame = vec![0u8; 16];
    getrandom::fill(&mut frame).map_err(|_| "no randomness")?;
    let length = u32::try_from(message.len()).map_err(|_| "the message is too long")?;
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(appid.as_bytes());
    let pad = PAD_BLOCK - frame.len() % PAD_BLOCK;
    let pad_byte = u8::try_from(pad).map_err(|_| "padding")?;
    frame.extend(std::iter::repeat_n(pad_byte, pad));
    let iv: [u8; 16] = key[..16].try_into().map_err(|_| "key")?;
    let mut encryptor = Aes256CbcEnc::new(&key.into(), &iv.into());
    for block in frame.chunks_exact_mut(16) {
        encryptor.encrypt_block_mut(block.into());
    }
    Ok(STANDARD.encode(frame))
}

fn random_u32() -> Result<u32, String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|_| "no randomness")?;
    Ok(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn what_the_mock_encrypts_the_gateway_decrypts() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let encrypted = encrypt(key, "<xml>hi</xml>", "wx1").unwrap();
        let aes_key = Secret::new(STANDARD.encode(crate::config::aes_key_bytes(key).unwrap()));
        let message = crate::wechat::push::decrypt(&aes_key, &encrypted, "wx1").unwrap();
        assert_eq!(message, b"<xml>hi</xml>");
        assert!(crate::wechat::push::decrypt(&aes_key, &encrypted, "wx2").is_err());
    }
}
