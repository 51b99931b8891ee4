//! How the Redis store reaches Redis: by URL (plain, or TLS with the configured CA and client
//! certificate), or through Sentinels, which name the current master.
//!
//! The connection is made on first use and kept; the redis crate's connection manager reconnects
//! it after a failure. With Sentinels a failure that may mean the master moved (the connection
//! lost or refused, a timeout, or `READONLY` from a demoted master) drops it, so the next call
//! asks the Sentinels again and follows a failover without a restart.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, ConnectionAddr, RedisError, RedisResult, TlsCertificates, TlsMode};

use crate::config::{RedisConfig, RedisTarget, RedisTls};

/// Where connections come from.
enum Source {
    /// One address (`redis_url`).
    Client(redis::Client),
    /// The master the Sentinels name now (`redis_sentinels`).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// The store's connection to Redis, made on first use.
pub(super) struct Connector {
    source: Source,
    timeout: Duration,
    current: ArcSwapOption<ConnectionManager>,
    /// Held while a connection is made, so concurrent calls wait for one instead of each making
    /// their own.
    connecting: tokio::sync::Mutex<()>,
}

impl Connector {
    /// Reads the TLS files and checks the settings; does not connect yet. Errors name the key.
    pub(super) fn new(config: &RedisConfig) -> Result<Self, String> {
        let certificates = config.tls.as_ref().map(certificates).transpose()?;
        let source = match &config.target {
            RedisTarget::Url(url) => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.expose())
                    .map_err(|error| unusable("session.redis_url", &error))?;
                if let Some(password) = &config.password {
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_password(password.expose());
                    info = info.set_redis_settings(settings);
                }
                let client = match certificates {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates)
                        .map_err(|error| unusable_tls(&error))?,
                    None => redis::Client::open(info)
                        .map_err(|error| unusable("session.redis_url", &error))?,
                };
                Source::Client(client)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let tls = config.tls.is_some();
                let addresses = sentinels.iter().map(|(host, port)| match tls {
                    true => ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    },
                    false => ConnectionAddr::Tcp(host.clone(), *port),
                });
                let mut builder =
                    SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)
                        .map_err(|error| unusable("session.redis_sentinels", &error))?;
                if let Some(password) = &config.password {
                    builder = builder.set_client_to_redis_password(password.expose());
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_sentinel_password(password.expose());
                }
                if let Some(certificates) = certificates {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(certificates.clone())
                        .set_client_to_sentinel_certificates(certificates);
                }
                let client = builder.build().map_err(|error| match tls {
                    true => unusable_tls(&error),
                    false => unusable("session.redis_sentinels", &error),
                })?;
                Source::Sentinel(tokio::sync::Mutex::new(client))
            }
        };
        Ok(Connector {
            source,
            timeout: config.timeout,
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether a connection has been made (for the store's `Debug`).
    pub(super) fn connected(&self) -> bool {
        self.current.load().is_some()
    }

    /// The connection, made now if there is none.
    pub(super) async fn connection(&self) -> RedisResult<ConnectionManager> {
        if let Some(current) = self.current.load_full() {
            return Ok(ConnectionManager::clone(&current));
        }
        let _turn = self.connecting.lock().await;
        if let Some(current) = self.current.load_full() {
            return Ok(ConnectionManager::clone(&current));
        }
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let client = match &self.source {
            Source::Client(client) => client.clone(),
            Source::Sentinel(sentinels) => sentinels.lock().await.async_get_client().await?,
        };
        let made = client.get_connection_manager_with_config(settings).await?;
        self.current.store(Some(Arc::new(made.clone())));
        Ok(made)
    }

    /// Notes a failed exchange: with Sentinels, one that may mean the master moved drops the
    /// connection, so the next call asks the Sentinels which server is the master now.
    pub(super) fn failed(&self, error: Option<&RedisError>) {
        if !matches!(self.source, Source::Sentinel(_)) {
            return;
        }
        let master_may_have_moved = error.is_none_or(|error| {
            error.is_io_error()
                || error.is_connection_refusal()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        });
        if master_may_have_moved && self.current.swap(None).is_some() {
            tracing::warn!("Redis master unreachable or read-only: asking the Sentinels again");
        }
    }
}

/// The TLS files, read: the CA (instead of the system roots) and the client certificate.
fn certificates(tls: &RedisTls) -> Result<TlsCertificates, String> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| format!("session.{key}: cannot read {}: {error}", path.display()))
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read("redis_ca_file", path)?),
        None => None,
    };
    let client_tls = match &tls.client_cert {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("redis_client_cert_file", cert)?,
            client_key: read("redis_client_key_file", key)?,
        }),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// A settings error in words that never carry the URL (or its password).
fn unusable(key: &str, error: &RedisError) -> String {
    format!("{key}: is not usable: {}", error.category())
}

/// TLS settings the redis crate refused: most often a file that holds no PEM certificate or key.
fn unusable_tls(error: &RedisError) -> String {
    format!(
        "session.redis_ca_file: the TLS settings are not usable ({}): redis_ca_file, \
         redis_client_cert_file and redis_client_key_file must hold PEM certificates and a key",
        error.category()
    )
}
