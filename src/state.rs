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
use crate::metrics::Metrics;
use crate::rate_limit::Limits;
use crate::routes::RouteTable;
use crate::session::SessionStore;
use crate::single_flight::LoginFlights;
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
            routes: route_table(&config),
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
            routes: route_table(&config),
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

/// The route table of `config`, each upstream given its connection pool: pools are new for every
/// state, so a reloaded config never shares one with the config it replaces, whose connections
/// were made with its settings.
fn route_table(config: &Config) -> RouteTable {
    let mut routes = config.routes.clone();
    crate::upstream::assign_pools(&mut routes);
    RouteTable::new(routes)
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
        let first = AppState::new(config.clone(), relays).unwrap();
        let pools = |state: &AppState| {
            ["/a", "/b", "/c"].map(|path| {
                let route = state.routes.find(path).unwrap();
                route.upstream.as_ref().unwrap().pool
            })
        };
        let [a, b, c] = pools(&first);
        assert_eq!(
            a, b,
            "same scheme and authority (any case), different base paths"
        );
        assert_ne!(a, c, "another scheme");
        let reloaded = first.reloaded(config).unwrap();
        assert!(pools(&reloaded).iter().all(|pool| ![a, c].contains(pool)));
    }
}
