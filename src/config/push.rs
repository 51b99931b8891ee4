//! `[wechat.push]` and `[wechat.apps.NAME.push]`: WeChat's message push (消息推送) for an app,
//! verified and decrypted by the gateway and POSTed to a backend as JSON.

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::{alphabet, Engine};
use serde::Deserialize;

use super::raw::Flex;
use super::validate::{millis, secs};
use super::{ConfigError, Secret};

/// A push section as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPush {
    pub(crate) path: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) encoding_aes_key: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) timeout_ms: Option<Flex<u64>>,
    pub(crate) max_age_secs: Option<Flex<u64>>,
}

/// How WeChat sends an app's pushed messages (the console's 消息加密方式).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// 安全模式: every message AES-encrypted in `Encrypt`, signed by `msg_signature`.
    Safe,
    /// 兼容模式: plaintext fields beside `Encrypt`; the gateway uses only the signed, encrypted part.
    Compatible,
    /// 明文模式: plaintext, signed by `signature` only.
    Plain,
}

/// The data format set in the WeChat console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    /// JSON bodies.
    Json,
    /// XML bodies, converted to JSON objects for the backend.
    Xml,
}

/// One app's message push.
#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    /// Where WeChat pushes: `/wx/push` for the default app, `/wx/push/NAME` for others.
    pub path: String,
    /// The console's Token, which signs every push.
    pub token: Secret,
    /// The console's EncodingAESKey, decoded (32 bytes); `None` in plain mode.
    pub aes_key: Option<Secret>,
    /// How messages are protected.
    pub mode: PushMode,
    /// How messages are written.
    pub format: PushFormat,
    /// The backend URL that receives each message as a JSON POST.
    pub upstream: String,
    /// How long the backend may take (WeChat waits 5 s).
    pub timeout: Duration,
    /// Pushes whose timestamp is further than this from now are refused (replays).
    pub max_age: Duration,
}

impl RawPush {
    /// Validates the push section of the app `name`, written at `key`.
    pub(super) fn validate(&self, key: &str, name: &str) -> Result<PushConfig, ConfigError> {
        let field = |suffix: &str| format!("{key}.{suffix}");
        let mode = match self.mode.as_deref().unwrap_or("safe") {
            "safe" => PushMode::Safe,
            "compatible" => PushMode::Compatible,
            "plain" => PushMode::Plain,
            other => {
                return Err(ConfigError::new(
                    field("mode"),
                    format!("{other:?} is not \"safe\", \"compatible\" or \"plain\""),
                ))
            }
        };
        let format = match self.format.as_deref().unwrap_or("json") {
            "json" => PushFormat::Json,
            "xml" => PushFormat::Xml,
            other => {
                return Err(ConfigError::new(
                    field("format"),
                    format!("{other:?} is not \"json\" or \"xml\""),
                ))
            }
        };
        let token = super::validate::required(&field("token"), &self.token)?;
        let aes_key = match (&self.encoding_aes_key, mode) {
            (Some(key), _) => Some(decode_aes_key(key).ok_or_else(|| {
                ConfigError::new(
                    field("encoding_aes_key"),
                    "must be the console's 43-character EncodingAESKey",
                )
            })?),
            (None, PushMode::Plain) => None,
            (None, _) => {
                return Err(ConfigError::new(
                    field("encoding_aes_key"),
                    "is required unless mode = \"plain\"",
                ))
            }
        };
        let upstream = super::validate::required(&field("upstream"), &self.upstream)?;
        let parsed: http::Uri = upstream
            .parse()
            .map_err(|_| ConfigError::new(field("upstream"), "is not a URL"))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(ConfigError::new(
                field("upstream"),
                "must be an http:// or https:// URL",
            ));
        }
        let default_path = match name {
            "default" => "/wx/push".to_string(),
            name => format!("/wx/push/{name}"),
        };
        let path = self.path.clone().unwrap_or(default_path);
        if !path.starts_with('/')
            || crate::http::path::normalize(&path).ok().as_deref() != Some(path.as_str())
        {
            return Err(ConfigError::new(
                field("path"),
                "must be a normalized path starting with /",
            ));
        }
        Ok(PushConfig {
            path,
            token: Secret::new(token),
            aes_key,
            mode,
            format,
            upstream,
            timeout: millis(&field("timeout_ms"), &self.timeout_ms, 4000)?,
            max_age: secs(&field("max_age_secs"), &self.max_age_secs, 300)?,
        })
    }
}

