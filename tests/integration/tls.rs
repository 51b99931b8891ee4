//! TLS termination with a real rustls client trusting a test CA: ALPN, key types, SNI, hot
//! reload, handshake timeout, and https upstreams behind a private CA.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::raw_http::echoed_header;
use crate::common::tls::{https_get, leaf_of, roots_of, temp_dir, tls_section, write_cert};
use crate::common::tokens::{claims, hs256};
use crate::common::{Harness, Setup};
use wxgate::tls::dev::{DevCa, KeyType};

fn tls_setup(section: String) -> Setup {
    Setup {
        server: section,
        ..Setup::default()
    }
}

/// The certificate a fresh HTTP/2 connection to `localhost` is served, after a 200 on /public/x.
async fn served_leaf(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> rustls::pki_types::CertificateDer<'static> {
    let exchange = https_get(addr, "localhost", ca_pem, &[b"h2"], "/public/x", &[])
        .await
        .unwrap();
    assert_eq!(exchange.status, 200);
    exchange.leaf
}

#[tokio::test]
async fn https_speaks_http2_or_http1_as_alpn_decides() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("alpn");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let gateway = Harness::start_with(tls_setup(tls_section(&cert, &key, ""))).await;
    let authorization = format!("Bearer {}", hs256(&claims("o-tls")));
    let headers = [("authorization", authorization.as_str())];

    let h2 = https_get(
        gateway.addr,
        "localhost",
        &ca.cert_pem,
        &[b"h2", b"http/1.1"],
        "/api/x",
        &headers,
    )
    .await
    .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h2.status, 200);
    assert_eq!(echoed_header(&h2.body, "x-openid"), ["o-tls"]);
    assert_eq!(echoed_header(&h2.body, "x-forwarded-proto"), ["https"]);
    assert_eq!(echoed_header(&h2.body, "x-forwarded-host"), ["localhost"]);

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let h1 = https_get(
            gateway.addr,
            "localhost",
            &ca.cert_pem,
            alpn,
            "/api/x",
            &headers,
        )
        .await
        .unwrap();
        assert_eq!(h1.version, http::Version::HTTP_11);
        assert_eq!(h1.status, 200);
        assert_eq!(echoed_header(&h1.body, "x-openid"), ["o-tls"]);
    }
}

#[tokio::test]
async fn rsa_ecdsa_and_ed25519_certificates_all_serve() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("keytypes");
    for key_type in [KeyType::Rsa, KeyType::Ecdsa, KeyType::Ed25519] {
        let name = format!("{key_type:?}");
        let (cert, key) = write_cert(&ca, &dir, &name, &["localhost"], key_type);
        let gateway = Harness::start_with(tls_setup(tls_section(&cert, &key, ""))).await;
        let exchange = https_get(
            gateway.addr,
            "localhost",
            &ca.cert_pem,
            &[b"h2"],
            "/public/x",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(exchange.status, 200, "{name}");
        assert_eq!(exchange.leaf, leaf_of(&cert), "{name}");
    }
}

