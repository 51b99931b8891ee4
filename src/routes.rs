//! The route table: which upstream serves a normalized path, and how that path is authenticated.
//!
//! Matching is by whole segments (`/api` covers `/api` and `/api/x`, never `/apix`), and the longest
//! matching prefix wins. `;parameters` on a path segment are ignored when matching, so `/api;x/y`
//! is judged by the `/api` rule, the same way a Java upstream would route it.

mod prefix_tree;

use std::sync::Arc;

use prefix_tree::PrefixTree;

use crate::config::{ConfigError, RouteConfig};
use crate::metrics::Metrics;
use crate::upstream::group::UpstreamGroup;

pub use crate::config::{AuthMode, RateLimit};

/// A route of the running state: the route as configured, and the upstream instances it reaches
/// with their connection pools, TLS settings and health.
#[derive(Debug)]
pub struct Route {
    /// The route as configured.
    pub config: RouteConfig,
    /// The configured upstream instances, ready to connect to; `None` when the route has none.
    pub(crate) upstream: Option<Arc<UpstreamGroup>>,
}

impl Route {
    /// The prefix's segments (none for `/`).
    fn prefix_segments(&self) -> impl Iterator<Item = &str> {
        self.config
            .prefix
            .split('/')
            .filter(|segment| !segment.is_empty())
    }

    /// Whether this route covers the normalized `path` (what [`RouteTable::find`] must agree
    /// with, route by route).
    #[cfg(test)]
    fn matches(&self, path: &str) -> bool {
        let mut path_segments = segments(path.as_bytes());
        segments(self.config.prefix.as_bytes()).all(|wanted| {
            path_segments
                .next()
                .is_some_and(|segment| segment.split(|&byte| byte == b';').next() == Some(wanted))
        })
    }

    /// The path to send upstream for the normalized `path` this route matched.
    pub(crate) fn upstream_path(&self, path: &str) -> String {
        let kept = if self.config.strip_prefix {
            let skip = self.prefix_segments().count();
            let rest_start = path
                .match_indices('/')
                .nth(skip)
                .map_or(path.len(), |(index, _)| index);
            match &path[rest_start..] {
                "" => "/",
                rest => rest,
            }
        } else {
            path
        };
        let base = self
            .config
            .upstream
            .as_ref()
            .map_or("", |upstream| &upstream.base_path);
        let mut forwarded = String::with_capacity(base.len() + kept.len());
        forwarded.push_str(base);
        forwarded.push_str(kept);
        forwarded
    }

    /// Whether [`Route::upstream_path`] is the path itself: no prefix stripped, no base path.
    pub(crate) fn forwards_path_as_is(&self) -> bool {
        !self.config.strip_prefix
            && self
                .config
                .upstream
                .as_ref()
                .is_none_or(|upstream| upstream.base_path.is_empty())
    }
}

/// The non-empty `/`-separated segments of a path.
fn segments(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&byte| byte == b'/')
        .filter(|segment| !segment.is_empty())
}

/// All routes, longest prefix first: what picks the route of a request.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// The routes' prefixes, segment by segment, for [`RouteTable::find`].
    prefixes: PrefixTree,
}

impl RouteTable {
    /// The routes of a config, each upstream instance given its connection pool, TLS settings
    /// and metrics (see `upstream::groups`), ordered so that the first match is the longest
    /// prefix. Errors name the key whose file could not be used (`routes[N].ca_file`).
    pub(crate) fn with_metrics(
        configs: &[RouteConfig],
        metrics: &Metrics,
    ) -> Result<Self, ConfigError> {
        let upstreams = crate::upstream::groups(configs, metrics)?;
        let mut routes: Vec<Route> = configs
            .iter()
            .zip(upstreams)
            .map(|(config, upstream)| Route {
                config: config.clone(),
                upstream,
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix_segments().count()));
        let mut prefixes = PrefixTree::default();
        for (index, route) in routes.iter().enumerate() {
            prefixes.insert(segments(route.config.prefix.as_bytes()), index);
        }
        Ok(RouteTable { routes, prefixes })
    }

    /// The routes of a config (see [`RouteTable::with_metrics`]), their instances' metrics in a
    /// registry of their own: for tools and benchmarks that serve nothing.
    pub fn new(configs: &[RouteConfig]) -> Result<Self, ConfigError> {
        RouteTable::with_metrics(configs, &Metrics::new())
    }

