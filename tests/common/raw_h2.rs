//! A byte-level HTTP/2 client for one request: it writes frames and HPACK by hand, so it can send
//! what real clients refuse to (connection-specific headers, CR/LF in values, upper-case names).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// How the server ended stream 1.
#[derive(Debug, PartialEq, Eq)]
pub enum H2Outcome {
    /// RST_STREAM with this error code (1: PROTOCOL_ERROR).
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// A response; its body (the gateway's JSON error, or the echo upstream's description).
    Answered(Vec<u8>),
}

/// Sends one request on stream 1 of a fresh h2c (prior knowledge) connection: `headers` in order,
/// pseudo-headers included, each as an HPACK literal; then `body` as one DATA frame, if any.
pub async fn exchange(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> H2Outcome {
    let run = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        let mut block = Vec::new();
        for (name, value) in headers {
            block.push(0x00); // literal header field without indexing, new name
            string(&mut block, name.as_bytes());
            string(&mut block, value.as_bytes());
        }
        let end = if body.is_empty() { END_STREAM } else { 0 };
        frame(&mut out, HEADERS, END_HEADERS | end, 1, &block);
        if !body.is_empty() {
            frame(&mut out, DATA, END_STREAM, 1, body);
        }
        stream.write_all(&out).await.expect("write");
        let mut answered = Vec::new();
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return H2Outcome::GoAway(u32::MAX);
            }
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; length];
            stream
                .read_exact(&mut payload)
                .await
                .expect("frame payload");
            let code = || u32::from_be_bytes(payload[..4].try_into().unwrap());
            match (kind, stream_id) {
                (SETTINGS, 0) if flags & ACK == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, SETTINGS, ACK, 0, &[]);
                    stream.write_all(&ack).await.expect("settings ack");
                }
                (GOAWAY, 0) => {
                    return H2Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
                }
                (RST_STREAM, 1) => return H2Outcome::Reset(code()),
                (DATA, 1) => answered.extend_from_slice(&payload),
                _ => {}
            }
            if stream_id == 1 && matches!(kind, DATA | HEADERS) && flags & END_STREAM != 0 {
                return H2Outcome::Answered(answered);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the gateway ended the stream within 10 s")
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal without Huffman coding (7-bit prefix length).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len();
    if length < 127 {
        out.push(length as u8);
    } else {
        out.push(127);
        length -= 127;
        while length >= 128 {
            out.push((length % 128 + 128) as u8);
            length /= 128;
        }
        out.push(length as u8);
    }
    out.extend_from_slice(bytes);
}
