//! The config as written: TOML with the `WXGATE_<SECTION>__<KEY>` environment overlay applied,
//! deserialized with unknown keys refused. Environment values arrive as strings, so numbers and
//! booleans also accept their string form (`Flex`).

use std::str::FromStr;

use serde::Deserialize;

use super::ConfigError;

/// The prefix of environment variables that override config keys.
const ENV_PREFIX: &str = "WXGATE_";
/// What separates path segments in such a variable: `WXGATE_WECHAT__SECRET` is `wechat.secret`.
const ENV_SEPARATOR: &str = "__";

/// A list of strings written as a TOML array, or as one comma-separated string (from the
/// environment).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum StringList {
    List(Vec<String>),
    Text(String),
}

impl StringList {
    /// The entries, empty ones dropped.
    pub(crate) fn entries(&self) -> Vec<&str> {
        let all: Vec<&str> = match self {
            StringList::List(items) => items.iter().map(String::as_str).collect(),
            StringList::Text(text) => text.split(',').collect(),
        };
        all.into_iter()
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect()
    }
}

/// A number or boolean written natively in TOML, or as a string (from the environment).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Flex<T> {
    Native(T),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) upstream: RawUpstream,
    pub(crate) wechat: RawWeChat,
    pub(crate) jwt: RawJwt,
    pub(crate) login: RawLogin,
    pub(crate) session: RawSession,
    pub(crate) log: RawLog,
    pub(crate) websocket: RawWebSocket,
    pub(crate) forward_auth: RawForwardAuth,
    pub(crate) admin: RawAdmin,
    pub(crate) reload: RawReload,
    pub(crate) wechat_api: super::wechat_api::RawWeChatApi,
    pub(crate) identity: super::identity::RawIdentity,
    pub(crate) tracing: super::telemetry::RawTracing,
    pub(crate) apps: std::collections::BTreeMap<String, super::apps::RawPlatformApp>,
    pub(crate) routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) enabled: Option<Flex<bool>>,
    pub(crate) listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawReload {
    pub(crate) watch: Option<Flex<bool>>,
    pub(crate) interval_ms: Option<Flex<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub(crate) per_minute: Option<Flex<u32>>,
    pub(crate) burst: Option<Flex<u32>>,
    pub(crate) scope: Option<String>,
    pub(crate) on_store_error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawForwardAuth {
    pub(crate) enabled: Option<Flex<bool>>,
    pub(crate) path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) max_body_bytes: Option<Flex<u64>>,
    pub(crate) max_connections: Option<Flex<usize>>,
    pub(crate) header_read_timeout_ms: Option<Flex<u64>>,
    pub(crate) body_read_timeout_ms: Option<Flex<u64>>,
    pub(crate) http2_max_concurrent_streams: Option<Flex<u32>>,
    pub(crate) endpoint_max_in_flight: Option<Flex<usize>>,
    pub(crate) keepalive_timeout_ms: Option<Flex<u64>>,
    pub(crate) workers: Option<Flex<usize>>,
    pub(crate) shutdown_grace_secs: Option<Flex<u64>>,
    pub(crate) max_header_bytes: Option<Flex<usize>>,
    pub(crate) http2: Option<Flex<bool>>,
    pub(crate) h2c: Option<Flex<bool>>,
    pub(crate) redirect_http_listen: Option<String>,
    pub(crate) trusted_proxies: Option<StringList>,
    pub(crate) tls: Option<RawTls>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
    pub(crate) handshake_timeout_ms: Option<Flex<u64>>,
    pub(crate) reload_interval_ms: Option<Flex<u64>>,
    pub(crate) certificates: Vec<RawCertificate>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawWebSocket {
    pub(crate) token_query_param: Option<String>,
    pub(crate) idle_timeout_secs: Option<Flex<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) connect_timeout_ms: Option<Flex<u64>>,
    pub(crate) timeout_ms: Option<Flex<u64>>,
    pub(crate) pool_idle_timeout_secs: Option<Flex<u64>>,
    pub(crate) pool_max_idle_per_host: Option<Flex<usize>>,
    pub(crate) max_in_flight: Option<Flex<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawWeChat {
    pub(crate) appid: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) apps: std::collections::BTreeMap<String, RawApp>,
    pub(crate) api_base: Option<String>,
    pub(crate) timeout_ms: Option<Flex<u64>>,
    pub(crate) retry_backoff_ms: Option<Flex<u64>>,
    pub(crate) breaker_threshold: Option<Flex<u32>>,
    pub(crate) breaker_open_ms: Option<Flex<u64>>,
    pub(crate) push: Option<super::push::RawPush>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) appid: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) push: Option<super::push::RawPush>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub(crate) algorithm: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) private_key_file: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) ttl_secs: Option<Flex<u64>>,
    pub(crate) leeway_secs: Option<Flex<u64>>,
    pub(crate) kid: Option<String>,
    pub(crate) refresh_window_secs: Option<Flex<u64>>,
    pub(crate) verify_keys: Vec<RawJwtKey>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawJwtKey {
    pub(crate) algorithm: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) private_key_file: Option<String>,
    pub(crate) public_key_file: Option<String>,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLogin {
    pub(crate) path: Option<String>,
    pub(crate) refresh_path: Option<String>,
    pub(crate) logout_path: Option<String>,
    pub(crate) rate_limit: Option<RawRateLimit>,
    pub(crate) refresh_rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSession {
    pub(crate) ttl_secs: Option<Flex<u64>>,
    pub(crate) max_entries: Option<Flex<u64>>,
    pub(crate) store: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_password: Option<String>,
    pub(crate) redis_tls: Option<Flex<bool>>,
    pub(crate) redis_ca_file: Option<String>,
    pub(crate) redis_client_cert_file: Option<String>,
    pub(crate) redis_client_key_file: Option<String>,
    pub(crate) redis_sentinels: Option<StringList>,
    pub(crate) redis_sentinel_master: Option<String>,
    pub(crate) redis_sentinel_password: Option<String>,
    pub(crate) redis_key_prefix: Option<String>,
    pub(crate) redis_timeout_ms: Option<Flex<u64>>,
    pub(crate) on_store_error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) level: Option<String>,
    pub(crate) format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) prefix: Option<String>,
    pub(crate) upstream: Option<StringList>,
    pub(crate) balance: Option<String>,
    pub(crate) health: Option<super::upstream_group::RawHealth>,
    pub(crate) auth: Option<String>,
    pub(crate) strip_prefix: Option<Flex<bool>>,
    pub(crate) preserve_host: Option<Flex<bool>>,
    pub(crate) timeout_ms: Option<Flex<u64>>,
    pub(crate) ca_file: Option<String>,
    pub(crate) apps: Option<StringList>,
    pub(crate) rate_limit: Option<RawRateLimit>,
    pub(crate) audience: Option<String>,
    pub(crate) forward_authorization: Option<Flex<bool>>,
}

