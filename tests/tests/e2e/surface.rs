//! The HTTP surface: limits, malformed requests, GraphiQL, introspection,
//! health, readiness and metrics.

use e2e::stack::code;
use e2e::{Backend, Options, Stack};
use serde_json::json;

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_with_codes() {
    let mut o = Options::new(Backend::Postgres);
    o.limits.max_body_bytes = 4096;
    o.limits.max_depth = 4;
    o.limits.max_complexity = 20;
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    let url = format!("{}/graphql", s.url());

    let resp = s
        .http
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    assert!(body.pointer("/errors/0/extensions/requestId").is_some());

    let huge = json!({ "query": "{ __typename }", "variables": { "pad": "x".repeat(10_000) } });
    let resp = s
        .http
        .post(&url)
        .bearer_auth(&admin)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));

    let parse_error = s.gql(&admin, "{ tenants { ", json!({})).await;
    assert_eq!(code(&parse_error), Some("BAD_USER_INPUT"), "{parse_error}");
    let unknown_field = s.gql(&admin, "{ nope }", json!({})).await;
    assert_eq!(code(&unknown_field), Some("BAD_USER_INPUT"));

    let deep = "{ tenants { edges { node { cell { id } } } } }";
    let body = s.gql(&admin, deep, json!({})).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{body}"
    );

    let complex = "{ a: cells { id region endpoint status } b: cells { id region endpoint status } c: cells { id region endpoint status } d: cells { id region endpoint status } e: cells { id region } }";
    let body = s.gql(&admin, complex, json!({})).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{body}"
    );

    // Introspection is off unless configured; GraphiQL only in dev mode.
    let intro = s
        .gql(&admin, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(intro["data"]["__schema"].is_null(), "{intro}");
    let page = s.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 404);

    // Every answer names its request.
    let resp = s
        .http
        .post(&url)
        .bearer_auth(&admin)
        .header("x-request-id", "req-123")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "req-123");
    s.stop().await;
}

#[tokio::test]
async fn dev_mode_serves_graphiql_and_introspection() {
    let mut o = Options::new(Backend::Sqlite);
    o.dev_mode = true;
    o.introspection = true;
    let s = Stack::start_with(o).await;
    let page = s
        .http
        .get(format!("{}/graphql", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );
    let intro = s
        .gql(&s.admin(), "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(intro["data"]["__schema"]["queryType"]["name"], "Query");
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_on_both_tiers() {
    let s = Stack::start(Backend::Postgres).await;
    s.create_tenant("metered", "us-east-1").await;
    for base in [s.url(), s.cell("us-east-1-a").url()] {
        let h = s.http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(h.status(), 200);
        let r = s.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let m = e2e::stack::metrics_request(&s.http, &base)
            .send()
            .await
            .unwrap();
        assert_eq!(m.status(), 200);
        assert!(
            m.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = m.text().await.unwrap();
        assert!(
            text.contains("# TYPE tcp_http_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("route=\"/graphql\""), "{text}");
    }
    let text = s
        .http
        .get(format!("{}/metrics", s.url()))
        .bearer_auth(e2e::stack::metrics_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tcp_cells{status=\"UP\",tier=\"global\"} 2"),
        "{text}"
    );

    // Readiness follows the database: close it and the tier says so.
    let _ = s.cell("us-east-1-a").state.db.close_by_ref().await;
    let r = s
        .http
        .get(format!("{}/readyz", s.cell("us-east-1-a").url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    s.stop().await;
}
