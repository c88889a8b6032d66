//! Plans: default quotas and entitlements, per-tenant overrides, versioned
//! and audited plan changes, quotas enforced on projects.

use e2e::stack::{CREATE, code};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const PLAN: &str = "query($id: ID!) { tenant(id: $id) { plan planDetails { plan version limits { name limit } entitlements { name enabled source } } } }";
const CHANGE: &str = "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan version entitlements { name enabled source } } }";
const OVERRIDE: &str = "mutation($i: SetEntitlementOverrideInput!) { setEntitlementOverride(input: $i) { version entitlements { name enabled source } } }";
const PROJECT: &str = "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }";

fn entitlement<'a>(plan: &'a Value, name: &str) -> (&'a Value, &'a Value) {
    let e = plan["entitlements"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap();
    (&e["enabled"], &e["source"])
}

#[tokio::test]
async fn plans_quotas_overrides_and_versioned_changes() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let id = s.create_tenant("planned", "us-east-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = s.gql(&admin, PLAN, json!({ "id": id })).await;
    let p = &v["data"]["tenant"]["planDetails"];
    assert_eq!(p["plan"], "pro", "{v}");
    assert_eq!(p["version"], 1);
    assert!(
        p["limits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "max_projects" && q["limit"] == 10)
    );
    assert_eq!(entitlement(p, "sso"), (&json!(false), &json!("PLAN")));
    assert_eq!(
        entitlement(p, "audit_export"),
        (&json!(true), &json!("PLAN"))
    );

    let ov = |name: &str, enabled: Value, expected: i64| json!({ "i": { "tenantId": id, "name": name, "enabled": enabled, "expectedVersion": expected, "idempotencyKey": format!("ov-{name}-{enabled}-{expected}") } });
    let on = s.gql(&admin, OVERRIDE, ov("sso", json!(true), 1)).await;
    let on = &on["data"]["setEntitlementOverride"];
    assert_eq!(on["version"], 2, "{on}");
    assert_eq!(entitlement(on, "sso"), (&json!(true), &json!("OVERRIDE")));
    let stale = s.gql(&admin, OVERRIDE, ov("sso", json!(false), 1)).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let unknown = s
        .gql(&admin, OVERRIDE, ov("teleport", json!(true), 2))
        .await;
    assert_eq!(code(&unknown), Some("BAD_USER_INPUT"), "{unknown}");

    let change = |plan: &str, expected: i64| json!({ "i": { "tenantId": id, "plan": plan, "expectedVersion": expected, "idempotencyKey": format!("plan-{plan}-{expected}") } });
    let gold = s.gql(&admin, CHANGE, change("gold", 2)).await;
    assert_eq!(code(&gold), Some("BAD_USER_INPUT"), "{gold}");
    let ent = s.gql(&admin, CHANGE, change("enterprise", 2)).await;
    let ent = &ent["data"]["changePlan"];
    assert_eq!(ent["plan"], "enterprise", "{ent}");
    assert_eq!(ent["version"], 3);
    assert_eq!(
        entitlement(ent, "dedicated_cell"),
        (&json!(true), &json!("PLAN"))
    );
    assert_eq!(entitlement(ent, "sso"), (&json!(true), &json!("OVERRIDE")));
    // A retry of the change (same key and input) gets the plan back instead
    // of a CONFLICT on its now stale version, and changes nothing more.
    let retry = s.gql(&admin, CHANGE, change("enterprise", 2)).await;
    assert_eq!(retry["data"]["changePlan"]["plan"], "enterprise", "{retry}");
    assert_eq!(retry["data"]["changePlan"]["version"], 3, "{retry}");
    let retry = s.gql(&admin, OVERRIDE, ov("sso", json!(true), 1)).await;
    assert_eq!(
        retry["data"]["setEntitlementOverride"]["version"], 3,
        "{retry}"
    );
    // The key with other input is a CONFLICT.
    let reused = s
        .gql(
            &admin,
            CHANGE,
            json!({ "i": { "tenantId": id, "plan": "pro", "expectedVersion": 3, "idempotencyKey": "plan-enterprise-2" } }),
        )
        .await;
    assert_eq!(code(&reused), Some("CONFLICT"), "{reused}");
    let stale = s.gql(&admin, CHANGE, change("pro", 2)).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let v = s.gql(&admin, PLAN, json!({ "id": id })).await;
    assert_eq!(
        v["data"]["tenant"]["plan"], "enterprise",
        "the record follows: {v}"
    );

    // Two projects do not fit the free plan's one.
    let web = s
        .gql(
            &admin,
            PROJECT,
            json!({ "i": { "tenantId": id, "name": "web", "idempotencyKey": "w" } }),
        )
        .await;
    assert!(web.get("errors").is_none(), "{web}");
    let free = s.gql(&admin, CHANGE, change("free", 3)).await;
    assert_eq!(code(&free), Some("BAD_USER_INPUT"), "{free}");
    let v = s.gql(&admin, PLAN, json!({ "id": id })).await;
    assert_eq!(
        v["data"]["tenant"]["planDetails"]["version"], 3,
        "refusal changed nothing"
    );

    let log = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"changePlan\", source: \"global\"}) { nodes { outcome actor } } }",
            json!({}),
        )
        .await;
    let outcomes: Vec<&str> = log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    // Every call is audited: the change and its retry OK; the unknown plan,
    // the reused key, the stale version and the free plan that does not fit
    // REFUSED.
    assert_eq!(outcomes.iter().filter(|o| **o == "OK").count(), 2, "{log}");
    assert_eq!(outcomes.len(), 6, "{log}");

    // A free tenant has its default project and room for no other.
    let f = s
        .gql(
            &admin,
            CREATE,
            json!({ "input": { "idempotencyKey": "f", "slug": "freebie", "name": "F", "region": "us-east-1", "plan": "free" } }),
        )
        .await;
    let fid = f["data"]["createTenant"]["id"].as_str().unwrap().to_owned();
    let over = s
        .gql(
            &admin,
            PROJECT,
            json!({ "i": { "tenantId": fid, "name": "web", "idempotencyKey": "w" } }),
        )
        .await;
    assert_eq!(code(&over), Some("CONFLICT"), "{over}");
    assert!(
        over["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("max_projects")
    );

    // A viewer reads the plan but may not change it.
    let tid: shared::ids::TenantId = id.parse().unwrap();
    let viewer = s.token("vic", &[Role::TenantViewer], &[tid], None);
    let seen = s.gql(&viewer, PLAN, json!({ "id": id })).await;
    assert_eq!(
        seen["data"]["tenant"]["planDetails"]["plan"], "enterprise",
        "{seen}"
    );
    let denied = s.gql(&viewer, CHANGE, change("pro", 3)).await;
    assert_eq!(code(&denied), Some("FORBIDDEN"), "{denied}");
    s.stop().await;
}
