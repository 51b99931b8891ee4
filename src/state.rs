//! The running state: everything a request needs, built from one config. A config reload builds
//! a new state and swaps it in whole (`arc_swap`); a request keeps the state it started with, so
//! in-flight requests finish on the old routes and keys while new ones get the new.
//!
//! What must outlive a reload is carried over: the metrics, logins in flight, the WebSocket drain
//! guard, the session store (its settings need a restart), the count of requests in flight to
//! upstreams, and the WeChat client, access_token
//! cache and rate-limit buckets when their settings did not change.

use std::collections::HashMap;
use std::sync::Arc;

use tower::limit::GlobalConcurrencyLimitLayer;

use crate::access_token::AccessTokens;
use crate::config::Config;
use crate::config::ConfigError;
use crate::http::headers::IdentityNames;
use crate::http::websocket::DrainGuard;
use crate::metrics::Metrics;
use crate::rate_limit::Limits;
use crate::routes::RouteTable;
use crate::session::SessionStore;
use crate::single_flight::LoginFlights;
use crate::telemetry::Tracing;
use crate::token::TokenKeys;
use crate::upstream::in_flight::InFlightCount;
use crate::upstream::UpstreamClients;
use crate::wechat::alipay::AlipayKeys;
use crate::wechat::WeChatClient;
use http::HeaderValue;

/// Everything a request needs, built from one config and shared by every connection.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Config,
    /// The `[jwt]` keys, loaded.
    pub(crate) keys: TokenKeys,
    pub(crate) routes: RouteTable,
    pub(crate) wechat: Arc<WeChatClient>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) upstreams: UpstreamClients,
    pub(crate) access_tokens: Arc<AccessTokens>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) logins: Arc<LoginFlights>,
    /// `server.endpoint_max_in_flight`, kept across reloads that leave it unchanged.
    pub(crate) endpoint_limit: EndpointLimit,
    /// The names identity headers go upstream under (`[identity]`).
    pub(crate) identity_names: IdentityNames,
    /// The OpenTelemetry tracer (`[tracing]`), when on; made at start, kept across reloads.
    pub(crate) tracing: Option<Arc<Tracing>>,
    /// Each app's name as a header value, by appid (`X-App`, the assertion's `app`).
    app_names: HashMap<String, HeaderValue>,
    relays: DrainGuard,
}

/// Where a state is built from besides its config: the start, or the state a reload replaces.
pub(crate) enum Origin<'a> {
    /// The first state; relays hold this drain guard.
    Start(DrainGuard),
    /// A reload: what must survive is carried over from the running state.
    Reload(&'a AppState),
}

impl AppState {
    /// The running state for `config`, built in this one place at start and on every reload. On
    /// a reload the metrics, logins in flight, the drain guard, the session store and the count
    /// of requests in flight are the running state's; the WeChat client, the access_token cache
    /// and the rate-limit buckets are too while their settings are unchanged. Routes get new
    /// connection pools either way.
    pub(crate) fn build(config: Config, origin: Origin<'_>) -> Result<Self, String> {
        let previous = match &origin {
            Origin::Start(_) => None,
            Origin::Reload(running) => Some(*running),
        };
        let metrics = previous.map_or_else(
            || Arc::new(Metrics::new()),
            |running| running.metrics.clone(),
        );
        let Loaded {
            keys,
            routes,
            alipay,
        } = Loaded::from(&config, &metrics).map_err(|error| error.to_string())?;
        let wechat = match previous {
            Some(running)
                if running
                    .wechat
                    .serves(&config.wechat, &running.config.wechat) =>
            {
                running.wechat.clone()
            }
            _ => Arc::new(WeChatClient::new(&config.wechat, alipay, metrics.clone())?),
        };
        let access_tokens = match previous {
            Some(running) if running.config.wechat.apps == config.wechat.apps => {
                running.access_tokens.clone()
            }
            _ => Arc::new(AccessTokens::new(&config.wechat.apps)),
        };
        let sessions = match previous {
            Some(running) => running.sessions.clone(),
            None => crate::session::from_config(&config.session, metrics.clone())?,
        };
        let in_flight =
            previous.map_or_else(InFlightCount::new, |running| running.upstreams.in_flight());
        let tracing = match previous {
            Some(running) => running.tracing.clone(),
            None => Tracing::start(&config.tracing)?,
        };
        let relays = match origin {
            Origin::Start(relays) => relays,
            Origin::Reload(running) => running.relays.clone(),
        };
        Ok(AppState {
            keys,
            routes,
            wechat,
            sessions,
            upstreams: UpstreamClients::new(&config.upstream, in_flight),
            access_tokens,
            limits: Limits::new(&config, previous.map(|running| &running.limits)),
            logins: previous.map_or_else(Arc::default, |running| running.logins.clone()),
            endpoint_limit: EndpointLimit::new(
                config.server.endpoint_max_in_flight,
                previous.map(|running| &running.endpoint_limit),
            ),
            identity_names: IdentityNames::new(
                config.identity.openid_header.clone(),
                config.identity.unionid_header.clone(),
                config.identity.app_header.clone(),
                config.identity.assertion_header.clone(),
            ),
            tracing,
            app_names: config
                .wechat
                .apps
                .iter()
                .filter_map(|app| {
                    let name = HeaderValue::from_str(&app.name).ok()?;
                    Some((app.appid.clone(), name))
                })
                .collect(),
            metrics,
            config,
            relays,
        })
    }

