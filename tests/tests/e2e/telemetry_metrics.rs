//! `/metrics` of a running global tier: GraphQL requests per operation,
//! the tenant's cell and plan; per-tenant series bounded to the busiest
//! `metrics_top_tenants`, every other tenant folded into `tenant="other"`.

use e2e::{Backend, Options, Stack};
use futures_util::StreamExt;
use serde_json::json;

async fn scrape(s: &Stack, base: &str) -> String {
    s.http
        .get(format!("{base}/metrics"))
        .bearer_auth(e2e::stack::metrics_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the series whose line starts with `prefix` and holds every label in `labels`.
fn value(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn tenant_series_stay_bounded_and_operations_carry_cell_and_plan() {
    let mut o = Options::new(Backend::Postgres);
    o.limits.metrics_top_tenants = 3;
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    let t = s.create_tenant("metered", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();

    let read = "query($id: ID!) { tenant(id: $id) { id name } }";
    for _ in 0..5 {
        let body = s.gql(&admin, read, json!({ "id": id })).await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    // 600 other tenant ids, each asked once (they do not exist: NOT_FOUND,
    // which is the caller's error, not the server's).
    let many: Vec<String> = (0..600).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let answers: Vec<serde_json::Value> = futures_util::stream::iter(many.iter())
        .map(|t| s.gql(&admin, read, json!({ "id": t })))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers
            .iter()
            .all(|b| e2e::stack::code(b) == Some("NOT_FOUND"))
    );

    let text = scrape(&s, &s.url()).await;
    let tenant_series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tcp_tenant_requests_total{"))
        .collect();
    assert!(
        tenant_series.len() <= (3 + 1) * 2,
        "at most 3 tenants and `other`, by outcome: {tenant_series:#?}"
    );
    let total: f64 = tenant_series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // createTenant and five reads of the real tenant, 600 unknown ones.
    assert_eq!(
        total, 606.0,
        "every tenant request is counted once: {tenant_series:#?}"
    );
    let other = value(&text, "tcp_tenant_requests_total{", &["tenant=\"other\""]).unwrap_or(0.0);
    assert!(
        other >= 600.0 - 3.0,
        "the rest fold into other: {tenant_series:#?}"
    );
    // The first tenants fill the free slots, so the real one has its own series.
    assert_eq!(
        value(
            &text,
            "tcp_tenant_requests_total{",
            &[&format!("tenant=\"{id}\""), "outcome=\"ok\""]
        ),
        Some(6.0),
        "{tenant_series:#?}"
    );

    // Per operation, cell and plan: the reads of the real tenant carry its
    // home cell and plan; the unknown ones neither, and count as rejected.
    assert_eq!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &[
                "operation=\"tenant\"",
                "cell=\"eu-west-1-a\"",
                "plan=\"pro\"",
                "outcome=\"ok\""
            ]
        ),
        Some(5.0),
        "{}",
        text.lines()
            .filter(|l| l.starts_with("tcp_graphql_operations_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &["operation=\"tenant\"", "cell=\"\"", "outcome=\"rejected\""]
        ),
        Some(600.0)
    );
    assert!(
        value(
            &text,
            "tcp_graphql_operation_duration_seconds_count{",
            &[
                "operation=\"tenant\"",
                "cell=\"eu-west-1-a\"",
                "plan=\"pro\""
            ]
        ) == Some(5.0)
    );
    assert!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &["operation=\"createTenant\"", "outcome=\"ok\""]
        )
        .is_some(),
        "createTenant is an operation too"
    );
    // A query naming no schema field is not an operation label.
    let bad = s.gql(&admin, "{ noSuchField }", json!({})).await;
    assert_eq!(e2e::stack::code(&bad), Some("BAD_USER_INPUT"));
    let text = scrape(&s, &s.url()).await;
    assert!(
        !text.contains("noSuchField"),
        "unvalidated names never become labels"
    );
    assert!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &["operation=\"unknown\"", "outcome=\"rejected\""]
        )
        .is_some()
    );

    // The cell's own registry: operations without a cell label (every
    // series of a cell carries `cell` already), the tenant's plan.
    let cell = s.cell("eu-west-1-a").url();
    let text = scrape(&s, &cell).await;
    assert!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &[
                "operation=\"tenants\"",
                "plan=\"pro\"",
                "cell=\"eu-west-1-a\""
            ]
        )
        .is_some(),
        "{}",
        text.lines()
            .filter(|l| l.starts_with("tcp_graphql_operations_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.stop().await;
}

/// The operations lines of a scrape, for failure messages.
fn operations(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("tcp_graphql_operations_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn every_tenant_scoped_operation_carries_its_cell_and_plan() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let t = s.create_tenant("labelled", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();

    // Operations whose resolvers only know the tenant id: a query and a
    // mutation routed to the cell, and one served by the global tier alone.
    let config = s
        .gql(
            &admin,
            "query($t: ID!) { effectiveConfig(tenantId: $t) { key } }",
            json!({ "t": id }),
        )
        .await;
    assert!(config.get("errors").is_none(), "{config}");
    let project = s
        .gql(
            &admin,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": id, "name": "web", "idempotencyKey": "web" } }),
        )
        .await;
    assert!(project.get("errors").is_none(), "{project}");
    let member = s
        .gql(
            &admin,
            "mutation($i: AddMemberInput!) { addMember(input: $i) { subject } }",
            json!({ "i": { "tenantId": id, "subject": "carol", "role": "member", "idempotencyKey": "m1" } }),
        )
        .await;
    assert!(member.get("errors").is_none(), "{member}");

    let text = scrape(&s, &s.url()).await;
    for op in ["effectiveConfig", "createProject", "addMember"] {
        assert_eq!(
            value(
                &text,
                "tcp_graphql_operations_total{",
                &[
                    &format!("operation=\"{op}\""),
                    "cell=\"eu-west-1-a\"",
                    "plan=\"pro\"",
                    "outcome=\"ok\""
                ]
            ),
            Some(1.0),
            "{op}:\n{}",
            operations(&text)
        );
    }
    // A refused one is labelled too.
    let stale = s
        .gql(
            &admin,
            "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan } }",
            json!({ "i": { "tenantId": id, "plan": "enterprise", "expectedVersion": 9, "idempotencyKey": "stale-plan" } }),
        )
        .await;
    assert_eq!(e2e::stack::code(&stale), Some("CONFLICT"), "{stale}");
    let text = scrape(&s, &s.url()).await;
    assert_eq!(
        value(
            &text,
            "tcp_graphql_operations_total{",
            &[
                "operation=\"changePlan\"",
                "cell=\"eu-west-1-a\"",
                "plan=\"pro\"",
                "outcome=\"rejected\""
            ]
        ),
        Some(1.0),
        "{}",
        operations(&text)
    );

    // In the cell, the same writes carry the tenant's plan.
    let text = scrape(&s, &s.cell("eu-west-1-a").url()).await;
    for op in ["effectiveConfig", "createProject"] {
        assert!(
            value(
                &text,
                "tcp_graphql_operations_total{",
                &[&format!("operation=\"{op}\""), "plan=\"pro\""]
            )
            .is_some_and(|n| n >= 1.0),
            "{op}:\n{}",
            operations(&text)
        );
    }
    s.stop().await;
}
