//! `[[routes]]` validation: the prefix, the upstream URL and its CA, the auth mode, the apps a
//! route serves and its per-user rate limit; each error names `routes[N].key`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{self, RawRoute};
use super::validate::{endpoint_path, millis, required};
use super::{ConfigError, WeChatConfig};
use crate::routes::{AuthMode, Route, Upstream, UpstreamCa};

impl RawRoute {
    pub(super) fn validate(
        &self,
        key: &str,
        default_timeout: Duration,
        wechat: &WeChatConfig,
    ) -> Result<Route, ConfigError> {
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
            let certificates = crate::tls::read_certificates(std::path::Path::new(file))
                .map_err(|message| ConfigError::new(&ca_key, message))?;
            crate::tls::upstream_client_config(&certificates)
                .map_err(|message| ConfigError::new(&ca_key, message))?;
            upstream.ca = Some(UpstreamCa {
                file: PathBuf::from(file),
                certificates: Arc::new(certificates),
            });
        }
        Ok(Route {
            prefix,
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
fn upstream(key: &str, text: &str) -> Result<Upstream, ConfigError> {
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
    let host_header = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| ConfigError::new(key, format!("{text:?} has no valid host")))?;
    Ok(Upstream {
        scheme,
        authority,
        host_header,
        base_path,
        ca: None,
        pool: 0,
    })
}
