//! Subscriptions over `/graphql/ws`, in both protocols, authenticated by the
//! `connection_init` payload.

use e2e::ws::{connect, next_json, subscribe};
use e2e::{Backend, Stack};
use serde_json::json;
use shared::auth::Role;

const SUB: &str = "subscription { tenantEvents { kind tenant { slug status cell { id } } } }";

async fn receives_created_tenants(protocol: &str) {
    let s = Stack::start(Backend::Postgres).await;
    let (mut ws, ack) = connect(
        &s.url(),
        protocol,
        json!({ "Authorization": format!("Bearer {}", s.admin()) }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    subscribe(&mut ws, protocol, "1", SUB).await;
    // The subscription goes live once the server has read it: keep making
    // tenants until one is heard (the first may come too early).
    let mut msg = serde_json::Value::Null;
    for i in 0..10 {
        s.create_tenant(&format!("streamed-{i}"), "us-east-1").await;
        if let Ok(m) =
            tokio::time::timeout(std::time::Duration::from_secs(1), next_json(&mut ws)).await
        {
            msg = m;
            break;
        }
    }
    let kind = if protocol == "graphql-ws" {
        "data"
    } else {
        "next"
    };
    assert_eq!(msg["type"], kind, "{msg}");
    let ev = &msg["payload"]["data"]["tenantEvents"];
    assert_eq!(ev["kind"], "CREATED");
    assert!(
        ev["tenant"]["slug"]
            .as_str()
            .unwrap()
            .starts_with("streamed-"),
        "{msg}"
    );
    assert_eq!(ev["tenant"]["status"], "ACTIVE");
    assert_eq!(ev["tenant"]["cell"]["id"], "us-east-1-a");
    s.stop().await;
}

#[tokio::test]
async fn graphql_transport_ws_protocol() {
    receives_created_tenants("graphql-transport-ws").await;
}

#[tokio::test]
async fn legacy_graphql_ws_protocol() {
    receives_created_tenants("graphql-ws").await;
}

#[tokio::test]
async fn connection_init_without_a_valid_token_is_refused() {
    let s = Stack::start(Backend::Sqlite).await;
    let (_, answer) = connect(&s.url(), "graphql-transport-ws", json!({})).await;
    assert_ne!(answer["type"], "connection_ack", "{answer}");
    let (_, answer) = connect(
        &s.url(),
        "graphql-transport-ws",
        json!({ "Authorization": "Bearer forged.token.here" }),
    )
    .await;
    assert_ne!(answer["type"], "connection_ack", "{answer}");
    s.stop().await;
}

#[tokio::test]
async fn tenant_principals_only_hear_of_their_tenants() {
    let s = Stack::start(Backend::Sqlite).await;
    let mine = s.create_tenant("mine", "us-east-1").await;
    let id: shared::ids::TenantId = mine["id"].as_str().unwrap().parse().unwrap();
    let viewer = s.token("v", &[Role::TenantViewer], &[id], None);
    let (mut ws, ack) = connect(
        &s.url(),
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {viewer}") }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack");
    subscribe(&mut ws, "graphql-transport-ws", "1", SUB).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    s.create_tenant("theirs", "eu-west-1").await;
    // Nothing of `theirs` reaches the viewer: the stream stays quiet.
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(700), next_json(&mut ws)).await;
    assert!(quiet.is_err(), "viewer heard of another tenant: {quiet:?}");
    s.stop().await;
}
