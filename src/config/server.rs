//! `[server.tls]` as plain data: the TLS listener's certificate files; `tls` loads them.

use std::path::PathBuf;
use std::time::Duration;

/// One certificate chain and its private key, as files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1): RSA, ECDSA or Ed25519.
    pub key_file: PathBuf,
}

/// `[server.tls]`, validated.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Every certificate served; the first is the default.
    pub certificates: Vec<CertificateFiles>,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}
