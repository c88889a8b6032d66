//! Members and roles: the last owner is protected, ownership transfers, and
//! the role matrix: every role × every query and mutation of the tenant
//! lifecycle (and its `tenantLifecycle` subscription), allowed or refused
//! as the role decides.

use e2e::stack::{CREATE, code};
use e2e::ws::{connect, next_json, subscribe};
use e2e::{Backend, Stack};
use serde_json::{Value, json};

const ADD: &str = "mutation($i: AddMemberInput!) { addMember(input: $i) { subject role version } }";
const CHANGE: &str =
    "mutation($i: ChangeMemberRoleInput!) { changeMemberRole(input: $i) { subject role version } }";
const REMOVE: &str = "mutation($i: RemoveMemberInput!) { removeMember(input: $i) { subject } }";
const TRANSFER: &str =
    "mutation($i: TransferOwnershipInput!) { transferOwnership(input: $i) { subject role } }";
const STATE: &str = "query($id: ID!) { tenant(id: $id) { version members { subject role version } planDetails { plan version entitlements { name enabled source } } } }";

fn user(s: &Stack, sub: &str) -> String {
    s.token(sub, &[], &[], None)
}

async fn state(s: &Stack, id: &str) -> Value {
    let v = s.gql(&s.admin(), STATE, json!({ "id": id })).await;
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["tenant"].clone()
}

fn member_version(st: &Value, subject: &str) -> i64 {
    st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == subject)
        .map(|m| m["version"].as_i64().unwrap())
        .unwrap_or(0)
}

