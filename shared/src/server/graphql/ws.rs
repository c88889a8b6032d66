//! GraphQL subscriptions over WebSocket (`/graphql/ws`, both
//! graphql-transport-ws and the legacy graphql-ws protocol): the token is
//! checked at `connection_init`, and the connection closes (4403) when its
//! authority ends: the token's `exp`, a revoked break-glass grant, or the
//! loss of a membership it relied on.

use super::*;

pub(super) async fn websocket<E: Executor>(
    State(st): State<GqlState<E>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // What async-graphql-axum's `GraphQLProtocol` extracts (its field is private).
    let Some(protocol) = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| {
            list.split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(st, socket, protocol))
}

/// What a connection's authority rests on, once its `connection_init` was
/// accepted: the principal and its token's `exp`.
struct Session {
    principal: Principal,
    exp: i64,
}

/// Serves one GraphQL WebSocket connection until the client leaves or the
/// authority it was opened with ends: its token expires, its break-glass
/// grant is revoked, or its subject loses a membership it may rely on. A
/// refused `connection_init` and an ended authority both close with 4403
/// (on the legacy graphql-ws protocol after a `connection_error` message).
async fn serve_socket<E: Executor>(
    st: GqlState<E>,
    socket: WebSocket,
    protocol: WebSocketProtocols,
) {
    let (session_tx, session_rx) = watch::channel::<Option<Arc<Session>>>(None);
    let refused = Arc::new(AtomicBool::new(false));
    // Listen before the session starts, so that no ending falls in between.
    let ends = st.session_ends.as_ref().map(|b| b.subscribe());
    let legacy = protocol == WebSocketProtocols::SubscriptionsTransportWS;
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|m| futures_util::future::ready(m.is_ok()))
        .filter_map(|m| {
            futures_util::future::ready(match m {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                _ => None,
            })
        });
    let (keys, revocations, init_refused) =
        (st.keys.clone(), st.revocations.clone(), refused.clone());
    let messages = async_graphql::http::WebSocket::new(st.executor.clone(), input, protocol)
        .on_connection_init(move |payload| async move {
            let auth = connection_token(&payload);
            match authenticate_expiring(&keys, &revocations, auth.as_deref()) {
                Ok((principal, exp)) => {
                    let mut data = Data::default();
                    data.insert(principal.clone());
                    data.insert(RequestId::new());
                    session_tx.send_replace(Some(Arc::new(Session { principal, exp })));
                    Ok(data)
                }
                Err(e) => {
                    init_refused.store(true, Ordering::Release);
                    Err(e.into_gql())
                }
            }
        });
    futures_util::pin_mut!(messages);
    let ended = authority_ended(session_rx, st.revocations.clone(), ends);
    futures_util::pin_mut!(ended);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else { break };
                let out = match msg {
                    WsMessage::Text(t) => Message::Text(t.into()),
                    // The library closes a refused connection_init with 1002.
                    WsMessage::Close(_, _) if refused.load(Ordering::Acquire) => forbidden(),
                    WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                };
                if sink.send(out).await.is_err() {
                    return;
                }
            }
            why = &mut ended => {
                tracing::info!(reason = why, "subscription connection closed: its authority ended");
                if legacy {
                    let _ = sink.send(connection_error()).await;
                }
                let _ = sink.send(forbidden()).await;
                let _ = sink.close().await;
                return;
            }
        }
    }
    // The legacy protocol answers a refused connection_init with a
    // connection_error message and ends: close it as the other does.
    if legacy && refused.load(Ordering::Acquire) {
        let _ = sink.send(forbidden()).await;
    }
    let _ = sink.close().await;
}

fn forbidden() -> Message {
    Message::Close(Some(CloseFrame {
        code: CLOSE_FORBIDDEN,
        reason: "Forbidden".into(),
    }))
}

/// The legacy protocol's way of telling the client before it closes.
fn connection_error() -> Message {
    Message::Text(
        serde_json::json!({
            "type": "connection_error",
            "payload": {
                "message": REFUSED,
                "extensions": { "code": Code::Unauthenticated.as_str() },
            },
        })
        .to_string()
        .into(),
    )
}

/// How often a break-glass connection checks that its grant still stands
/// (one hash lookup).
const REVOCATION_CHECK: Duration = Duration::from_millis(200);

/// Resolves, with the reason, when the session's authority ends; never
/// before a session started.
async fn authority_ended(
    mut session: watch::Receiver<Option<Arc<Session>>>,
    revocations: Revocations,
    mut ends: Option<broadcast::Receiver<SessionEnd>>,
) -> &'static str {
    let s = loop {
        if let Some(s) = session.borrow_and_update().clone() {
            break s;
        }
        if session.changed().await.is_err() {
            // No session will start (the init was refused or never came).
            return std::future::pending().await;
        }
    };
    let left_ms = (s.exp * 1000 - chrono::Utc::now().timestamp_millis()).max(0);
    let expiry = tokio::time::sleep(Duration::from_millis(left_ms as u64));
    futures_util::pin_mut!(expiry);
    let mut tick = tokio::time::interval(REVOCATION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut expiry => return "token expired",
            _ = tick.tick(), if s.principal.break_glass.is_some() => {
                if revocations.check(&s.principal).is_err() {
                    return "break-glass access revoked";
                }
            }
            ev = async { ends.as_mut().expect("guarded").recv().await }, if ends.is_some() => {
                match ev {
                    Ok(e) if e.subject == s.principal.subject
                        && !e.tenant.is_some_and(|t| s.principal.can_read_tenant(t)) =>
                    {
                        return "membership removed";
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => ends = None,
                }
            }
        }
    }
}

/// The `Authorization` value carried by a `connection_init` payload, in any
/// of the spellings clients use.
fn connection_token(payload: &serde_json::Value) -> Option<String> {
    for key in ["Authorization", "authorization"] {
        if let Some(v) = payload.get(key).and_then(|v| v.as_str()) {
            return Some(v.to_owned());
        }
        if let Some(v) = payload
            .get("headers")
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
        {
            return Some(v.to_owned());
        }
    }
    payload
        .get("token")
        .and_then(|v| v.as_str())
        .map(|t| format!("Bearer {t}"))
}
