//! WebSockets through the gateway: the upgrade is authenticated like any request (header, or the
//! configured query parameter, removed before forwarding), identity headers are set on it, then
//! messages flow both ways; refused upgrades never reach the upstream.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::tokens::{claims, hs256};
use crate::common::ws::ws_echo_upstream;
use crate::common::{Harness, Setup};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<TcpStream>;

async fn gateway_with_ws(
    sections: &str,
) -> (Harness, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (ws_addr, upgrades) = ws_echo_upstream().await;
    let gateway = Harness::start_with(Setup {
        extra_routes: format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws_addr}\"\nauth = \"required\"\n"
        ),
        sections: sections.to_string(),
        ..Setup::default()
    })
    .await;
    (gateway, upgrades)
}

/// Opens a WebSocket through the gateway with extra request headers.
pub(crate) async fn connect(
    gateway: &Harness,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Socket, serde_json::Value), Error> {
    let mut request = format!("ws://{}{path}", gateway.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    let hello = socket.next().await.unwrap().unwrap();
    let seen = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    Ok((socket, seen))
}

fn status_of(result: Result<(Socket, serde_json::Value), Error>) -> u16 {
    match result {
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the upgrade should have been refused"),
    }
}

async fn assert_echoes(socket: &mut Socket) {
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    let binary = vec![0u8, 1, 2, 255];
    socket.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(binary)
    );
}

#[tokio::test]
async fn an_authenticated_upgrade_relays_messages_with_identity_set() {
    let (gateway, _) = gateway_with_ws("").await;
    let authorization = format!("Bearer {}", hs256(&claims("o-socket")));
    let (mut socket, seen) = connect(
        &gateway,
        "/ws/chat?room=1",
        &[("Authorization", &authorization), ("X-OpenId", "o-spoofed")],
    )
    .await
    .unwrap();
    assert_eq!(seen["uri"], "/ws/chat?room=1");
    assert_eq!(seen["x-openid"], serde_json::json!(["o-socket"]));
    assert_echoes(&mut socket).await;
    socket.close(None).await.unwrap();
}

/// Catches a build that relays an upgrade before authenticating it, or reads a token from the
/// query when that is not configured.
#[tokio::test]
async fn upgrades_without_a_valid_token_are_refused_before_the_upstream() {
    let (gateway, upgrades) = gateway_with_ws("").await;
    assert_eq!(status_of(connect(&gateway, "/ws/chat", &[]).await), 401);
    assert_eq!(
        status_of(connect(&gateway, "/ws/chat", &[("Authorization", "Bearer forged")]).await),
        401
    );
    let expired = {
        let mut expired = claims("o1");
        expired["exp"] = serde_json::json!(crate::common::tokens::now() - 600);
        format!("Bearer {}", hs256(&expired))
    };
    assert_eq!(
        status_of(connect(&gateway, "/ws/chat", &[("Authorization", &expired)]).await),
        401
    );
    // the query parameter is not a token source unless configured
    let token = hs256(&claims("o1"));
    assert_eq!(
        status_of(connect(&gateway, &format!("/ws/chat?access_token={token}"), &[]).await),
        401
    );
    assert_eq!(upgrades.load(Ordering::SeqCst), 0);
    assert_eq!(gateway.echo.requests(), 0);
}

/// Catches a build that leaks the query token to the upstream, or picks one of two tokens when
/// both the header and the query carry one.
#[tokio::test]
async fn the_configured_query_parameter_carries_the_token_and_is_removed() {
    let (gateway, upgrades) =
        gateway_with_ws("[websocket]\ntoken_query_param = \"access_token\"\n").await;
    let token = hs256(&claims("o-query"));
    let (mut socket, seen) = connect(
        &gateway,
        &format!("/ws/chat?room=7&access_token={token}&x=y"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(seen["uri"], "/ws/chat?room=7&x=y");
    assert_eq!(seen["x-openid"], serde_json::json!(["o-query"]));
    assert_echoes(&mut socket).await;

    let authorization = format!("Bearer {token}");
    let both = connect(
        &gateway,
        &format!("/ws/chat?access_token={token}"),
        &[("Authorization", &authorization)],
    )
    .await;
    assert_eq!(status_of(both), 401, "a token in both places is ambiguous");
    assert_eq!(upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn open_websockets_finish_during_shutdown() {
    let (mut gateway, _) = gateway_with_ws("").await;
    let authorization = format!("Bearer {}", hs256(&claims("o-late")));
    let (mut socket, _) = connect(&gateway, "/ws/chat", &[("Authorization", &authorization)])
        .await
        .unwrap();
    let server = gateway.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.is_finished(),
        "shutdown waits for the open WebSocket"
    );
    assert_echoes(&mut socket).await;
    socket.close(None).await.unwrap();
    drop(socket);
    let result = tokio::time::timeout(Duration::from_secs(4), server)
        .await
        .expect("run returns once the WebSocket closed");
    assert!(result.unwrap().is_ok());
}
