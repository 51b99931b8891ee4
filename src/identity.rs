//! Who a verified token says the caller is: the one domain type that the token code, the header
//! rules and the endpoints all speak of, kept below them all.

/// Who a verified token says the caller is; the gateway forwards this and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's openid within the mini-program (the token's `sub`).
    pub openid: String,
    /// The user's unionid across the Open Platform account, when WeChat gave one.
    pub unionid: Option<String>,
    /// The mini-program the user logged in to.
    pub appid: Option<String>,
}
