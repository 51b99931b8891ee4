//! `[wechat_api]`: the internal listener through which backends call WeChat's server APIs with
//! the gateway's access_token. Off unless `listen` is set; reachable from loopback and the
//! `allow` networks only.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{self, Flex, StringList};
use super::validate::{millis, positive};
use super::{AdminConfig, ConfigError, ServerConfig};
use crate::http::trust::TrustedProxies;

/// `[wechat_api]` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawWeChatApi {
    pub(crate) listen: Option<String>,
    pub(crate) allow: Option<StringList>,
    pub(crate) max_retry_body_bytes: Option<Flex<usize>>,
    pub(crate) max_body_bytes: Option<Flex<u64>>,
    pub(crate) timeout_ms: Option<Flex<u64>>,
    pub(crate) max_in_flight: Option<Flex<usize>>,
}

/// `[wechat_api]` settings.
#[derive(Clone, Debug)]
pub struct WeChatApiConfig {
    /// Where backends call WeChat through the gateway; `None`: the listener is off.
    pub listen: Option<SocketAddr>,
    /// Networks besides loopback whose backends may call (CIDRs); everyone else gets 403.
    pub allow: TrustedProxies,
    /// Request bodies up to this size are kept so that a call refused for a stale token can be
    /// sent again; larger ones stream to WeChat and are not retried.
    pub max_retry_body_bytes: usize,
    /// The largest request body passed on (413 beyond).
    pub max_body_bytes: u64,
    /// How long one call to WeChat may take, body and answer included.
    pub timeout: Duration,
    /// Calls being answered at once; beyond, 503 at once.
    pub max_in_flight: usize,
}

impl RawWeChatApi {
    /// `[wechat_api]`: a listen address of its own (never the public or admin listener's).
    pub(super) fn validate(
        &self,
        server: &ServerConfig,
        admin: &AdminConfig,
    ) -> Result<WeChatApiConfig, ConfigError> {
        let listen = match self.listen.as_deref() {
            Some(address) => Some(raw::parse_value("wechat_api.listen", Some(address), "")?),
            None => None,
        };
        let config = WeChatApiConfig {
            listen,
            allow: match &self.allow {
                Some(list) => TrustedProxies::parse(list.entries())
                    .map_err(|message| ConfigError::new("wechat_api.allow", message))?,
                None => TrustedProxies::default(),
            },
            max_retry_body_bytes: raw::number(
                "wechat_api.max_retry_body_bytes",
                &self.max_retry_body_bytes,
                1024 * 1024,
            )?,
            max_body_bytes: positive(
                "wechat_api.max_body_bytes",
                &self.max_body_bytes,
                10 * 1024 * 1024,
            )?,
            timeout: millis("wechat_api.timeout_ms", &self.timeout_ms, 15_000)?,
            max_in_flight: positive("wechat_api.max_in_flight", &self.max_in_flight, 256)?,
        };
        let Some(listen) = config.listen else {
            return Ok(config);
        };
        let mut taken = vec![("the public listener", server.listen)];
        taken.extend(
            server
                .redirect_http_listen
                .map(|address| ("the HTTP redirect listener", address)),
        );
        if admin.enabled {
            taken.push(("the admin listener", admin.listen));
        }
        for (what, address) in taken {
            if super::ops::overlaps(listen, address) {
                return Err(ConfigError::new(
                    "wechat_api.listen",
                    format!(
                        "{listen} overlaps {what} {address}; the WeChat API listener must be \
                         reachable by backends only, on an address of its own"
                    ),
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        crate::config::minimal_with(extra)
    }

    #[test]
    fn off_by_default_with_sane_limits() {
        let api = load("").unwrap().wechat_api;
        assert!(api.listen.is_none());
        assert_eq!(api.max_retry_body_bytes, 1024 * 1024);
        assert_eq!(api.max_body_bytes, 10 * 1024 * 1024);
        assert!(!api.allow.contains("10.0.0.1".parse().unwrap()));
        let api = load("[wechat_api]\nlisten = \"10.0.0.5:9300\"\nallow = [\"10.0.0.0/8\"]")
            .unwrap()
            .wechat_api;
        assert!(api.allow.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn an_address_of_another_listener_is_refused_naming_the_key() {
        for extra in [
            "[server]\nlisten = \"0.0.0.0:8080\"\n[wechat_api]\nlisten = \"127.0.0.1:8080\"",
            "[server]\nlisten = \"127.0.0.1:8080\"\n[wechat_api]\nlisten = \"127.0.0.1:8080\"",
            "[wechat_api]\nlisten = \"127.0.0.1:9090\"",
        ] {
            assert_eq!(load(extra).expect_err(extra).key, "wechat_api.listen");
        }
        assert_eq!(
            load("[wechat_api]\nallow = [\"not-a-network\"]")
                .expect_err("allow")
                .key,
            "wechat_api.allow"
        );
        assert!(
            load("[admin]\nenabled = false\n[wechat_api]\nlisten = \"127.0.0.1:9090\"").is_ok()
        );
    }
}
