//! `[apps.NAME]`: a mini-program of any supported platform, beside `[wechat]` and
//! `[wechat.apps.NAME]` (which stay WeChat apps). Names are unique across both forms.

use serde::Deserialize;

use super::validate::required;
use super::{AlipayConfig, BaiduConfig, ConfigError, Secret, WeChatApp};
use crate::identity::Platform;

/// One `[apps.NAME]` table as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPlatformApp {
    pub(crate) platform: Option<String>,
    pub(crate) appid: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) api_base: Option<String>,
    pub(crate) private_key_file: Option<String>,
    pub(crate) alipay_public_key_file: Option<String>,
    pub(crate) aes_key: Option<String>,
    pub(crate) openapi_base: Option<String>,
    pub(crate) fetch_unionid: Option<bool>,
    pub(crate) push: Option<super::push::RawPush>,
}

/// Baidu's second host: its access_token and getunionid.
pub(crate) const BAIDU_OPENAPI_BASE: &str = "https://openapi.baidu.com";

/// The official API host of each platform, to which its documented paths are appended.
pub(crate) fn default_api_base(platform: Platform) -> &'static str {
    match platform {
        Platform::WeChat => "https://api.weixin.qq.com",
        Platform::Qq => "https://api.q.qq.com",
        Platform::Douyin => "https://developer.toutiao.com",
        Platform::Baidu => "https://spapi.baidu.com",
        Platform::Kuaishou => "https://open.kuaishou.com",
        Platform::Alipay => "https://openapi.alipay.com",
    }
}

/// An Alipay AES key as configured: base64 of 16 bytes (AES-128, as Alipay's samples use it).
fn aes_key(text: &str) -> Option<Secret> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    (bytes.len() == 16).then(|| Secret::new(text.trim()))
}

/// An app's name (the table at `key`): a-z 0-9 _ -, and not `default`, which is `[wechat]`.
pub(super) fn check_app_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if name == "default" || name.is_empty() || !name.chars().all(plain) {
        return Err(ConfigError::new(
            key,
            "app names are a-z 0-9 _ - (and not \"default\", which is [wechat] itself)",
        ));
    }
    Ok(())
}

/// Adds every `[apps.NAME]` to `apps` (the WeChat apps so far): names unique across both forms,
/// appids across all apps, since sessions are kept per appid and user.
pub(super) fn add_platform_apps(
    apps: &mut Vec<WeChatApp>,
    written: &std::collections::BTreeMap<String, RawPlatformApp>,
    wechat_base: &reqwest::Url,
) -> Result<(), ConfigError> {
    for (name, app) in written {
        check_app_name(&format!("apps.{name}"), name)?;
        if apps.iter().any(|seen| seen.name == *name) {
            return Err(ConfigError::new(
                format!("apps.{name}"),
                "is also [wechat.apps.NAME]: app names are unique",
            ));
        }
        let app = app.validate(name, wechat_base)?;
        if apps.iter().any(|seen| seen.appid == app.appid) {
            return Err(ConfigError::new(
                format!("apps.{name}.appid"),
                format!("{} is configured twice", app.appid),
            ));
        }
        apps.push(app);
    }
    Ok(())
}

