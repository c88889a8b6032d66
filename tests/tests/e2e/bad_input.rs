//! Bad input gets a clear error with a stable code, and changes nothing.

use e2e::stack::{CREATE, code, message};
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::{Value, json};

async fn total(s: &Stack) -> u64 {
    let v = s
        .gql(&s.admin(), "{ tenants { totalCount } }", json!({}))
        .await;
    v["data"]["tenants"]["totalCount"].as_u64().unwrap()
}

fn input(key: &str, slug: &str, region: &str, plan: &str) -> Value {
    json!({ "input": { "idempotencyKey": key, "slug": slug, "name": "Acme", "region": region, "plan": plan } })
}

#[tokio::test]
async fn refused_inputs_name_the_field_and_change_nothing() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    s.create_tenant("taken", "us-east-1").await;
    let before = total(&s).await;

    let cases: Vec<(Value, &str, Option<&str>, &str)> = vec![
        (
            input("k1", "acme", "mars-1", "pro"),
            "BAD_USER_INPUT",
            Some("input.region"),
            "valid regions: eu-west-1, us-east-1",
        ),
        (
            input("k2", "ab", "us-east-1", "pro"),
            "BAD_USER_INPUT",
            Some("input.slug"),
            "3 to 63",
        ),
        (
            input("k3", "Not_A_Label", "us-east-1", "pro"),
            "BAD_USER_INPUT",
            Some("input.slug"),
            "DNS label",
        ),
        (
            input("k4", &"a".repeat(64), "us-east-1", "pro"),
            "BAD_USER_INPUT",
            Some("input.slug"),
            "3 to 63",
        ),
        (
            input("k5", "acme", "us-east-1", "platinum"),
            "BAD_USER_INPUT",
            Some("input.plan"),
            "valid plans: free, pro, enterprise",
        ),
        (
            input("", "acme", "us-east-1", "pro"),
            "BAD_USER_INPUT",
            Some("input.idempotencyKey"),
            "idempotency key",
        ),
        (
            input("k6", "taken", "us-east-1", "pro"),
            "CONFLICT",
            None,
            "already taken",
        ),
        (
            input("k7", "taken", "eu-west-1", "pro"),
            "CONFLICT",
            None,
            "already taken",
        ),
    ];
    for (vars, want_code, want_field, want_msg) in cases {
        let body = s.gql(&admin, CREATE, vars.clone()).await;
        assert_eq!(code(&body), Some(want_code), "{vars} → {body}");
        assert!(message(&body).contains(want_msg), "{vars} → {body}");
        if let Some(f) = want_field {
            assert_eq!(
                body.pointer("/errors/0/extensions/field")
                    .and_then(|v| v.as_str()),
                Some(f),
                "{body}"
            );
        }
        assert!(body["data"].is_null(), "{body}");
    }
    let blank = s
        .gql(&admin, CREATE, json!({ "input": { "idempotencyKey": "k8", "slug": "blank", "name": "  ", "region": "us-east-1", "plan": "pro" } }))
        .await;
    assert_eq!(code(&blank), Some("BAD_USER_INPUT"));
    // A missing field is the GraphQL engine's own validation error: still coded.
    let missing = s
        .gql(&admin, CREATE, json!({ "input": { "idempotencyKey": "k9", "slug": "nope", "region": "us-east-1", "plan": "pro" } }))
        .await;
    assert_eq!(code(&missing), Some("BAD_USER_INPUT"), "{missing}");

    assert_eq!(
        total(&s).await,
        before,
        "a refused request changed the directory"
    );
    s.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_other_input() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let first = s
        .gql(
            &admin,
            CREATE,
            input("same-key", "idem", "us-east-1", "pro"),
        )
        .await;
    let again = s
        .gql(
            &admin,
            CREATE,
            input("same-key", "idem", "us-east-1", "pro"),
        )
        .await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(
        first["data"]["createTenant"]["id"],
        again["data"]["createTenant"]["id"]
    );

    let other = s
        .gql(
            &admin,
            CREATE,
            input("same-key", "idem-two", "us-east-1", "pro"),
        )
        .await;
    assert_eq!(code(&other), Some("CONFLICT"), "{other}");
    assert!(message(&other).contains("different input"));
    assert_eq!(total(&s).await, 1);

    // A key released by a definite refusal may be used again once corrected.
    let bad = s
        .gql(&admin, CREATE, input("fix-me", "fixed", "mars-1", "pro"))
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"));
    let fixed = s
        .gql(&admin, CREATE, input("fix-me", "fixed", "eu-west-1", "pro"))
        .await;
    assert!(fixed.get("errors").is_none(), "{fixed}");
    s.stop().await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_make_one_tenant() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let calls = (0..10).map(|_| {
        s.gql(
            &admin,
            CREATE,
            input("burst", "burst", "eu-west-1", "enterprise"),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            assert!(a.get("errors").is_none(), "{a}");
            a["data"]["createTenant"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one tenant for one key");
    assert_eq!(total(&s).await, 1);
    let svc = s.token("global", &[shared::auth::Role::Service], &[], None);
    let (_, cell) = s
        .gql_at(
            &s.cell("eu-west-1-a").url(),
            Some(&svc),
            "{ cell { tenantCount } }",
            json!({}),
        )
        .await;
    assert_eq!(cell["data"]["cell"]["tenantCount"], 1, "{cell}");
    s.stop().await;
}

#[tokio::test]
async fn no_room_in_region_is_unavailable_and_says_why() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![
        CellSpec {
            id: "us-east-1-a",
            region: "us-east-1",
            capacity: 1,
        },
        CellSpec {
            id: "eu-west-1-a",
            region: "eu-west-1",
            capacity: 5,
        },
    ];
    let s = Stack::start_with(o).await;
    s.create_tenant("first", "us-east-1").await;
    let full = s
        .gql(
            &s.admin(),
            CREATE,
            input("k-full", "second", "us-east-1", "pro"),
        )
        .await;
    assert_eq!(code(&full), Some("UNAVAILABLE"), "{full}");
    assert!(message(&full).contains("at capacity"), "{full}");
    assert!(message(&full).contains("us-east-1-a: 1/1"), "{full}");
    assert_eq!(total(&s).await, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_silent_cell_goes_down_and_its_region_refuses_placement() {
    let mut o = Options::new(Backend::Postgres);
    o.heartbeat_timeout = std::time::Duration::from_millis(1500);
    o.heartbeat_interval = std::time::Duration::from_millis(200);
    let mut s = Stack::start_with(o).await;
    let t = s.create_tenant("before", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();

    let idx = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
        .unwrap();
    let eu = s.cells.remove(idx);
    eu.stop().await;

    let admin = s.admin();
    let mut status = String::new();
    for _ in 0..100 {
        let v = s.gql(&admin, "{ cells { id status } }", json!({})).await;
        status = v["data"]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "eu-west-1-a")
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "DOWN" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "DOWN");

    let refused = s
        .gql(&admin, CREATE, input("k-down", "after", "eu-west-1", "pro"))
        .await;
    assert_eq!(code(&refused), Some("UNAVAILABLE"), "{refused}");
    assert!(
        message(&refused).contains("eu-west-1-a is DOWN"),
        "{refused}"
    );

    // The directory still answers for the tenant; what only its cell knows is UNAVAILABLE.
    let v = s
        .gql(
            &admin,
            "query($id: ID!) { tenant(id: $id) { id slug status cell { id status } name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(v["data"]["tenant"]["slug"], "before", "{v}");
    assert_eq!(v["data"]["tenant"]["cell"]["status"], "DOWN");
    assert!(v["data"]["tenant"]["name"].is_null());
    assert_eq!(code(&v), Some("UNAVAILABLE"), "{v}");
    assert_eq!(
        v.pointer("/errors/0/path/1").and_then(|p| p.as_str()),
        Some("name")
    );

    // Other regions are untouched.
    s.create_tenant("elsewhere", "us-east-1").await;
    s.stop().await;
}