/// Parses the TOML text, applies the environment overlay, and deserializes the result.
pub(crate) fn parse(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| ConfigError::new("config file", error.to_string()))?;
    let mut root = toml::Value::Table(table);
    // Sorted, so entries appended by index (`..__0__..` before `..__1__..`) come in order.
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !path.contains(ENV_SEPARATOR) {
            continue;
        }
        let segments: Vec<String> = path
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::new(name, "has an empty key segment"));
        }
        set_path(&mut root, &segments, value).map_err(|message| ConfigError::new(name, message))?;
    }
    serde_path_to_error::deserialize(root).map_err(|error| {
        let key = error.path().to_string();
        ConfigError::new(key, error.into_inner().to_string())
    })
}

/// Sets `path` inside `node` to the string `value`, creating tables on the way; a number segment
/// indexes an array entry (`WXGATE_ROUTES__0__UPSTREAM`), one past the last adds an entry.
fn set_path(node: &mut toml::Value, path: &[String], value: String) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = toml::Value::String(value);
        return Ok(());
    };
    match node {
        toml::Value::Table(table) => {
            let indexes_next = rest
                .first()
                .is_some_and(|next| next.parse::<usize>().is_ok());
            let child = table.entry(first.clone()).or_insert_with(|| {
                if indexes_next {
                    toml::Value::Array(Vec::new())
                } else {
                    toml::Value::Table(toml::Table::new())
                }
            });
            set_path(child, rest, value)
        }
        toml::Value::Array(items) => {
            let index: usize = first
                .parse()
                .map_err(|_| format!("`{first}` should be an index into an array"))?;
            let len = items.len();
            if index == len {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            let child = items.get_mut(index).ok_or_else(|| {
                format!("index {index} skips entries: there are {len}, so the next is {len}")
            })?;
            set_path(child, rest, value)
        }
        _ => Err(format!(
            "`{first}` is set inside a value that is not a table"
        )),
    }
}

/// A `Flex` value or its default, parsed from text when it came as text.
pub(crate) fn number<T: FromStr + Copy>(
    key: &str,
    value: &Option<Flex<T>>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(Flex::Native(value)) => Ok(*value),
        Some(Flex::Text(text)) => text
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, format!("{text:?} is not a valid value"))),
    }
}

/// A string value parsed into `T`, or the default text parsed.
pub(crate) fn parse_value<T: FromStr>(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let text = value.unwrap_or(default);
    text.parse()
        .map_err(|error| ConfigError::new(key, format!("{text:?}: {error}")))
}
