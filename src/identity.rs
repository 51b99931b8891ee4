//! Who a verified token says the caller is: the one domain type that the token code, the header
//! rules and the endpoints all speak of, kept below them all.

/// Who a verified token says the caller is; the gateway forwards this and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's id within the mini-program (the token's `sub`): WeChat's and QQ's `openid`,
    /// Douyin's `openid`.
    pub openid: String,
    /// The user's id across the developer's apps, when the platform gave one.
    pub unionid: Option<String>,
    /// The mini-program the user logged in to.
    pub appid: Option<String>,
    /// The platform the mini-program runs on (`X-Platform` upstream); WeChat for tokens that
    /// name none.
    pub platform: Platform,
}

/// The mini-program platforms the gateway logs users in on. The same id string can mean two
/// users on two platforms: users are keyed by platform, app and id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Platform {
    /// WeChat (微信).
    #[default]
    WeChat,
    /// QQ: WeChat's API shape on `api.q.qq.com`.
    Qq,
    /// Douyin / ByteDance (抖音, 头条).
    Douyin,
    /// Baidu smart programs (百度智能小程序); the app's `appid` is its AppKey.
    Baidu,
    /// Kuaishou (快手); its `open_id` is per developer, not per app.
    Kuaishou,
    /// Alipay (支付宝): RSA2-signed requests and answers, no session key.
    Alipay,
}

impl Platform {
    /// Every platform, for lists and parsing.
    pub const ALL: [Platform; 6] = [
        Platform::WeChat,
        Platform::Qq,
        Platform::Douyin,
        Platform::Baidu,
        Platform::Kuaishou,
        Platform::Alipay,
    ];

    /// The name used in config (`platform = "..."`), tokens, answers and `X-Platform`.
    pub fn name(self) -> &'static str {
        match self {
            Platform::WeChat => "wechat",
            Platform::Qq => "qq",
            Platform::Douyin => "douyin",
            Platform::Baidu => "baidu",
            Platform::Kuaishou => "kuaishou",
            Platform::Alipay => "alipay",
        }
    }

    /// The platform called `name`.
    pub fn named(name: &str) -> Option<Platform> {
        Platform::ALL
            .into_iter()
            .find(|platform| platform.name() == name)
    }
}
