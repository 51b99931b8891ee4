//! TLS: the process-wide crypto provider (ring), server certificates chosen by SNI and reloaded
//! without a restart, the acceptor for the public listener, and the client config for https
//! upstreams.
//!
//! Certificates are matched against their own names (SAN DNS names and IPs, wildcards included),
//! so the config lists only files. The first certificate is the default for clients that send no
//! SNI or a name no certificate covers. Files are polled for changes and reloaded on SIGHUP; a new
//! set that does not load (unreadable, mismatched key, broken PEM) is refused, logged, and the old
//! set keeps serving.

pub mod dev;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use crate::config::{CertificateFiles, TlsConfig};

/// The ring provider: the one crypto backend of the whole process (no cmake, no aws-lc).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, for reqwest (built without one).
pub(crate) fn install_crypto_provider() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS acceptor for the public listener, and its resolver for reloads.
pub(crate) fn acceptor(
    config: &TlsConfig,
    alpn_h2: bool,
) -> Result<(tokio_rustls::TlsAcceptor, Arc<CertResolver>), String> {
    let resolver = Arc::new(CertResolver::load(config.certificates.clone())?);
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // Stateless session tickets (as nginx issues by default), sealed with keys of this process
    // that rotate every six hours: any number of clients resume their sessions, where rustls'
    // default, a cache of 256 sessions on the server, let only the last ~128 connections' clients
    // resume (bench/RESULTS.md, "Shapes"), and mobile clients reconnect often. TLS 1.3
    // resumption still makes a fresh key exchange (rustls offers only psk_dhe_ke).
    server.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|error| error.to_string())?;
    server.alpn_protocols = if alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(server)), resolver))
}

/// Client TLS for https upstreams: the system roots plus, when given, extra CA certificates.
pub(crate) fn upstream_client_config(
    extra_ca: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA may be all that is needed.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for certificate in extra_ca {
        roots
            .add(certificate.clone())
            .map_err(|error| format!("CA certificate not usable: {error}"))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads every PEM certificate in a file.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read certificates from {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// Loads one chain and key and checks that they belong together.
fn load_certified_key(files: &CertificateFiles) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_certificates(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|error| {
        format!(
            "cannot read a private key from {}: {error}",
            files.key_file.display()
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|error| {
        format!(
            "{} and {} do not form a usable certificate: {error}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// The certificates served, chosen per handshake by SNI.
#[derive(Debug)]
pub(crate) struct CertResolver {
    files: Vec<CertificateFiles>,
    current: RwLock<Arc<Vec<Arc<CertifiedKey>>>>,
    /// Modification times of the files at the last reload attempt, to spot changes.
    last_seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl CertResolver {
    /// Loads every configured certificate; any failure refuses the whole set.
    pub(crate) fn load(files: Vec<CertificateFiles>) -> Result<Self, String> {
        let last_seen = modification_times(&files);
        let keys = files
            .iter()
            .map(load_certified_key)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertResolver {
            files,
            current: RwLock::new(Arc::new(keys)),
            last_seen: Mutex::new(last_seen),
        })
    }

    /// Reloads when a file changed (or always, when `force`): the new set replaces the old one
    /// only if all of it loads.
    pub(crate) fn reload(&self, force: bool) {
        let seen = modification_times(&self.files);
        {
            let Ok(mut last_seen) = self.last_seen.lock() else {
                return;
            };
            if !force && *last_seen == seen {
                return;
            }
            *last_seen = seen;
        }
        match self
            .files
            .iter()
            .map(load_certified_key)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(keys) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(keys);
                    tracing::info!(certificates = self.files.len(), "TLS certificates reloaded");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "new TLS certificates refused; the previous ones keep serving")
            }
        }
    }

    /// Reloads on file changes every `interval`, and on SIGHUP, until the task is dropped.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let force = tokio::select! {
                _ = ticks.tick() => false,
                Some(()) = async { match hangups.as_mut() { Some(signal) => signal.recv().await, None => std::future::pending().await } } => true,
            };
            #[cfg(not(unix))]
            let force = {
                ticks.tick().await;
                false
            };
            self.reload(force);
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let keys = self.current.read().ok()?.clone();
        let by_name = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok())
            .and_then(|name| keys.iter().find(|key| covers(key, &name)));
        by_name.or_else(|| keys.first()).cloned()
    }
}

/// Whether a certificate's leaf is valid for `name`.
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.cert
        .first()
        .and_then(|leaf| webpki::EndEntityCert::try_from(leaf).ok())
        .is_some_and(|leaf| leaf.verify_is_valid_for_subject_name(name).is_ok())
}

/// Modification time and size of every file: what changes when a file is replaced.
fn modification_times(files: &[CertificateFiles]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .flat_map(|files| [&files.cert_file, &files.key_file])
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
