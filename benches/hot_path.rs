//! The per-request hot path, piece by piece: token verification (HS256, ES256, EdDSA; first sight
//! and repeat, which the verified-token cache answers), header rewriting, route matching and path
//! normalization. `cargo bench`; the whole gateway under load is measured by `bench/run`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use wxgate::auth::Identity;
use wxgate::config::Config;
use wxgate::headers;
use wxgate::routes::RouteTable;

const HS256_SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

/// A valid configuration with the given `[jwt]` section and a realistic route table.
fn config(jwt: &str) -> Config {
    let text = format!(
        r#"
[wechat]
appid = "wx0123456789abcdef"
secret = "bench-app-secret"

[jwt]
{jwt}

[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:3000"
auth = "none"

[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:3001"
auth = "required"

[[routes]]
prefix = "/api/orders"
upstream = "http://127.0.0.1:3002"
auth = "required"
strip_prefix = true

[[routes]]
prefix = "/api/admin/reports"
upstream = "http://127.0.0.1:3003"
auth = "required"

[[routes]]
prefix = "/public"
upstream = "http://127.0.0.1:3004"
auth = "optional"
"#
    );
    Config::from_toml(&text, std::iter::empty()).expect("bench config")
}

/// Writes a PEM key to a file that lives as long as the bench process.
fn key_file(name: &str, pem: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("wxgate-bench-{}-{name}.pem", std::process::id()));
    std::fs::write(&path, pem).expect("write the key");
    path
}

fn es256_jwt() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let path = key_file("es256", &pem);
    format!("algorithm = \"ES256\"\nprivate_key_file = {path:?}")
}

fn eddsa_jwt() -> String {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let pem = signing.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let path = key_file("eddsa", &pem);
    format!("algorithm = \"EdDSA\"\nprivate_key_file = {path:?}")
}

fn identity() -> Identity {
    Identity {
        openid: "oMock_bench_user_0123456789".into(),
        unionid: Some("uMock_bench_user_0123456789".into()),
        appid: Some("wx0123456789abcdef".into()),
        platform: wxgate::config::Platform::WeChat,
    }
}

fn token_verification(c: &mut Criterion) {
    let algorithms = [
        (
            "HS256",
            format!("algorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\""),
        ),
        ("ES256", es256_jwt()),
        ("EdDSA", eddsa_jwt()),
    ];
    let mut group = c.benchmark_group("token_verify");
    for (name, jwt) in algorithms {
        let config = config(&jwt);
        let keys = &wxgate::token::TokenKeys::load(&config.jwt).expect("keys");
        let token = keys
            .issue(&identity(), Some("0123456789abcdef0123456789abcdef"))
            .expect("issue")
            .token;
        // The full check (header, kid, signature, claims) that a token seen for the first time
        // gets; the refresh path runs exactly that check, without the cache.
        group.bench_function(format!("{name}/first_sight"), |b| {
            b.iter(|| {
                keys.verify_for_refresh(black_box(&token), 0)
                    .expect("valid")
            })
        });
        keys.verify(&token).expect("valid");
        group.bench_function(format!("{name}/repeat_cached"), |b| {
            b.iter(|| keys.verify(black_box(&token)).expect("valid"))
        });
    }
    group.finish();
}

/// What a mini-program's request typically carries.
fn client_headers() -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        (
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.44",
        ),
        (
            "referer",
            "https://servicewechat.com/wx0123456789abcdef/12/page-frame.html",
        ),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.signature-part-of-the-token",
        ),
        ("x-request-id", "a1b2c3d4e5f6"),
    ] {
        map.append(name, HeaderValue::from_static(value));
    }
    map
}

fn header_rewriting(c: &mut Criterion) {
    let template = client_headers();
    // Made once per token in the gateway (the verified-token cache holds them).
    let who = headers::IdentityHeaders::of(&identity()).expect("forwardable identity");
    let peer = headers::PeerAddress::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
    let host = HeaderValue::from_static("api.example.com");
    let request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let names = headers::IdentityNames::default();
    c.bench_function("headers/rewrite_request", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |map| {
                let removed = headers::remove_hop_by_hop(map);
                let owned = headers::GatewayOwned {
                    client: &peer,
                    proto: "https",
                    host: Some(host.clone()),
                    from_proxy: None,
                    names: &names,
                    identity: Some(headers::ForwardedIdentity {
                        headers: &who,
                        app: None,
                        assertion: None,
                    }),
                    request_id: &request_id,
                };
                headers::set_gateway_owned(map, removed, owned);
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn route_matching(c: &mut Criterion) {
    let config = config(&format!(
        "algorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\""
    ));
    let table = RouteTable::new(&config.routes).unwrap();
    let mut group = c.benchmark_group("routes/find");
    for path in [
        "/api/orders/123/items",
        "/public/banner.png",
        "/unrouted/deep/path/x",
    ] {
        group.bench_function(path, |b| b.iter(|| table.find(black_box(path)).is_some()));
    }
    group.finish();
}

fn path_normalization(c: &mut Criterion) {
    let mut group = c.benchmark_group("path/normalize");
    for (name, path) in [
        ("plain", "/api/orders/123/items"),
        (
            "dot_segments",
            "/public/./assets/../../api//orders/%7Euser/items",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| wxgate::path::normalize(black_box(path)).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(
    hot_path,
    token_verification,
    header_rewriting,
    route_matching,
    path_normalization
);
criterion_main!(hot_path);
