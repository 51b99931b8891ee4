//! Which peers may describe the original request: the `[server] trusted_proxies` CIDR list.
//!
//! Only a peer in the list may tell the gateway what the client's address, scheme and host were
//! (`X-Forwarded-For/-Proto/-Host`) or which request a forward-auth check is about
//! (`X-Original-*`, `X-Forwarded-Uri/-Method`, the path under the forward-auth prefix). From any
//! other peer those headers are ignored. The list is empty by default: nobody is trusted.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose peers are trusted proxies.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
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

    /// Whether `peer` is a trusted proxy. IPv4 peers seen as IPv4-mapped IPv6 addresses (a dual
    /// stack listener) are matched as IPv4.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|network| network.contains(&peer))
    }

    /// The client's address: the peer itself, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` (read from the right) that is not a trusted proxy. The
    /// left-most entries are whatever the client wrote and are never taken on trust; an entry
    /// that is not an address ends the walk at the last proxy seen.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let mut client = peer;
        if !self.contains(peer) {
            return client;
        }
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for entry in chain.iter().rev() {
            let Some(address) = forwarded_address(entry.trim()) else {
                break;
            };
            client = address;
            if !self.contains(address) {
                break;
            }
        }
        client
    }

    /// The configured networks, for `wxgate check`.
    pub fn networks(&self) -> impl Iterator<Item = String> + '_ {
        self.networks.iter().map(IpNet::to_string)
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| {
        entry
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|socket| socket.ip())
    })
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.networks()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_and_single_addresses() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap();
        assert!(trusted.contains(ip("10.20.30.40")));
        assert!(trusted.contains(ip("192.168.1.7")));
        assert!(!trusted.contains(ip("192.168.1.8")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(!trusted.contains(ip("11.0.0.1")));
        assert!(!trusted.contains(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let trusted = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        assert!(!trusted.contains(ip("::ffff:127.0.0.2")));
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        let trusted = TrustedProxies::default();
        assert!(!trusted.contains(ip("127.0.0.1")));
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let headers = |value: &str| {
            let mut map = http::HeaderMap::new();
            map.insert("x-forwarded-for", value.parse().unwrap());
            map
        };
        let spoofed = headers("6.6.6.6, 1.2.3.4, 10.0.0.2");
        // From a trusted proxy: right to left, past the proxies, never the client's own entries.
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &spoofed), ip("1.2.3.4"));
        // From anyone else the header means nothing.
        assert_eq!(trusted.client_ip(ip("8.8.8.8"), &spoofed), ip("8.8.8.8"));
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &headers("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        // Garbage stops the walk at the last proxy.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &headers("1.2.3.4, junk, 10.0.0.3")),
            ip("10.0.0.3")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &http::HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn host_bits_are_dropped_and_garbage_refused() {
        let trusted = TrustedProxies::parse(["10.1.2.3/8"]).unwrap();
        assert_eq!(trusted.networks().collect::<Vec<_>>(), ["10.0.0.0/8"]);
        for bad in ["10.0.0.0/33", "example.com", "", "10.0.0.0/8/1"] {
            assert!(TrustedProxies::parse([bad]).is_err(), "{bad:?}");
        }
    }
}