async fn tenant_with_members(s: &Stack, slug: &str) -> String {
    let t = s
        .gql(
            &s.admin(),
            CREATE,
            json!({ "input": { "idempotencyKey": slug, "slug": slug, "name": "Members", "region": "us-east-1", "plan": "pro", "owner": "olive" } }),
        )
        .await;
    let id = t["data"]["createTenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned();
    for (sub, role) in [
        ("adam", "admin"),
        ("mia", "member"),
        ("vic", "viewer"),
        ("tess", "viewer"),
    ] {
        let v = s
            .gql(
                &user(s, "olive"),
                ADD,
                json!({ "i": { "tenantId": id, "subject": sub, "role": role, "idempotencyKey": format!("add-{sub}") } }),
            )
            .await;
        assert_eq!(v["data"]["addMember"]["role"], role, "{v}");
    }
    id
}

#[tokio::test]
async fn the_last_owner_is_protected_and_ownership_transfers() {
    let s = Stack::start(Backend::Postgres).await;
    let id = tenant_with_members(&s, "owned").await;
    let olive = user(&s, "olive");
    let st = state(&s, &id).await;
    assert_eq!(member_version(&st, "olive"), 1);

    let demote = s
        .gql(&olive, CHANGE, json!({ "i": { "tenantId": id, "subject": "olive", "role": "admin", "expectedVersion": 1 } }))
        .await;
    assert_eq!(code(&demote), Some("BAD_USER_INPUT"), "{demote}");
    let remove = s
        .gql(
            &olive,
            REMOVE,
            json!({ "i": { "tenantId": id, "subject": "olive", "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(code(&remove), Some("BAD_USER_INPUT"), "{remove}");
    // An admin may not touch owners, nor make one.
    let adam = user(&s, "adam");
    let grab = s
        .gql(&adam, CHANGE, json!({ "i": { "tenantId": id, "subject": "adam", "role": "owner", "expectedVersion": 1 } }))
        .await;
    assert_eq!(code(&grab), Some("FORBIDDEN"), "{grab}");
    let stale = s
        .gql(&olive, CHANGE, json!({ "i": { "tenantId": id, "subject": "mia", "role": "viewer", "expectedVersion": 7 } }))
        .await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let twice = s
        .gql(&olive, ADD, json!({ "i": { "tenantId": id, "subject": "mia", "role": "admin", "idempotencyKey": "again" } }))
        .await;
    assert_eq!(code(&twice), Some("CONFLICT"), "{twice}");
    let replay = s
        .gql(&olive, ADD, json!({ "i": { "tenantId": id, "subject": "mia", "role": "member", "idempotencyKey": "add-mia" } }))
        .await;
    assert_eq!(replay["data"]["addMember"]["version"], 1, "{replay}");
    let bad_role = s
        .gql(&olive, ADD, json!({ "i": { "tenantId": id, "subject": "zed", "role": "emperor", "idempotencyKey": "z" } }))
        .await;
    assert_eq!(code(&bad_role), Some("BAD_USER_INPUT"), "{bad_role}");
    assert_eq!(
        state(&s, &id).await["members"].as_array().unwrap().len(),
        5,
        "refusals changed nothing"
    );

    let moved = s
        .gql(
            &olive,
            TRANSFER,
            json!({ "i": { "tenantId": id, "to": "adam", "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(
        moved["data"]["transferOwnership"]["role"], "owner",
        "{moved}"
    );
    let st = state(&s, &id).await;
    let roles: Vec<(String, String)> = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(roles.contains(&("adam".into(), "owner".into())), "{st}");
    assert!(roles.contains(&("olive".into(), "admin".into())), "{st}");
    // Now olive may be removed by the new owner: another owner remains.
    let v = member_version(&st, "olive");
    let gone = s
        .gql(
            &adam,
            REMOVE,
            json!({ "i": { "tenantId": id, "subject": "olive", "expectedVersion": v } }),
        )
        .await;
    assert_eq!(gone["data"]["removeMember"]["subject"], "olive", "{gone}");
    // A member sees the tenant in its listing; a stranger does not see it at all.
    let listed = s
        .gql(
            &user(&s, "vic"),
            "{ tenants { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["tenants"]["totalCount"], 1, "{listed}");
    let stranger = s
        .gql(
            &user(&s, "nora"),
            "query($id: ID!) { tenant(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&stranger), Some("NOT_FOUND"), "{stranger}");
    s.stop().await;
}

/// The first message of a `tenantLifecycle` subscription (over
/// graphql-transport-ws), as a GraphQL response: the first recorded step,
/// or the errors that refused it.
async fn lifecycle_first(s: &Stack, token: &str, id: &str) -> Value {
    let proto = "graphql-transport-ws";
    let (mut ws, ack) = connect(
        &s.url(),
        proto,
        json!({ "Authorization": format!("Bearer {token}") }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let sub = format!("subscription {{ tenantLifecycle(tenantId: \"{id}\") {{ step status }} }}");
    subscribe(&mut ws, proto, "1", &sub).await;
    let m = next_json(&mut ws).await;
    match m["type"].as_str() {
        Some("next") => m["payload"].clone(),
        Some("error") => json!({ "errors": m["payload"] }),
        _ => panic!("unexpected answer to the subscription: {m}"),
    }
}

/// What a call answered: OK, or its error code.
fn outcome(v: &Value) -> String {
    code(v).map(str::to_owned).unwrap_or_else(|| {
        assert!(v.get("data").is_some(), "{v}");
        "OK".into()
    })
}

#[tokio::test]
async fn role_matrix() {
    let s = Stack::start(Backend::Postgres).await;
    let id = tenant_with_members(&s, "matrix").await;
    // (subject, its role) — the owner last: its row ends with a transfer.
    let rows = [
        ("nora", "none"),
        ("vic", "viewer"),
        ("mia", "member"),
        ("adam", "admin"),
        ("olive", "owner"),
    ];
    let ops = [
        "tenant",
        "tenantBySlug",
        "tenants",
        "members",
        "projects",
        "effectiveConfig",
        "configHistory",
        "secretRefs",
        "planDetails",
        "createProject",
        "createEnvironment",
        "setSecretRef",
        "addMember",
        "changeMemberRole",
        "removeMember",
        "changePlan",
        "setEntitlementOverride",
        "deprovisionTenant",
        "restoreTenant",
        "suspendTenant",
        "resumeTenant",
        "createTenant",
        "placementPreview",
        "setCellState",
        "transferOwnership",
        "tenantLifecycle",
    ];
    let allowed = |role: &str, op: &str| -> bool {
        let rank = ["none", "viewer", "member", "admin", "owner"]
            .iter()
            .position(|r| *r == role)
            .unwrap();
        match op {
            "tenant" | "tenantBySlug" | "tenants" | "members" | "projects" | "effectiveConfig"
            | "configHistory" | "secretRefs" | "planDetails" | "tenantLifecycle" => rank >= 1,
            "createProject" | "createEnvironment" | "setSecretRef" => rank >= 2,
            "addMember" | "changeMemberRole" | "removeMember" => rank >= 3,
            "changePlan"
            | "setEntitlementOverride"
            | "deprovisionTenant"
            | "restoreTenant"
            | "transferOwnership" => rank >= 4,
            // Operators' and the platform's, never a member's.
            _ => false,
        }
    };
    let mut table = Vec::new();
    for (sub, role) in rows {
        let tok = user(&s, sub);
        for op in ops {
            let st = state(&s, &id).await;
            let (q, vars): (String, Value) = match op {
                "tenant" => ("query($id: ID!) { tenant(id: $id) { id status } }".into(), json!({ "id": id })),
                "tenantBySlug" => ("{ tenantBySlug(slug: \"matrix\") { id } }".into(), json!({})),
                "tenants" => ("{ tenants(first: 100) { edges { node { id } } } }".into(), json!({})),
                "members" => ("query($id: ID!) { tenant(id: $id) { members { subject } } }".into(), json!({ "id": id })),
                "projects" => ("query($id: ID!) { tenant(id: $id) { projects { id } } }".into(), json!({ "id": id })),
                "planDetails" => ("query($id: ID!) { tenant(id: $id) { planDetails { plan } } }".into(), json!({ "id": id })),
                "effectiveConfig" => ("query($t: ID!) { effectiveConfig(tenantId: $t) { key } }".into(), json!({ "t": id })),
                "configHistory" => ("query($t: ID!) { configHistory(tenantId: $t) { version } }".into(), json!({ "t": id })),
                "secretRefs" => ("query($t: ID!) { secretRefs(tenantId: $t) { name } }".into(), json!({ "t": id })),
                "createProject" => (
                    "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }".into(),
                    json!({ "i": { "tenantId": id, "name": format!("p-{sub}"), "idempotencyKey": format!("p-{sub}") } }),
                ),
                "createEnvironment" => (
                    "mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) { id } }".into(),
                    json!({ "i": { "tenantId": id, "projectId": "default", "name": format!("e-{sub}"), "idempotencyKey": format!("e-{sub}") } }),
                ),
                "setSecretRef" => (
                    "mutation($i: SetSecretRefInput!) { setSecretRef(input: $i) { version } }".into(),
                    json!({ "i": { "tenantId": id, "name": format!("s-{sub}"), "ref": "vault://secret/x#k" } }),
                ),
                "addMember" => (ADD.into(), json!({ "i": { "tenantId": id, "subject": format!("new-{sub}"), "role": "viewer", "idempotencyKey": format!("n-{sub}") } })),
                "changeMemberRole" => {
                    let now = st["members"].as_array().unwrap().iter().find(|m| m["subject"] == "tess").unwrap()["role"].clone();
                    let to = if now == "viewer" { "member" } else { "viewer" };
                    (CHANGE.into(), json!({ "i": { "tenantId": id, "subject": "tess", "role": to, "expectedVersion": member_version(&st, "tess") } }))
                }
                "removeMember" => (
                    REMOVE.into(),
                    json!({ "i": { "tenantId": id, "subject": format!("new-{sub}"), "expectedVersion": member_version(&st, &format!("new-{sub}")) } }),
                ),
                "changePlan" => {
                    let to = if st["planDetails"]["plan"] == "pro" { "enterprise" } else { "pro" };
                    (
                        "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan } }".into(),
                        json!({ "i": { "tenantId": id, "plan": to, "expectedVersion": st["planDetails"]["version"], "idempotencyKey": format!("{op}-{sub}") } }),
                    )
                }
                "setEntitlementOverride" => (
                    "mutation($i: SetEntitlementOverrideInput!) { setEntitlementOverride(input: $i) { version } }".into(),
                    json!({ "i": { "tenantId": id, "name": "sso", "enabled": true, "expectedVersion": st["planDetails"]["version"], "idempotencyKey": format!("{op}-{sub}") } }),
                ),
                "deprovisionTenant" => (
                    "mutation($i: DeprovisionTenantInput!) { deprovisionTenant(input: $i) { status } }".into(),
                    json!({ "i": { "tenantId": id, "idempotencyKey": format!("d-{sub}"), "gracePeriodSeconds": 3600 } }),
                ),
                "restoreTenant" | "suspendTenant" | "resumeTenant" => (
                    format!("mutation($i: ChangeTenantStatusInput!) {{ {op}(input: $i) {{ status }} }}"),
                    json!({ "i": { "tenantId": id, "expectedVersion": st["version"], "idempotencyKey": format!("{op}-{sub}") } }),
                ),
                "createTenant" => (
                    CREATE.into(),
                    json!({ "input": { "idempotencyKey": format!("t-{sub}"), "slug": format!("by-{sub}"), "name": "X", "region": "us-east-1", "plan": "pro" } }),
                ),
                "placementPreview" => (
                    "{ placementPreview(region: \"us-east-1\", plan: \"pro\") { cell { id } } }".into(),
                    json!({}),
                ),
                "setCellState" => (
                    "mutation($k: String!) { setCellState(cellId: \"us-east-1-a\", state: ACCEPTING, expectedVersion: 1, idempotencyKey: $k) { id } }".into(),
                    json!({ "k": format!("{op}-{sub}") }),
                ),
                "transferOwnership" => (TRANSFER.into(), json!({ "i": { "tenantId": id, "to": "adam", "expectedVersion": member_version(&st, "adam") } })),
                "tenantLifecycle" => (String::new(), json!({})),
                other => unreachable!("{other}"),
            };
            let v = if op == "tenantLifecycle" {
                lifecycle_first(&s, &tok, &id).await
            } else {
                s.gql(&tok, &q, vars).await
            };
            // A listing does not fail: a tenant the caller may not see is left out.
            let got = if op == "tenants" {
                let listed = v["data"]["tenants"]["edges"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{v}"))
                    .iter()
                    .any(|e| e["node"]["id"] == id.as_str());
                if listed {
                    "OK".into()
                } else {
                    "NOT_FOUND".into()
                }
            } else {
                outcome(&v)
            };
            let tenant_scoped = !matches!(op, "createTenant" | "placementPreview" | "setCellState");
            let want = if allowed(role, op) {
                "OK"
            } else if role == "none" && tenant_scoped {
                "NOT_FOUND"
            } else {
                "FORBIDDEN"
            };
            table.push(format!("{role:>6} {op:<22} {got}"));
            assert_eq!(got, want, "{role} {op}: {v}\n{}", table.join("\n"));
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn members_beyond_the_plans_limit_are_refused() {
    let s = Stack::start(Backend::Sqlite).await;
    let t = s
        .gql(
            &s.admin(),
            CREATE,
            json!({ "input": { "idempotencyKey": "small", "slug": "small", "name": "Small", "region": "eu-west-1", "plan": "free", "owner": "olive" } }),
        )
        .await;
    let id = t["data"]["createTenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned();
    let olive = user(&s, "olive");
    let add = |sub: &str| json!({ "i": { "tenantId": id, "subject": sub, "role": "viewer", "idempotencyKey": format!("add-{sub}") } });
    // free allows 3 members: olive and two more.
    for sub in ["ann", "bob"] {
        let v = s.gql(&olive, ADD, add(sub)).await;
        assert_eq!(v["data"]["addMember"]["role"], "viewer", "{v}");
    }
    let over = s.gql(&olive, ADD, add("cyd")).await;
    assert_eq!(code(&over), Some("CONFLICT"), "{over}");
    let msg = over["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("max_members") && msg.contains("free"),
        "{over}"
    );
    assert_eq!(state(&s, &id).await["members"].as_array().unwrap().len(), 3);
    // A retry of an add that was made still answers it.
    let again = s.gql(&olive, ADD, add("bob")).await;
    assert_eq!(again["data"]["addMember"]["subject"], "bob", "{again}");

    // On pro there is room; back to free with four members is refused.
    let st = state(&s, &id).await;
    let to = |plan: &str, v: &Value| json!({ "i": { "tenantId": id, "plan": plan, "expectedVersion": v, "idempotencyKey": format!("to-{plan}-{v}") } });
    let change = "mutation($i: ChangePlanInput!) { changePlan(input: $i) { plan version } }";
    let pro = s
        .gql(&olive, change, to("pro", &st["planDetails"]["version"]))
        .await;
    assert_eq!(pro["data"]["changePlan"]["plan"], "pro", "{pro}");
    let now = s.gql(&olive, ADD, add("cyd")).await;
    assert_eq!(now["data"]["addMember"]["subject"], "cyd", "{now}");
    let down = s
        .gql(
            &olive,
            change,
            to("free", &pro["data"]["changePlan"]["version"]),
        )
        .await;
    assert_eq!(code(&down), Some("BAD_USER_INPUT"), "{down}");
    assert_eq!(state(&s, &id).await["planDetails"]["plan"], "pro");
    s.stop().await;
}
