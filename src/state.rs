//! The running state: everything a request needs, built from one config. A config reload builds
//! a new state and swaps it in whole (`arc_swap`); a request keeps the state it started with, so
//! in-flight requests finish on the old routes and keys while new ones get the new.
//!
//! What must outlive a reload is carried over: the metrics, logins in flight, the WebSocket drain
//! guard, the session store (its settings need a restart), the count of requests in flight to
//! upstreams, and the WeChat client, access_token
//! cache and rate-limit buckets when their settings did not change.

use std::sync::Arc;

use crate::access_token::AccessTokens;
use crate::config::Config;
use crate::login::LoginFlights;
use crate::metrics::Metrics;
use crate::rate_limit::Limits;
use crate::routes::RouteTable;
use crate::session::SessionStore;
use crate::upstream::in_flight::InFlightCount;
use crate::upstream::UpstreamClients;
use crate::websocket::DrainGuard;
use crate::wechat::WeChatClient;

/// Everything a request needs, built from one config and shared by every connection.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    pub(crate) wechat: Arc<WeChatClient>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) upstreams: UpstreamClients,
    pub(crate) access_tokens: Arc<AccessTokens>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) logins: Arc<LoginFlights>,
    relays: DrainGuard,
}

impl AppState {
    /// The first state, at start.
    pub(crate) fn new(config: Config, relays: DrainGuard) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::new());
        Ok(AppState {
            routes: RouteTable::new(config.routes.clone()),
            wechat: Arc::new(WeChatClient::new(&config.wechat, metrics.clone())?),
            sessions: crate::session::from_config(&config.session, metrics.clone())?,
            upstreams: UpstreamClients::new(
                &config.upstream,
                &config.routes,
                InFlightCount::new(),
            )?,
            access_tokens: Arc::new(AccessTokens::new(&config.wechat.apps)),
            limits: Limits::new(&config, None),
            metrics,
            logins: Arc::default(),
            config,
            relays,
        })
    }

    /// The state for a reloaded `config`, keeping what carries over from this one.
    pub(crate) fn reloaded(&self, config: Config) -> Result<Self, String> {
        let wechat = if self.wechat.serves(&config.wechat, &self.config.wechat) {
            self.wechat.clone()
        } else {
            Arc::new(WeChatClient::new(&config.wechat, self.metrics.clone())?)
        };
        let access_tokens = if config.wechat.apps == self.config.wechat.apps {
            self.access_tokens.clone()
        } else {
            Arc::new(AccessTokens::new(&config.wechat.apps))
        };
        Ok(AppState {
            routes: RouteTable::new(config.routes.clone()),
            wechat,
            sessions: self.sessions.clone(),
            upstreams: UpstreamClients::new(
                &config.upstream,
                &config.routes,
                self.upstreams.in_flight(),
            )?,
            access_tokens,
            limits: Limits::new(&config, Some(&self.limits)),
            metrics: self.metrics.clone(),
            logins: self.logins.clone(),
            config,
            relays: self.relays.clone(),
        })
    }

    /// A guard for a new WebSocket relay: shutdown waits until every guard is dropped.
    pub(crate) fn drain_guard(&self) -> DrainGuard {
        self.relays.clone()
    }
}