    /// Starts the active health checks of the routes' upstream groups that have them (each
    /// ends with its group).
    pub(crate) fn start_health_checks(&self) {
        for route in &self.routes {
            if let Some(group) = &route.upstream {
                crate::upstream::health::spawn(group);
            }
        }
    }

    /// The route for a normalized path, if any: the longest prefix covering it by whole
    /// segments, `;parameters` ignored.
    pub fn find(&self, path: &str) -> Option<&Route> {
        let path_segments = segments(path.as_bytes()).map(|segment| {
            segment
                .split(|&byte| byte == b';')
                .next()
                .unwrap_or(segment)
        });
        let index = self.prefixes.longest(path_segments)?;
        self.routes.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use http::uri::{Authority, Scheme};

    use crate::config::{Balance, UpstreamGroupConfig, UpstreamHealth};

    fn route_config(
        prefix: &str,
        auth: AuthMode,
        strip_prefix: bool,
        base_path: &str,
    ) -> RouteConfig {
        RouteConfig {
            prefix: prefix.to_string(),
            upstream: Some(UpstreamGroupConfig {
                scheme: Scheme::HTTP,
                instances: vec![Authority::from_static("127.0.0.1:1")],
                base_path: base_path.to_string(),
                ca_file: None,
                balance: Balance::RoundRobin,
                health: UpstreamHealth::default(),
            }),
            auth,
            strip_prefix,
            preserve_host: false,
            timeout: Duration::from_secs(1),
            apps: None,
            rate_limit: None,
            audience: prefix.to_string(),
            forward_authorization: true,
        }
    }

    fn route(prefix: &str, auth: AuthMode, strip_prefix: bool, base_path: &str) -> Route {
        let config = route_config(prefix, auth, strip_prefix, base_path);
        let mut table = RouteTable::new(&[config]).unwrap();
        table.routes.remove(0)
    }

    fn table() -> RouteTable {
        RouteTable::new(&[
            route_config("/", AuthMode::Optional, false, ""),
            route_config("/api", AuthMode::Required, false, ""),
            route_config("/api/public", AuthMode::None, false, ""),
        ])
        .unwrap()
    }

    fn auth_for(path: &str) -> Option<AuthMode> {
        table().find(path).map(|route| route.config.auth)
    }

    #[test]
    fn longest_prefix_wins_by_whole_segments() {
        assert_eq!(auth_for("/api/public/x"), Some(AuthMode::None));
        assert_eq!(auth_for("/api/publicity"), Some(AuthMode::Required));
        assert_eq!(auth_for("/api"), Some(AuthMode::Required));
        assert_eq!(auth_for("/api/"), Some(AuthMode::Required));
        assert_eq!(auth_for("/apix"), Some(AuthMode::Optional));
        assert_eq!(auth_for("/"), Some(AuthMode::Optional));
    }

    #[test]
    fn segment_parameters_do_not_escape_a_rule() {
        assert_eq!(auth_for("/api;jsessionid=1/x"), Some(AuthMode::Required));
        assert_eq!(auth_for("/api/public;x=1/y"), Some(AuthMode::None));
    }

    #[test]
    fn no_match_without_a_root_route() {
        let table =
            RouteTable::new(&[route_config("/api", AuthMode::Required, false, "")]).unwrap();
        assert!(table.find("/other").is_none());
        assert!(table.find("/").is_none());
    }

    #[test]
    fn upstream_path_prepends_base_and_strips_prefix() {
        let plain = route("/api", AuthMode::Required, false, "");
        assert_eq!(plain.upstream_path("/api/x"), "/api/x");
        let stripped = route("/api", AuthMode::Required, true, "");
        assert_eq!(stripped.upstream_path("/api/x/y/"), "/x/y/");
        assert_eq!(stripped.upstream_path("/api"), "/");
        let based = route("/api", AuthMode::Required, true, "/v1");
        assert_eq!(based.upstream_path("/api/x"), "/v1/x");
        let root = route("/", AuthMode::None, true, "/base");
        assert_eq!(root.upstream_path("/x"), "/base/x");
        assert!(plain.forwards_path_as_is());
        assert!(!stripped.forwards_path_as_is());
        assert!(!based.forwards_path_as_is());
        assert!(!route("/api", AuthMode::Required, false, "/v1").forwards_path_as_is());
        assert!(!root.forwards_path_as_is());
    }

    /// An upstream's own reading of a forwarded path: every escape decoded, empty and `.` segments
    /// dropped, `..` popping, `;` parameters cut off (as Java servers do).
    fn resolved_like_an_upstream(path: &str) -> String {
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let mut segments: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment.split(';').next().unwrap_or_default() {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                name => segments.push(name),
            }
        }
        format!("/{}", segments.join("/"))
    }

