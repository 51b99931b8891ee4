//! OpenTelemetry tracing against an OTLP/HTTP receiver decoding with the OpenTelemetry
//! project's own protobuf definitions (`tests/support/otlp_receiver.py`, Python
//! `opentelemetry-proto`): the spans of a login and of a proxied request with their parent/child
//! links, the `traceparent` the upstream got, sampling, and no secret in any attribute.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::redis::RedisServer;
use crate::common::{self, Harness, Setup, APP_SECRET, JWT_SECRET};

const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/otlp_receiver.py"
);

/// Span kinds as OTLP numbers them.
const INTERNAL: u64 = 1;
const SERVER: u64 = 2;
const CLIENT: u64 = 3;

struct Receiver {
    child: Child,
    addr: SocketAddr,
    out: PathBuf,
}

impl Receiver {
    async fn start() -> Option<Receiver> {
        if !common::external::python_modules(
            "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            "pip install opentelemetry-proto",
        ) {
            return None;
        }
        let addr = common::closed_port().await;
        let out = common::scratch_dir("otlp").join("spans.jsonl");
        let child = Command::new("python3")
            .arg(RECEIVER)
            .arg(addr.port().to_string())
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        common::process::wait_listening(addr).await;
        Some(Receiver { child, addr, out })
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The spans of `trace`, once `count` of them arrived (exports run every second).
    async fn trace(&self, trace: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|span| span["trace_id"] == trace)
                .collect();
            if spans.len() >= count {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "only {} spans of {trace}: {spans:#?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A client's sampled `traceparent`: (header, trace id, parent span id).
fn traceparent() -> (String, String, String) {
    let (trace, parent) = (random_hex(16), random_hex(8));
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|span| span["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

async fn gateway(receiver: &Receiver, redis: &RedisServer, ratio: &str) -> Harness {
    Harness::start_with(Setup {
        sections: format!(
            "[tracing]\notlp_endpoint = \"http://{}/\"\nsample_ratio = {ratio}\nservice_name = \"wxgate-test\"\n\
             [session]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"traced:\"\n",
            receiver.addr,
            redis.url()
        ),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_and_a_proxied_request_are_traced_with_their_parents_and_no_secret() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let gateway = gateway(&receiver, &redis, "1.0").await;

    let (header, login_trace, client_span) = traceparent();
    let body = serde_json::json!({ "code": "alice.1" }).to_string();
    let login = common::request(
        gateway.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/json"),
            ("traceparent", &header),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["token"].as_str().unwrap().to_string();

    let (header, request_trace, request_client_span) = traceparent();
    let proxied = gateway
        .get_with_token(
            "/api/orders?id=7",
            &token,
            &[("traceparent", &header), ("tracestate", "client=1")],
        )
        .await;
    assert_eq!(proxied.status, 200, "{}", proxied.text());
    let sent = proxied.upstream_header("traceparent");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", request_trace.as_str(), "01")
    );
    // The vendors' entries the client sent travel on with the trace (W3C Trace Context).
    assert_eq!(proxied.upstream_header("tracestate"), ["client=1"]);

    // The login: the request span under the client's, WeChat and Redis under the request.
    let spans = receiver.trace(&login_trace, 3).await;
    let request = one(&spans, "POST login");
    assert_eq!(request["kind"], SERVER);
    assert_eq!(request["parent_span_id"], client_span.as_str());
    assert_eq!(request["service"], "wxgate-test");
    assert_eq!(request["attributes"]["http.response.status_code"], "200");
    let code2session = one(&spans, "code2session");
    assert_eq!(code2session["kind"], CLIENT);
    assert_eq!(code2session["parent_span_id"], request["span_id"]);
    let redis_calls = named(&spans, "redis");
    assert!(!redis_calls.is_empty(), "{spans:#?}");
    for call in redis_calls {
        assert_eq!(call["parent_span_id"], request["span_id"]);
        assert_eq!(call["attributes"]["db.system.name"], "redis");
    }

    // The proxied request: authentication and the upstream exchange under it; the upstream's
    // traceparent names the upstream span.
    let spans = receiver.trace(&request_trace, 3).await;
    let request = one(&spans, "GET /api");
    assert_eq!(request["parent_span_id"], request_client_span.as_str());
    assert_eq!(request["attributes"]["url.path"], "/api/orders");
    let authenticate = one(&spans, "authenticate");
    assert_eq!(authenticate["kind"], INTERNAL);
    assert_eq!(authenticate["parent_span_id"], request["span_id"]);
    let upstream = one(&spans, "upstream");
    assert_eq!(upstream["kind"], CLIENT);
    assert_eq!(upstream["parent_span_id"], request["span_id"]);
    assert_eq!(upstream["span_id"], parts[2]);
    assert_eq!(
        upstream["attributes"]["server.address"],
        gateway.echo_addr.to_string()
    );

    // Nothing secret in any span: the code, the token, the session_key, the secrets.
    let mut secrets: Vec<String> = vec![
        "alice.1".into(),
        token.clone(),
        APP_SECRET.into(),
        JWT_SECRET.into(),
        "id=7".into(),
    ];
    secrets.extend(gateway.wechat.issued_session_keys());
    let exported = std::fs::read_to_string(&receiver.out).unwrap();
    for secret in &secrets {
        assert!(
            !exported.contains(secret.as_str()),
            "{secret} in an exported span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_ratio_and_a_sampled_parent_and_the_upstream_always_gets_a_parent() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let gateway = gateway(&receiver, &redis, "0").await;
    // Not sampled: the upstream still gets the gateway's span as parent, flags 00, and nothing
    // of the trace is exported.
    let unsampled = gateway.get("/public/x", &[]).await;
    let sent = unsampled.upstream_header("traceparent");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{sent:?}");
    assert_eq!(parts[3], "00");
    let unsampled_trace = parts[1].to_string();
    assert!(unsampled.upstream_header("tracestate").is_empty());
    // A `tracestate` without a valid `traceparent` belongs to no trace the gateway continues:
    // it goes, and the gateway starts a trace of its own.
    for parent in [None, Some("00-not-a-parent-01")] {
        let mut headers = vec![("tracestate", "stale=1")];
        headers.extend(parent.map(|parent| ("traceparent", parent)));
        let restarted = gateway.get("/public/x", &headers).await;
        assert!(
            restarted.upstream_header("tracestate").is_empty(),
            "{parent:?}"
        );
        let sent = restarted.upstream_header("traceparent");
        assert!(
            sent[0].starts_with("00-") && sent[0].ends_with("-00"),
            "{sent:?}"
        );
        assert_ne!(sent[0].split('-').nth(1), Some(unsampled_trace.as_str()));
    }
    // An unsampled parent's trace continues, unsampled, its `tracestate` with it.
    let (header, trace, client_span) = traceparent();
    let header = format!("{}-00", header.strip_suffix("-01").unwrap());
    let continued = gateway
        .get(
            "/public/x",
            &[("traceparent", &header), ("tracestate", "client=2")],
        )
        .await;
    let sent = continued.upstream_header("traceparent");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!((parts[1], parts[3]), (trace.as_str(), "00"), "{sent:?}");
    assert_ne!(parts[2], client_span.as_str());
    assert_eq!(continued.upstream_header("tracestate"), ["client=2"]);
    // A sampled parent keeps the trace sampled, whatever the ratio.
    let (header, trace, _) = traceparent();
    let sampled = gateway.get("/public/y", &[("traceparent", &header)]).await;
    assert!(sampled.upstream_header("traceparent")[0].ends_with("-01"));
    receiver.trace(&trace, 2).await;
    assert!(receiver
        .spans()
        .iter()
        .all(|span| span["trace_id"] != unsampled_trace.as_str()));
}
