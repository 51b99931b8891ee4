//! `[[routes]]`: the prefix, the upstream (`upstream_group`), the auth mode, the apps a route
//! serves and its per-user rate limit, as plain data; each validation error names
//! `routes[N].key`. The running route table (`routes`) is built from these.

use std::time::Duration;

use super::raw::{self, RawRoute};
use super::upstream_group::{RawUpstreamKeys, UpstreamGroupConfig};
use super::validate::{endpoint_path, millis, required};
use super::{ConfigError, WeChatConfig};

/// A rate limit as configured (a route's per-user one, and the login and refresh ones): `burst`
/// requests at once, refilled at `per_minute`, in each replica or across the fleet. The buckets
/// that enforce it are `rate_limit`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once (the bucket's size).
    pub burst: u32,
    /// Where requests are counted (`scope`).
    pub scope: LimitScope,
}

/// Where a rate limit counts (`scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// In this replica's memory: each replica lets the limit through (the default).
    Local,
    /// In the session store's Redis, shared by every replica; `on_store_error` says what
    /// happens while Redis cannot count.
    Fleet(FleetFallback),
}

/// What a fleet-wide limit does while Redis cannot count (`on_store_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetFallback {
    /// Counts in this replica's own bucket meanwhile (the default).
    Local,
    /// Refuses the request: 503 `session_store_unavailable`.
    Refuse,
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

/// One `[[routes]]` entry, validated.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The normalized prefix (no trailing slash, except the root `/`).
    pub prefix: String,
    /// Where matching requests go (one instance or several); `None` for a rule that only
    /// decides forward-auth checks (the proxy answers 404 for it).
    pub upstream: Option<UpstreamGroupConfig>,
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
        let upstream = RawUpstreamKeys {
            upstream: self.upstream.as_ref(),
            ca_file: self.ca_file.as_deref(),
            balance: self.balance.as_deref(),
            health: self.health.as_ref(),
        }
        .validate(key)?;
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
