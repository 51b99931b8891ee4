//! `[server]` values that are more than numbers: the TLS listener's certificate files and the
//! trusted proxies' networks, as plain data. `tls` loads the files; `trust` reads forwarding
//! headers from the peers these networks cover.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

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

/// The networks whose peers are trusted proxies.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub(crate) networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or single addresses (`127.0.0.1`).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            let network = match entry.parse::<IpNet>() {
                Ok(network) => network.trunc(),
                Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("{entry:?} is not a CIDR block (10.0.0.0/8) or an IP address")
                })?,
            };
            networks.push(network);
        }
        Ok(TrustedProxies { networks })
    }

    /// The configured networks, for `wxgate check`.
    pub fn networks(&self) -> impl Iterator<Item = String> + '_ {
        self.networks.iter().map(IpNet::to_string)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.networks()).finish()
    }
}