    /// A prefix or a path made of a few segments from a small set, so that tables and paths
    /// overlap often; paths may carry `;parameters`.
    fn segments_from(
        max: usize,
        parameters: bool,
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segment = prop_oneof![Just("a"), Just("b"), Just("api"), Just("v1")];
        let parameter = prop_oneof![Just(""), Just(";x=1")];
        proptest::collection::vec((segment, parameter), 0..=max).prop_map(move |parts| {
            let joined: String = parts
                .iter()
                .map(|(segment, parameter)| {
                    format!("/{segment}{}", if parameters { *parameter } else { "" })
                })
                .collect();
            if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The prefix tree finds what a scan of the routes, longest prefix first, finds.
        #[test]
        fn the_tree_finds_what_a_scan_finds(
            prefixes in proptest::collection::vec(segments_from(3, false), 1..8),
            path in segments_from(5, true),
        ) {
            let configs: Vec<RouteConfig> = prefixes
                .iter()
                .enumerate()
                .map(|(index, prefix)| {
                    let mut config = route_config(prefix, AuthMode::None, false, "");
                    config.audience = format!("route{index}");
                    config
                })
                .collect();
            let table = RouteTable::new(&configs).unwrap();
            let scanned = table.routes.iter().find(|route| route.matches(&path));
            let found = table.find(&path);
            proptest::prop_assert_eq!(
                found.map(|route| &route.config.audience),
                scanned.map(|route| &route.config.audience),
                "{:?} {}", prefixes, path
            );
        }

        /// The route that judged a request is the route its forwarded path means to an upstream
        /// that decodes and resolves the path again (no route strips its prefix here).
        #[test]
        fn the_route_judged_is_the_route_the_upstream_sees(raw in crate::http::path::tests::attack_path()) {
            let table = table();
            if let Ok(normalized) = crate::http::path::normalize(&raw) {
                let judged = table.find(&normalized).expect("/ matches everything");
                let forwarded = judged.upstream_path(&normalized);
                proptest::prop_assert_eq!(&forwarded, &normalized);
                let seen = resolved_like_an_upstream(&forwarded);
                let upstream_route = table.find(&seen).expect("/ matches everything");
                proptest::prop_assert_eq!(
                    &judged.config.prefix, &upstream_route.config.prefix, "{} -> {} -> {}", raw, forwarded, seen
                );
            }
        }

        /// With `strip_prefix`, what is forwarded is the rest of the normalized path: already
        /// normal, so the upstream cannot climb out of it.
        #[test]
        fn a_stripped_path_is_still_normal(raw in crate::http::path::tests::attack_path()) {
            let route = route("/api", AuthMode::Required, true, "/base");
            if let Ok(normalized) = crate::http::path::normalize(&raw) {
                if route.matches(&normalized) {
                    let forwarded = route.upstream_path(&normalized);
                    proptest::prop_assert!(forwarded.starts_with("/base/"));
                    proptest::prop_assert_eq!(crate::http::path::normalize(&forwarded), Ok(forwarded.as_str().into()));
                }
            }
        }

        /// The proxy sends the client's request target unchanged when the route forwards paths as
        /// they are: that must be exactly what `upstream_path` would have built.
        #[test]
        fn a_path_kept_as_is_is_the_upstream_path(raw in crate::http::path::tests::attack_path()) {
            let route = route("/api", AuthMode::Required, false, "");
            proptest::prop_assert!(route.forwards_path_as_is());
            if let Ok(normalized) = crate::http::path::normalize(&raw) {
                proptest::prop_assert_eq!(route.upstream_path(&normalized), normalized.as_ref());
            }
        }
    }
}
