//! A cell that accepts connections and never answers: the caller gets a
//! clear UNAVAILABLE, nothing is duplicated, and a retry is safe.

use std::time::Duration;

use e2e::stack::{CREATE, code, message};
use e2e::{Backend, Options, Stack};
use serde_json::{Value, json};

/// A TCP listener that accepts and holds connections without a byte in reply.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}")
}

async fn register_silent_cell(s: &Stack) {
    let endpoint = black_hole().await;
    let reg = s
        .gql(
            &s.admin(),
            "mutation($i: RegisterCellInput!) { registerCell(input: $i) { id status } }",
            json!({ "i": { "id": "ap-south-1-a", "region": "ap-south-1", "endpoint": endpoint, "capacity": 10 } }),
        )
        .await;
    assert_eq!(reg["data"]["registerCell"]["status"], "UP", "{reg}");
}

fn input(key: &str, slug: &str) -> Value {
    json!({ "input": { "idempotencyKey": key, "slug": slug, "name": "Silent", "region": "ap-south-1", "plan": "free" } })
}

async fn in_region(s: &Stack) -> Value {
    let v = s
        .gql(&s.admin(), "{ tenants(filter: {region: \"ap-south-1\"}) { totalCount edges { node { slug status } } } }", json!({}))
        .await;
    v["data"]["tenants"].clone()
}

#[tokio::test]
async fn an_unanswered_cell_call_is_unavailable_and_retry_safe() {
    let mut o = Options::new(Backend::Postgres);
    o.cell_timeout = Duration::from_millis(600);
    o.provisioning.wait = Duration::from_secs(2);
    let s = Stack::start_with(o).await;
    register_silent_cell(&s).await;

    let first = s.gql(&s.admin(), CREATE, input("silent-1", "silent")).await;
    assert_eq!(code(&first), Some("UNAVAILABLE"), "{first}");
    assert!(
        message(&first).contains("retry with the same idempotency key"),
        "{first}"
    );
    let page = in_region(&s).await;
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["edges"][0]["node"]["status"], "PROVISIONING");

    let retry = s.gql(&s.admin(), CREATE, input("silent-1", "silent")).await;
    assert_eq!(code(&retry), Some("UNAVAILABLE"), "{retry}");
    assert_eq!(
        in_region(&s).await["totalCount"],
        1,
        "a retry made a second tenant"
    );
    let other_key = s.gql(&s.admin(), CREATE, input("silent-2", "silent")).await;
    assert_eq!(code(&other_key), Some("CONFLICT"), "{other_key}");

    // The rest of the platform does not wait on the silent cell.
    s.create_tenant("healthy", "us-east-1").await;
    s.stop().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_a_coded_timeout() {
    let mut o = Options::new(Backend::Postgres);
    o.cell_timeout = Duration::from_secs(5);
    o.limits.request_timeout_ms = 400;
    let s = Stack::start_with(o).await;
    register_silent_cell(&s).await;

    let (status, body) = s
        .gql_at(&s.url(), Some(&s.admin()), CREATE, input("slow-1", "slow"))
        .await;
    assert_eq!(status, 504);
    assert_eq!(code(&body), Some("UNAVAILABLE"), "{body}");
    assert!(message(&body).contains("400 ms"), "{body}");
    assert!(body.pointer("/errors/0/extensions/requestId").is_some());
    let page = in_region(&s).await;
    assert_eq!(page["totalCount"], 1);
    s.stop().await;
}