impl RawPlatformApp {
    /// Validates `[apps.NAME]`; `wechat_base` is `wechat.api_base`, the default of WeChat apps.
    fn validate(&self, name: &str, wechat_base: &reqwest::Url) -> Result<WeChatApp, ConfigError> {
        let key = format!("apps.{name}");
        let field = |suffix: &str| format!("{key}.{suffix}");
        let written = required(&field("platform"), &self.platform)?;
        let platform = Platform::named(&written).ok_or_else(|| {
            let known: Vec<&str> = Platform::ALL.iter().map(|p| p.name()).collect();
            ConfigError::new(
                field("platform"),
                format!("{written:?} is not one of {known:?}"),
            )
        })?;
        let api_base = match (&self.api_base, platform) {
            (Some(base), _) => super::validate::api_base(&field("api_base"), Some(base))?,
            (None, Platform::WeChat) => wechat_base.clone(),
            (None, platform) => {
                super::validate::api_base(&field("api_base"), Some(default_api_base(platform)))?
            }
        };
        let (secret, alipay) = match platform {
            Platform::Alipay => {
                if self.secret.is_some() {
                    return Err(ConfigError::new(
                        field("secret"),
                        "Alipay apps sign with private_key_file instead of a secret",
                    ));
                }
                let files = AlipayConfig {
                    private_key_file: required(&field("private_key_file"), &self.private_key_file)?
                        .into(),
                    alipay_public_key_file: required(
                        &field("alipay_public_key_file"),
                        &self.alipay_public_key_file,
                    )?
                    .into(),
                    aes_key: match &self.aes_key {
                        Some(key) => Some(aes_key(key).ok_or_else(|| {
                            ConfigError::new(
                                field("aes_key"),
                                "must be the console's AES key: base64 of 16 bytes",
                            )
                        })?),
                        None => None,
                    },
                };
                (Secret::new(""), Some(files))
            }
            _ => {
                for (key, value) in [
                    ("private_key_file", &self.private_key_file),
                    ("alipay_public_key_file", &self.alipay_public_key_file),
                    ("aes_key", &self.aes_key),
                ] {
                    if value.is_some() {
                        return Err(ConfigError::new(field(key), "is for Alipay apps only"));
                    }
                }
                (Secret::new(required(&field("secret"), &self.secret)?), None)
            }
        };
        let baidu = match platform {
            Platform::Baidu => Some(BaiduConfig {
                openapi_base: super::validate::api_base(
                    &field("openapi_base"),
                    Some(self.openapi_base.as_deref().unwrap_or(BAIDU_OPENAPI_BASE)),
                )?,
                fetch_unionid: self.fetch_unionid.unwrap_or(false),
            }),
            _ => {
                for (key, set) in [
                    ("openapi_base", self.openapi_base.is_some()),
                    ("fetch_unionid", self.fetch_unionid.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::new(field(key), "is for Baidu apps only"));
                    }
                }
                None
            }
        };
        Ok(WeChatApp {
            name: name.to_string(),
            appid: required(&field("appid"), &self.appid)?,
            secret,
            platform,
            api_base,
            alipay,
            baidu,
            push: match (&self.push, platform) {
                (Some(push), Platform::WeChat) => Some(push.validate(&field("push"), name)?),
                (Some(_), _) => {
                    return Err(ConfigError::new(
                        field("push"),
                        "message push is WeChat's; this app's platform has none here",
                    ))
                }
                (None, _) => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Platform};

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        crate::config::minimal_with(extra)
    }

    #[test]
    fn apps_of_every_platform_with_their_official_hosts() {
        let config = load(
            "[apps.qq]\nplatform = \"qq\"\nappid = \"1112\"\nsecret = \"q\"\n\
             [apps.dy]\nplatform = \"douyin\"\nappid = \"tt1\"\nsecret = \"d\"\n\
             [apps.bd]\nplatform = \"baidu\"\nappid = \"bk\"\nsecret = \"b\"\nfetch_unionid = true\n\
             [apps.wx2]\nplatform = \"wechat\"\nappid = \"wx2\"\nsecret = \"w\"\napi_base = \"https://api2.weixin.qq.com\"\n",
        )
        .unwrap();
        let app = |name| config.wechat.app_named(name).unwrap();
        assert_eq!(
            (app("qq").platform, app("qq").api_base.as_str()),
            (Platform::Qq, "https://api.q.qq.com/")
        );
        assert_eq!(
            app("dy").api_base.as_str(),
            "https://developer.toutiao.com/"
        );
        assert_eq!(app("wx2").api_base.as_str(), "https://api2.weixin.qq.com/");
        assert_eq!(app("qq").server_api_base(), &app("qq").api_base);
        assert_eq!(
            app("bd").server_api_base().as_str(),
            "https://openapi.baidu.com/"
        );
        assert_eq!(
            app("bd").baidu.as_ref().map(|b| b.fetch_unionid),
            Some(true)
        );
        assert_eq!(app("default").platform, Platform::WeChat);
        let shown = config.to_redacted_toml();
        assert!(
            shown.contains("[apps.dy]") && shown.contains("platform = \"douyin\""),
            "{shown}"
        );
        assert!(
            !shown.contains("\"d\"") && !shown.contains("\"q\""),
            "{shown}"
        );
        let reparsed = Config::from_toml(
            &shown.replace("\"<redacted>\"", "\"s\""),
            std::iter::empty(),
        );
        assert!(reparsed.is_ok(), "{reparsed:?}");
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            ("[apps.a]\nappid = \"x\"\nsecret = \"s\"", "apps.a.platform"),
            ("[apps.a]\nplatform = \"alipay\"\nappid = \"x\"\nsecret = \"s\"", "apps.a.secret"),
            ("[apps.a]\nplatform = \"alipay\"\nappid = \"x\"", "apps.a.private_key_file"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"\nprivate_key_file = \"k\"", "apps.a.private_key_file"),
            ("[apps.a]\nplatform = \"myspace\"\nappid = \"x\"\nsecret = \"s\"", "apps.a.platform"),
            ("[apps.a]\nplatform = \"qq\"\nsecret = \"s\"", "apps.a.appid"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"x\"", "apps.a.secret"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"wx1\"\nsecret = \"s\"", "apps.a.appid"),
            ("[apps.default]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"", "apps.default"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"\napi_base = \"ftp://h\"", "apps.a.api_base"),
            ("[wechat.apps.a]\nappid = \"y\"\nsecret = \"s\"\n[apps.a]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"", "apps.a"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"\nfetch_unionid = true", "apps.a.fetch_unionid"),
            ("[apps.a]\nplatform = \"baidu\"\nappid = \"x\"\nsecret = \"s\"\nopenapi_base = \"ftp://h\"", "apps.a.openapi_base"),
            ("[apps.a]\nplatform = \"qq\"\nappid = \"x\"\nsecret = \"s\"\n[apps.a.push]\ntoken = \"t\"\nmode = \"plain\"\nupstream = \"http://b\"", "apps.a.push"),
        ];
        for (extra, key) in cases {
            let refused = load(extra).expect_err(extra);
            assert_eq!(refused.key, key, "{extra}: {refused}");
        }
    }
}
