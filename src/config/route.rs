//! `[[routes]]`: the prefix, the upstream URL and its CA file, the auth mode, the apps a route
//! serves and its per-user rate limit, as plain data; each validation error names
//! `routes[N].key`. The running route table (`routes`) is built from these.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};

use super::raw::{self, RawRoute};
use super::validate::{endpoint_path, millis, required};
use super::{ConfigError, WeChatConfig};

/// A rate limit as configured (a route's per-user one, and the login and refresh ones): `burst`
/// requests at once, refilled at `per_minute`. The buckets that enforce it are `rate_limit`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once (the bucket's size).
    pub burst: u32,
}

/// How a route treats the bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No valid token, no forwarding: 401 and the upstream is never contacted.
    Required,
    /// Forwarded either way; with identity when a valid token came, 401 for an invalid one.
    Optional,
    /// Forwarded without identity; any token is ignored (identity headers are still stripped).
    None,
}

impl AuthMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::None => "none",
        }
    }
}

/// A route's `upstream` URL and `ca_file`: where matching requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port of the upstream service.
    pub authority: Authority,
    /// A path prefix to prepend, without a trailing slash; empty for none.
    pub base_path: String,
    /// Extra CA certificates trusted for this https upstream, besides the system roots.
    pub ca_file: Option<PathBuf>,
}

/// One `[[routes]]` entry, validated.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The normalized prefix (no trailing slash, except the root `/`).
    pub prefix: String,
    /// Where matching requests go; `None` for a rule that only decides forward-auth checks (the
    /// proxy answers 404 for it).
    pub upstream: Option<UpstreamUrl>,
    /// How the bearer token is treated.
    pub auth: AuthMode,
    /// Remove the prefix from the path before forwarding.
    pub strip_prefix: bool,
    /// Send the client's Host header upstream instead of the upstream's authority.
    pub preserve_host: bool,
    /// How long the upstream may take to send response headers.
    pub timeout: Duration,
    /// The appids whose tokens may use this route (`apps = [...]` names, resolved); `None`: all.
    pub apps: Option<Vec<String>>,
    /// Requests per openid on this route (authenticated requests only); `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// The `aud` of the identity assertions forwarded on this route (`audience`; the prefix).
    pub audience: String,
    /// Whether the client's `Authorization` header goes upstream (`forward_authorization`).
    pub forward_authorization: bool,
}

impl RawRoute {
    pub(super) fn validate(
        &self,
        key: &str,
        default_timeout: Duration,
        wechat: &WeChatConfig,
    ) -> Result<RouteConfig, ConfigError> {
        let prefix_key = format!("{key}.prefix");
        let prefix = required(&prefix_key, &self.prefix)?;
        let prefix = match endpoint_path(&prefix_key, Some(&prefix), "/")?.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        let auth = match required(&format!("{key}.auth"), &self.auth)?.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "none" => AuthMode::None,
            other => {
                return Err(ConfigError::new(
                    format!("{key}.auth"),
                    format!("{other:?} is not one of \"required\", \"optional\", \"none\""),
                ))
            }
        };
        let upstream_key = format!("{key}.upstream");
        let mut upstream = match self.upstream.as_deref() {
            Some(text) => Some(upstream(&upstream_key, text)?),
            None => None,
        };
        if let Some(file) = &self.ca_file {
            let ca_key = format!("{key}.ca_file");
            let Some(upstream) = upstream.as_mut() else {
                return Err(ConfigError::new(ca_key, "is for a route with an upstream"));
            };
            if upstream.scheme != http::uri::Scheme::HTTPS {
                return Err(ConfigError::new(
                    ca_key,
                    "only https upstreams use a CA file",
                ));
            }
            upstream.ca_file = Some(PathBuf::from(file));
        }
        Ok(RouteConfig {
            upstream,
            auth,
            strip_prefix: raw::number(&format!("{key}.strip_prefix"), &self.strip_prefix, false)?,
            preserve_host: raw::number(
                &format!("{key}.preserve_host"),
                &self.preserve_host,
                false,
            )?,
            apps: match &self.apps {
                Some(names) => Some(route_apps(
                    &format!("{key}.apps"),
                    &names.entries(),
                    wechat,
                )?),
                None => None,
            },
            timeout: match &self.timeout_ms {
                Some(_) => millis(&format!("{key}.timeout_ms"), &self.timeout_ms, 0)?,
                None => default_timeout,
            },
            rate_limit: match &self.rate_limit {
                Some(limit) => limit.validate(&format!("{key}.rate_limit"))?,
                None => None,
            },
            audience: match self.audience.as_deref().map(str::trim) {
                Some("") => {
                    return Err(ConfigError::new(
                        format!("{key}.audience"),
                        "must not be empty; leave it out for the route's prefix",
                    ))
                }
                Some(audience) => audience.to_string(),
                None => prefix.clone(),
            },
            forward_authorization: raw::number(
                &format!("{key}.forward_authorization"),
                &self.forward_authorization,
                true,
            )?,
            prefix,
        })
    }
}

/// A route's `apps`: names of configured apps, resolved to their appids.
fn route_apps(
    key: &str,
    names: &[&str],
    wechat: &WeChatConfig,
) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(
            key,
            "names no app; leave it out to allow every app",
        ));
    }
    names
        .iter()
        .map(|name| match wechat.app_named(name) {
            Some(app) => Ok(app.appid.clone()),
            None => Err(ConfigError::new(
                key,
                format!("{name:?} is not \"default\" or a [wechat.apps.NAME]"),
            )),
        })
        .collect()
}

/// A route's `upstream`: `http://host:port[/base/path]`.
fn upstream(key: &str, text: &str) -> Result<UpstreamUrl, ConfigError> {
    let uri: http::Uri = text
        .parse()
        .map_err(|error| ConfigError::new(key, format!("{text:?} is not a URL: {error}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::new(
            key,
            format!("{text:?} must start with http:// or https://"),
        ));
    }
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        return Err(ConfigError::new(key, format!("{text:?} has no host")));
    };
    if authority.as_str().contains('@') || uri.query().is_some() {
        return Err(ConfigError::new(
            key,
            "must not carry credentials or a query",
        ));
    }
    let base_path = endpoint_path(key, Some(uri.path()), "/")?
        .trim_end_matches('/')
        .to_string();
    if http::HeaderValue::from_str(authority.as_str()).is_err() {
        return Err(ConfigError::new(key, format!("{text:?} has no valid host")));
    }
    Ok(UpstreamUrl {
        scheme,
        authority,
        base_path,
        ca_file: None,
    })
}
