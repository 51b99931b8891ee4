//! A raw HTTP/1.1 client: writes the request bytes exactly as given, reads the answer to EOF.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    /// The gateway's error code, asserting the error body has exactly `error` and `message`.
    pub fn error_code(&self) -> String {
        let json = self.json();
        let object = json.as_object().expect("error body is an object");
        assert!(object["message"].is_string(), "error has a message: {json}");
        assert_eq!(
            object.len(),
            2,
            "error body has only error and message: {json}"
        );
        object["error"].as_str().expect("error code").to_string()
    }

    /// The values of a header the echo upstream says it received.
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        echoed_header(&self.body, name)
    }

    /// The request URI the echo upstream says it received.
    pub fn upstream_uri(&self) -> String {
        self.json()["uri"].as_str().expect("echo uri").to_string()
    }
}

/// Sends a request with `Host` and `Connection: close` added, and a Content-Length when a body
/// is given.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut raw =
        format!("{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes).await
}

/// Writes `bytes` as they are and parses what comes back before the connection closes.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to gateway");
        stream.write_all(bytes).await.expect("write request");
        let mut answer = Vec::new();
        // The gateway may close while we still write a refused body: read what came.
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the gateway answered within 20 s");
    parse(&answer)
}

/// Parses one response; decodes a chunked body.
pub fn parse(answer: &[u8]) -> Response {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") else {
            return body;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// The values of a header, from an echo upstream's JSON description of what it received.
pub fn echoed_header(echo_body: &[u8], name: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_slice(echo_body).expect("echo JSON");
    json["headers"][name.to_ascii_lowercase()]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|value| value.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one echo response (its JSON body ends in `}`) from a kept-alive connection.
pub async fn read_echo_response(connection: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    while !answer.ends_with(b"}") {
        let mut chunk = [0u8; 4096];
        let read = connection.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the keep-alive connection stays open");
        answer.extend_from_slice(&chunk[..read]);
    }
    answer
}
