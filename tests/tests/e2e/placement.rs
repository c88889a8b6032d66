//! Rule-based placement through the API: labels and plan isolation,
//! draining, weighted load, and a preview that explains every cell.

use e2e::stack::code;
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const PREVIEW: &str = "query($r: String!, $p: String!) { placementPreview(region: $r, plan: $p) { cell { id } rejected { cell { id } rule } } }";
const SET_STATE: &str = "mutation($c: ID!, $s: CellState!, $v: Int!, $k: String!) { setCellState(cellId: $c, state: $s, expectedVersion: $v, idempotencyKey: $k) { id state version } }";

fn spec(id: &'static str, region: &'static str) -> CellSpec {
    CellSpec {
        id,
        region,
        capacity: 100,
    }
}

fn rejected(v: &Value) -> Vec<(String, String)> {
    v["data"]["placementPreview"]["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| {
            (
                r["cell"]["id"].as_str().unwrap().to_owned(),
                r["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn placement_follows_labels_state_and_load_and_explains_itself() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![
        spec("us-east-1-a", "us-east-1"),
        spec("us-east-1-b", "us-east-1"),
        spec("us-east-1-c", "us-east-1"),
        spec("eu-west-1-a", "eu-west-1"),
    ];
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    // An operator labels one cell as the dedicated pool.
    let reg = s
        .gql(
            &admin,
            "mutation($i: RegisterCellInput!) { registerCell(input: $i) { id labels { key value } weight } }",
            json!({ "i": { "id": "us-east-1-c", "region": "us-east-1", "endpoint": s.cell("us-east-1-c").endpoint,
                "capacity": 100, "labels": [{ "key": "pool", "value": "dedicated" }] } }),
        )
        .await;
    assert_eq!(
        reg["data"]["registerCell"]["labels"][0]["value"], "dedicated",
        "{reg}"
    );

    let ent = s
        .gql(
            &admin,
            PREVIEW,
            json!({ "r": "us-east-1", "p": "enterprise" }),
        )
        .await;
    assert_eq!(
        ent["data"]["placementPreview"]["cell"]["id"], "us-east-1-c",
        "{ent}"
    );
    assert_eq!(
        rejected(&ent),
        pairs(&[
            ("eu-west-1-a", "REGION"),
            ("us-east-1-a", "PLAN_ISOLATION"),
            ("us-east-1-b", "PLAN_ISOLATION"),
        ])
    );
    let pro = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert_eq!(
        pro["data"]["placementPreview"]["cell"]["id"], "us-east-1-a",
        "ties by id: {pro}"
    );
    assert_eq!(
        rejected(&pro),
        pairs(&[
            ("eu-west-1-a", "REGION"),
            ("us-east-1-b", "LOAD"),
            ("us-east-1-c", "LOAD"),
        ])
    );

    // A stale version is a CONFLICT and changes nothing.
    let stale = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 7, "k": "drain-stale" }),
        )
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let still = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert!(!rejected(&still).contains(&("us-east-1-a".into(), "DRAINING".into())));
    let drained = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 1, "k": "drain-a" }),
        )
        .await;
    assert_eq!(
        drained["data"]["setCellState"]["state"], "DRAINING",
        "{drained}"
    );
    assert_eq!(drained["data"]["setCellState"]["version"], 2, "{drained}");
    // A retry of the same request (same key) gets the cell back, not a
    // CONFLICT on the version it was set from; the key with other input is
    // a CONFLICT.
    let retry = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 1, "k": "drain-a" }),
        )
        .await;
    assert_eq!(
        retry["data"]["setCellState"]["state"], "DRAINING",
        "{retry}"
    );
    assert_eq!(retry["data"]["setCellState"]["version"], 2, "{retry}");
    let reused = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "ACCEPTING", "v": 2, "k": "drain-a" }),
        )
        .await;
    assert_eq!(code(&reused), Some("CONFLICT"), "{reused}");
    // The version it was set from is stale now for a new request; the state
    // it has is a no-op.
    let again = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 1, "k": "drain-b" }),
        )
        .await;
    assert_eq!(code(&again), Some("CONFLICT"), "{again}");
    let same = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "DRAINING", "v": 2, "k": "drain-c" }),
        )
        .await;
    assert_eq!(same["data"]["setCellState"]["version"], 2, "{same}");
    let pro = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert_eq!(
        pro["data"]["placementPreview"]["cell"]["id"], "us-east-1-b",
        "{pro}"
    );
    assert!(rejected(&pro).contains(&("us-east-1-a".into(), "DRAINING".into())));

    let t = s.create_tenant("placed", "us-east-1").await;
    assert_eq!(t["cell"]["id"], "us-east-1-b", "{t}");
    let e = s
        .gql(
            &admin,
            e2e::stack::CREATE,
            json!({ "input": { "idempotencyKey": "ent", "slug": "bigco", "name": "Big", "region": "us-east-1", "plan": "enterprise" } }),
        )
        .await;
    assert_eq!(
        e["data"]["createTenant"]["cell"]["id"], "us-east-1-c",
        "{e}"
    );
    // b and c hold one tenant each: a tie goes to b, until c weighs double.
    let pro = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert_eq!(
        pro["data"]["placementPreview"]["cell"]["id"], "us-east-1-b",
        "{pro}"
    );
    let reg = s
        .gql(
            &admin,
            "mutation($i: RegisterCellInput!) { registerCell(input: $i) { weight labels { key } } }",
            json!({ "i": { "id": "us-east-1-c", "region": "us-east-1", "endpoint": s.cell("us-east-1-c").endpoint,
                "capacity": 100, "weight": 2 } }),
        )
        .await;
    assert_eq!(reg["data"]["registerCell"]["weight"], 2, "{reg}");
    assert_eq!(
        reg["data"]["registerCell"]["labels"][0]["key"], "pool",
        "labels kept: {reg}"
    );
    let pro = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert_eq!(
        pro["data"]["placementPreview"]["cell"]["id"], "us-east-1-c",
        "{pro}"
    );
    let zero = s
        .gql(
            &admin,
            "mutation($i: RegisterCellInput!) { registerCell(input: $i) { weight } }",
            json!({ "i": { "id": "us-east-1-c", "region": "us-east-1", "endpoint": s.cell("us-east-1-c").endpoint,
                "capacity": 100, "weight": 0 } }),
        )
        .await;
    assert_eq!(code(&zero), Some("BAD_USER_INPUT"), "{zero}");

    // Bad input and callers who may not.
    let bad = s
        .gql(&admin, PREVIEW, json!({ "r": "Nowhere!", "p": "pro" }))
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    let bad_plan = s
        .gql(&admin, PREVIEW, json!({ "r": "us-east-1", "p": "gold" }))
        .await;
    assert_eq!(code(&bad_plan), Some("BAD_USER_INPUT"), "{bad_plan}");
    let missing = s
        .gql(
            &admin,
            SET_STATE,
            json!({ "c": "ap-south-1-z", "s": "DRAINING", "v": 1, "k": "drain-unknown" }),
        )
        .await;
    assert_eq!(code(&missing), Some("NOT_FOUND"), "{missing}");
    let viewer = s.token("v", &[Role::TenantViewer], &[], None);
    let denied = s
        .gql(&viewer, PREVIEW, json!({ "r": "us-east-1", "p": "pro" }))
        .await;
    assert_eq!(code(&denied), Some("FORBIDDEN"), "{denied}");
    let sre = s.token("ops", &[Role::Sre], &[], None);
    let denied = s
        .gql(
            &sre,
            SET_STATE,
            json!({ "c": "us-east-1-a", "s": "ACCEPTING", "v": 2, "k": "accept-a" }),
        )
        .await;
    assert_eq!(code(&denied), Some("FORBIDDEN"), "{denied}");
    s.stop().await;
}
