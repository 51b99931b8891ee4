//! TLS test fixtures: a development CA, certificate files, and a rustls client that reports what
//! the handshake negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::net::TcpStream;
use wxgate::tls::dev::{DevCa, KeyType};

/// A fresh folder under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wxgate-{label}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Issues a certificate for `hosts` and writes `<name>.pem` and `<name>-key.pem` into `dir`.
pub fn write_cert(
    ca: &DevCa,
    dir: &Path,
    name: &str,
    hosts: &[&str],
    key_type: KeyType,
) -> (PathBuf, PathBuf) {
    let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
    let issued = ca.issue(&hosts, key_type).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, issued.chain_pem).unwrap();
    std::fs::write(&key, issued.key_pem).unwrap();
    (cert, key)
}

/// A `[server.tls]` section for the default certificate, plus extra lines.
pub fn tls_section(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        cert.display(),
        key.display()
    )
}

/// What one HTTPS exchange saw.
pub struct TlsExchange {
    pub alpn: Option<Vec<u8>>,
    pub leaf: CertificateDer<'static>,
    pub version: http::Version,
    pub status: u16,
    pub body: Bytes,
}

/// A root store trusting the certificates of a PEM text (a test CA).
pub fn roots_of(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    roots
}

/// Connects with SNI `server_name`, trusting `ca_pem`, offering `alpn`, and sends one GET.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
    path: &str,
    headers: &[(&str, &str)],
) -> Result<TlsExchange, String> {
    let roots = roots_of(ca_pem);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|error| error.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();

    let mut request = http::Request::get(format!("https://{server_name}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let io = TokioIo::new(tls);
    let response = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let request = request
            .header("host", server_name)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?
    };
    let version = response.version();
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok(TlsExchange {
        alpn,
        leaf,
        version,
        status,
        body,
    })
}

/// The first certificate of a PEM chain.
pub fn leaf_of(chain_path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(chain_path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}
