//! A minimal GraphQL-over-WebSocket client for both subprotocols.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with `protocol` (`graphql-transport-ws` or
/// `graphql-ws`) and sends `connection_init` with `payload`.
pub async fn open(base_http: &str, protocol: &str, payload: Value) -> Socket {
    let url = format!("{}/graphql/ws", base_http.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .unwrap();
    socket
}

/// Like [`open`], and returns the server's first answer too.
pub async fn connect(base_http: &str, protocol: &str, payload: Value) -> (Socket, Value) {
    let mut socket = open(base_http, protocol, payload).await;
    let first = next_json(&mut socket).await;
    (socket, first)
}

/// The next JSON message, skipping keep-alives; `Null` when the socket closed.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a websocket message within 10 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ka" || v["type"] == "ping" || v["type"] == "pong" {
                    continue;
                }
                return v;
            }
            Some(Ok(Message::Close(frame))) => {
                return json!({ "type": "closed", "reason": frame.map(|f| f.reason.to_string()) });
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return json!({ "type": "closed" }),
        }
    }
}

pub async fn subscribe(socket: &mut Socket, protocol: &str, id: &str, query: &str) {
    let kind = if protocol == "graphql-ws" {
        "start"
    } else {
        "subscribe"
    };
    socket
        .send(Message::text(
            json!({ "type": kind, "id": id, "payload": { "query": query } }).to_string(),
        ))
        .await
        .unwrap();
}
