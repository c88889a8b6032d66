//! Every change, and every refused attempt at one, is audited with its actor.

use e2e::stack::{CREATE, code};
use e2e::{Backend, Stack};
use serde_json::json;
use shared::auth::Role;
use shared::ids::TenantId;

const LOG: &str = "query($f: AuditFilter) { auditLog(filter: $f) { actor roles action tenantId target outcome requestId detail } }";

#[tokio::test]
async fn mutations_are_audited_on_both_tiers() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("audited", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let viewer = s.token(
        "nosy",
        &[Role::TenantViewer],
        &[id.parse::<TenantId>().unwrap()],
        None,
    );
    let refused = s
        .gql(&viewer, CREATE, json!({ "input": { "idempotencyKey": "x", "slug": "sneaky", "name": "S", "region": "eu-west-1", "plan": "free" } }))
        .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));

    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let log = s
        .gql(&sre, LOG, json!({ "f": { "action": "createTenant" } }))
        .await;
    let entries = log["data"]["auditLog"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .clone();
    assert_eq!(entries.len(), 2, "{log}");
    // Newest first.
    assert_eq!(entries[0]["actor"], "nosy");
    assert_eq!(entries[0]["outcome"], "REFUSED");
    assert!(entries[0]["detail"].as_str().unwrap().contains("FORBIDDEN"));
    assert_eq!(entries[1]["actor"], "admin");
    assert_eq!(entries[1]["roles"], json!(["platform-admin"]));
    assert_eq!(entries[1]["outcome"], "OK");
    assert_eq!(entries[1]["tenantId"], id);
    assert!(
        entries[1]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let by_tenant = s.gql(&sre, LOG, json!({ "f": { "tenantId": id } })).await;
    assert_eq!(by_tenant["data"]["auditLog"].as_array().unwrap().len(), 1);
    let regs = s
        .gql(&sre, LOG, json!({ "f": { "action": "registerCell" } }))
        .await;
    let regs = regs["data"]["auditLog"].as_array().unwrap().clone();
    assert_eq!(regs.len(), 2);
    assert!(
        regs.iter()
            .any(|r| r["actor"] == "cell:us-east-1-a" && r["target"] == "us-east-1-a")
    );

    assert_eq!(
        code(&s.gql(&viewer, LOG, json!({})).await),
        Some("FORBIDDEN")
    );

    // The cell keeps its own audit of what the global tier asked of it.
    let cell_log = shared::audit::list(&s.cell("eu-west-1-a").state.db, &Default::default(), 10)
        .await
        .unwrap();
    // Newest first: the saga's create step, then its allocate step.
    assert_eq!(cell_log.len(), 2);
    assert_eq!(cell_log[1].actor, "global");
    assert_eq!(cell_log[1].action, "createTenant");
    assert_eq!(
        cell_log[1].tenant_id.map(|t| t.to_string()),
        Some(id.clone())
    );
    assert_eq!(cell_log[0].actor, "global");
    assert_eq!(cell_log[0].action, "allocateTenantResources");
    assert_eq!(cell_log[0].tenant_id.map(|t| t.to_string()), Some(id));
    s.stop().await;
}