/// Base64 as WeChat's sample code decodes an EncodingAESKey: the console's random 43rd character
/// leaves bits past the 32nd byte, which a strict decoder refuses.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The 32-byte AES key of a 43-character EncodingAESKey (base64 without its final `=`), kept as
/// base64 text in a [`Secret`].
fn decode_aes_key(key: &str) -> Option<Secret> {
    aes_key_bytes(key).map(|bytes| Secret::new(STANDARD.encode(bytes)))
}

/// The 32 bytes a 43-character EncodingAESKey stands for.
pub(crate) fn aes_key_bytes(key: &str) -> Option<[u8; 32]> {
    let key = key.trim();
    if key.len() != 43 {
        return None;
    }
    LENIENT.decode(format!("{key}=")).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, PushFormat, PushMode};

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn load(push: &str) -> Result<Config, crate::config::ConfigError> {
        crate::config::minimal_with(push)
    }

    #[test]
    fn defaults_and_per_app_paths() {
        let config = load(&format!(
            "[wechat.push]\ntoken = \"t\"\nencoding_aes_key = \"{KEY}\"\nupstream = \"http://b/m\"\n\
             [wechat.apps.shop]\nappid = \"wx2\"\nsecret = \"s2\"\n\
             [wechat.apps.shop.push]\ntoken = \"t2\"\nmode = \"plain\"\nformat = \"xml\"\nupstream = \"https://b/m\"\n"
        ))
        .unwrap();
        let push = config.wechat.default_app().push.clone().unwrap();
        assert_eq!(
            (push.path.as_str(), push.mode, push.format),
            ("/wx/push", PushMode::Safe, PushFormat::Json)
        );
        assert_eq!(
            (push.timeout.as_millis(), push.max_age.as_secs()),
            (4000, 300)
        );
        assert!(push.aes_key.is_some());
        let shop = config.wechat.push_app("/wx/push/shop").unwrap();
        assert_eq!(shop.name, "shop");
        assert!(shop.push.as_ref().unwrap().aes_key.is_none());
        let shown = config.to_redacted_toml();
        assert!(!shown.contains(KEY) && !shown.contains("\"t2\""), "{shown}");
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        let cases = [
            ("[wechat.push]\nupstream = \"http://b\"", "wechat.push.token"),
            ("[wechat.push]\ntoken = \"t\"\nupstream = \"http://b\"", "wechat.push.encoding_aes_key"),
            ("[wechat.push]\ntoken = \"t\"\nencoding_aes_key = \"short\"\nupstream = \"http://b\"", "wechat.push.encoding_aes_key"),
            ("[wechat.push]\ntoken = \"t\"\nmode = \"secret\"\nupstream = \"http://b\"", "wechat.push.mode"),
            ("[wechat.push]\ntoken = \"t\"\nmode = \"plain\"\nformat = \"yaml\"\nupstream = \"http://b\"", "wechat.push.format"),
            ("[wechat.push]\ntoken = \"t\"\nmode = \"plain\"\nupstream = \"ftp://b\"", "wechat.push.upstream"),
            ("[wechat.push]\ntoken = \"t\"\nmode = \"plain\"\nupstream = \"http://b\"\npath = \"/login\"", "wechat.push.path"),
            ("[wechat.push]\ntoken = \"t\"\nmode = \"plain\"\nupstream = \"http://b\"\npath = \"/wx/phone\"", "wechat.push.path"),
        ];
        for (push, key) in cases {
            assert_eq!(load(push).expect_err(push).key, key, "{push}");
        }
    }
}