    /// The name of the app `appid` (tokens naming none are `[wechat]`'s: "default").
    pub(crate) fn app_name(&self, appid: Option<&str>) -> Option<&HeaderValue> {
        let appid = appid.unwrap_or(&self.config.wechat.default_app().appid);
        self.app_names.get(appid)
    }

    /// Where the access_tokens come from: this state's store and WeChat client.
    pub(crate) fn access_token_sources(&self) -> crate::access_token::Sources<'_> {
        crate::access_token::Sources {
            sessions: self.sessions.as_ref(),
            wechat: &self.wechat,
        }
    }

    /// A guard for a new WebSocket relay: shutdown waits until every guard is dropped.
    pub(crate) fn drain_guard(&self) -> DrainGuard {
        self.relays.clone()
    }
}

/// The bound on the endpoints' requests in flight (`server.endpoint_max_in_flight`), one for the
/// whole gateway: kept across a reload that leaves the number unchanged, so requests still being
/// answered under the old config count against the new one.
#[derive(Clone, Debug)]
pub(crate) struct EndpointLimit {
    max: usize,
    layer: GlobalConcurrencyLimitLayer,
}

impl EndpointLimit {
    /// `max` requests at once; the running one when it has the same `max`.
    pub(crate) fn new(max: usize, running: Option<&EndpointLimit>) -> Self {
        match running {
            Some(running) if running.max == max => running.clone(),
            _ => EndpointLimit {
                max,
                layer: GlobalConcurrencyLimitLayer::new(max),
            },
        }
    }

    /// The concurrency-limit layer counting against this bound.
    pub(crate) fn layer(&self) -> GlobalConcurrencyLimitLayer {
        self.layer.clone()
    }
}

/// What a config names by file, loaded: the config itself is plain data (paths), and this is
/// where keys and certificates are read, at start, on every reload and by `wxgate check`, so a
/// file that cannot be used is refused the same way everywhere, naming its key.
pub(crate) struct Loaded {
    /// The JWT signing and verify-only keys.
    pub(crate) keys: TokenKeys,
    /// The routes, their upstreams' TLS settings (`routes[N].ca_file`) loaded and connection
    /// pools assigned: pools are new for every state, so a reloaded config never shares one with
    /// the config it replaces, whose connections were made with its settings.
    pub(crate) routes: RouteTable,
    /// Each Alipay app's keys (`apps.NAME.private_key_file`, `alipay_public_key_file`), by appid.
    pub(crate) alipay: HashMap<String, AlipayKeys>,
}