#[tokio::test]
async fn sni_chooses_the_certificate_that_covers_the_name() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("sni");
    let (cert_a, key_a) = write_cert(&ca, &dir, "a", &["a.test"], KeyType::Ecdsa);
    let (cert_b, key_b) = write_cert(&ca, &dir, "b", &["b.test"], KeyType::Ecdsa);
    let (cert_w, key_w) = write_cert(&ca, &dir, "wild", &["*.wild.test"], KeyType::Ed25519);
    let extra = format!(
        "[[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_b.display(),
        key_b.display(),
        cert_w.display(),
        key_w.display()
    );
    let gateway = Harness::start_with(tls_setup(tls_section(&cert_a, &key_a, &extra))).await;
    for (name, expected) in [
        ("a.test", &cert_a),
        ("b.test", &cert_b),
        ("x.wild.test", &cert_w),
    ] {
        let exchange = https_get(gateway.addr, name, &ca.cert_pem, &[b"h2"], "/public/x", &[])
            .await
            .unwrap();
        assert_eq!(exchange.leaf, leaf_of(expected), "{name}");
        assert_eq!(exchange.status, 200);
    }
    // A name no certificate covers gets the default one, which the client then rejects.
    let error = https_get(
        gateway.addr,
        "other.test",
        &ca.cert_pem,
        &[b"h2"],
        "/public/x",
        &[],
    )
    .await;
    assert!(error.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_reloads_while_serving_and_no_request_fails() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("reload");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let first_leaf = leaf_of(&cert);
    let gateway = Harness::start_with(tls_setup(tls_section(
        &cert,
        &key,
        "reload_interval_ms = 100",
    )))
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let leaves = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, failures, leaves) = (
            stop.clone(),
            served.clone(),
            failures.clone(),
            leaves.clone(),
        );
        let (addr, ca_pem) = (gateway.addr, ca.cert_pem.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match https_get(
                    addr,
                    "localhost",
                    &ca_pem,
                    &[b"h2", b"http/1.1"],
                    "/public/x",
                    &[],
                )
                .await
                {
                    Ok(exchange) if exchange.status == 200 => {
                        served.fetch_add(1, Ordering::SeqCst);
                        leaves.lock().unwrap().push(exchange.leaf);
                    }
                    Ok(exchange) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", exchange.status)),
                    Err(error) => failures.lock().unwrap().push(error),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Replace the files in place, certificate first: for a moment they do not match, and that
    // half-written state must never be served.
    let renewed = ca
        .issue(&["localhost".to_string()], KeyType::Ecdsa)
        .unwrap();
    std::fs::write(&cert, &renewed.chain_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::fs::write(&key, &renewed.key_pem).unwrap();
    let second_leaf = leaf_of(&cert);
    let mut switched = false;
    for _ in 0..100 {
        if leaves.lock().unwrap().last() == Some(&second_leaf) {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(switched, "new connections got the renewed certificate");
    assert!(
        failures.lock().unwrap().is_empty(),
        "failed requests: {:?}",
        failures.lock().unwrap()
    );
    assert!(served.load(Ordering::SeqCst) > 20);
    assert!(leaves
        .lock()
        .unwrap()
        .iter()
        .all(|leaf| *leaf == first_leaf || *leaf == second_leaf));

    // A broken replacement is refused: the renewed certificate keeps serving.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(served_leaf(gateway.addr, &ca.cert_pem).await, second_leaf);
}

#[tokio::test]
async fn sighup_reloads_certificates_at_once() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("sighup");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let gateway = Harness::start_with(tls_setup(tls_section(
        &cert,
        &key,
        "reload_interval_ms = 3600000",
    )))
    .await;
    // Let the watcher install its SIGHUP handler.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let renewed = ca
        .issue(&["localhost".to_string()], KeyType::Ecdsa)
        .unwrap();
    std::fs::write(&cert, &renewed.chain_pem).unwrap();
    std::fs::write(&key, &renewed.key_pem).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let renewed_leaf = leaf_of(&cert);
    let mut reloaded = false;
    for _ in 0..50 {
        if served_leaf(gateway.addr, &ca.cert_pem).await == renewed_leaf {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "SIGHUP reloaded the certificate");
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("handshake");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let gateway = Harness::start_with(tls_setup(tls_section(
        &cert,
        &key,
        "handshake_timeout_ms = 300",
    )))
    .await;
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    served_leaf(gateway.addr, &ca.cert_pem).await; // others are served meanwhile
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "closed by the handshake timeout");
}

#[tokio::test]
async fn an_https_upstream_is_reached_through_its_private_ca_only() {
    let ca = DevCa::new("private upstream CA").unwrap();
    let dir = temp_dir("upstream");
    let (cert, key) = write_cert(&ca, &dir, "upstream", &["localhost"], KeyType::Ecdsa);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    // The https upstream: a second gateway with TLS, forwarding /secure to its echo backend.
    let upstream = Harness::start_with(Setup {
        server: tls_section(&cert, &key, ""),
        extra_routes:
            "[[routes]]\nprefix = \"/secure\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
                .to_string(),
        ..Setup::default()
    })
    .await;
    let port = upstream.addr.port();
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/secure\"\nupstream = \"https://localhost:{port}\"\nauth = \"required\"\nca_file = \"{}\"\n\
             [[routes]]\nprefix = \"/untrusted\"\nupstream = \"https://localhost:{port}/secure\"\nauth = \"none\"\n",
            ca_file.display()
        ),
        ..Setup::default()
    })
    .await;
    let token = hs256(&claims("o-chain"));
    let response = gateway.get_with_token("/secure/x?q=1", &token, &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.upstream_uri(), "/secure/x?q=1");
    assert_eq!(response.upstream_header("x-forwarded-proto"), ["https"]);

    let response = gateway.get("/untrusted/x", &[]).await;
    assert_eq!(
        response.status, 502,
        "the system roots do not trust the private CA"
    );
}

/// One HTTP/2 prior-knowledge request over plain TCP.
async fn h2c_get(addr: std::net::SocketAddr, path: &str) -> Result<u16, String> {
    use bytes::Bytes;
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .map_err(|error| error.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn h2c_with_prior_knowledge_only_when_enabled() {
    let enabled = Harness::start_with(Setup {
        server: "h2c = true".into(),
        ..Setup::default()
    })
    .await;
    assert_eq!(h2c_get(enabled.addr, "/public/x").await, Ok(200));
    assert_eq!(
        enabled.get("/public/x", &[]).await.status,
        200,
        "HTTP/1.1 still works"
    );
    let disabled = Harness::start().await;
    assert_eq!(h2c_get(disabled.addr, "/public/x").await, Ok(505));
    assert_eq!(disabled.echo.requests(), 0);
}

/// One mobile client's TLS connection: a GET read to its end (which delivers the session tickets
/// a TLS 1.3 server sends after the handshake); whether the handshake resumed a session.
async fn connect_and_get(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().expect("handshake done");
    tls.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A peer closing without close_notify is still a full answer here.
    let _ = tls.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    kind
}

/// Catches a server that keeps sessions in a small cache of its own: more clients than it holds
/// each connect once, then all come back, and every one of them resumes.
#[tokio::test]
async fn every_returning_client_resumes_its_tls_session() {
    let ca = DevCa::new("test CA").unwrap();
    let dir = temp_dir("resume");
    let (cert, key) = write_cert(&ca, &dir, "server", &["localhost"], KeyType::Ecdsa);
    let gateway = Harness::start_with(tls_setup(tls_section(&cert, &key, ""))).await;
    let roots = roots_of(&ca.cert_pem);
    // Each client its own config, so its own session store, as on separate phones.
    let clients: Vec<tokio_rustls::TlsConnector> = (0..400)
        .map(|_| {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .collect();
    for client in &clients {
        assert_eq!(
            connect_and_get(gateway.addr, client).await,
            rustls::HandshakeKind::Full
        );
    }
    let mut resumed = 0;
    for client in &clients {
        if connect_and_get(gateway.addr, client).await == rustls::HandshakeKind::Resumed {
            resumed += 1;
        }
    }
    assert_eq!(resumed, clients.len(), "clients that resumed");
}