impl Loaded {
    /// Loads what `config` names; the TLS listener's certificates are read and checked too
    /// (`server.tls`), though the listener loads them itself when it starts.
    pub(crate) fn from(config: &Config, metrics: &Metrics) -> Result<Loaded, ConfigError> {
        if let Some(tls) = &config.server.tls {
            crate::tls::CertResolver::load(tls.certificates.clone())
                .map_err(|message| ConfigError::new("server.tls", message))?;
        }
        let mut alipay = HashMap::new();
        for app in &config.wechat.apps {
            let Some(files) = &app.alipay else { continue };
            let keys = AlipayKeys::load(&files.private_key_file, &files.alipay_public_key_file)
                .map_err(|(private, message)| {
                    let key = if private {
                        "private_key_file"
                    } else {
                        "alipay_public_key_file"
                    };
                    ConfigError::new(format!("apps.{}.{key}", app.name), message)
                })?;
            alipay.insert(app.appid.clone(), keys);
        }
        Ok(Loaded {
            keys: TokenKeys::load(&config.jwt)?,
            routes: RouteTable::with_metrics(&config.routes, metrics)?,
            alipay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_to_one_upstream_share_its_connection_pool_and_reloads_get_new_pools() {
        let config = Config::from_toml(
            "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n\
             [jwt]\nsecret = \"a-secret-that-is-at-least-32-bytes-long!\"\n\
             [session]\nstore = \"memory\"\n\
             [[routes]]\nprefix = \"/a\"\nupstream = \"http://Backend:80/a\"\nauth = \"none\"\n\
             [[routes]]\nprefix = \"/b\"\nupstream = \"http://backend:80/b\"\nauth = \"none\"\n\
             [[routes]]\nprefix = \"/c\"\nupstream = \"https://backend:80\"\nauth = \"none\"\n\
             [server]\nworkers = 3",
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(config.server.workers, 3);
        let (relays, _) = tokio::sync::mpsc::channel(1);
        let first = AppState::build(config.clone(), Origin::Start(relays)).unwrap();
        let pools = |state: &AppState| {
            ["/a", "/b", "/c"].map(|path| {
                let route = state.routes.find(path).unwrap();
                route.upstream.as_ref().unwrap().instances()[0]
                    .upstream
                    .pool()
            })
        };
        let [a, b, c] = pools(&first);
        assert_eq!(
            a, b,
            "same scheme and authority (any case), different base paths"
        );
        assert_ne!(a, c, "another scheme");
        let reloaded = AppState::build(config, Origin::Reload(&first)).unwrap();
        assert!(pools(&reloaded).iter().all(|pool| ![a, c].contains(pool)));
    }

    /// Keys, CA files and certificates that cannot be used stop a start, a reload and `wxgate
    /// check` alike, naming the key; a secret is never echoed.
    #[test]
    fn files_and_keys_that_cannot_be_used_are_refused_naming_their_key() {
        let config_text = |jwt: &str, extra: &str| {
            format!("[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n[jwt]\n{jwt}\n{extra}")
        };
        let secret = "secret = \"unit-test-jwt-secret-at-least-32-bytes\"";
        let cases = [
            ("secret = \"too-short\"", "", "jwt.secret"),
            (
                "algorithm = \"ES256\"\nprivate_key_file = \"/nonexistent.pem\"",
                "",
                "jwt.private_key_file",
            ),
            (secret, "[[jwt.verify_keys]]\nsecret = \"short\"", "jwt.verify_keys[0].secret"),
            (
                secret,
                "[[jwt.verify_keys]]\nalgorithm = \"ES256\"\npublic_key_file = \"/nonexistent.pem\"",
                "jwt.verify_keys[0].public_key_file",
            ),
            (&format!("{secret}\nkid = \"../../etc/passwd\""), "", "jwt.kid"),
            (
                &format!("{secret}\nkid = \"same\""),
                "[[jwt.verify_keys]]\nkid = \"same\"\nsecret = \"another-secret-that-is-32-bytes-long\"",
                "jwt.verify_keys",
            ),
            (
                secret,
                "[server.tls]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.pem\"",
                "server.tls",
            ),
            (
                secret,
                "[[routes]]\nprefix = \"/x\"\nupstream = \"https://h:1\"\nauth = \"none\"\nca_file = \"/nonexistent.pem\"",
                "routes[0].ca_file",
            ),
        ];
        for (jwt, extra, key) in cases {
            let config = Config::from_toml(&config_text(jwt, extra), std::iter::empty())
                .expect("plain data: nothing read yet");
            let error = Loaded::from(&config, &Metrics::new())
                .err()
                .expect("refused when loaded");
            assert_eq!(error.key, key, "{jwt} {extra}");
            assert!(!error.to_string().contains("too-short"), "{error}");
            let (relays, _) = tokio::sync::mpsc::channel(1);
            let started = AppState::build(config, Origin::Start(relays));
            assert!(started.err().is_some_and(|error| error.starts_with(key)));
        }
    }
}
