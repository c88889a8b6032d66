//! Suspend ⇄ resume, deprovision → restore within the grace period, and
//! purge after it: every row gone from the cell, a DELETED tombstone whose
//! slug stays reserved, and every mutation on it refused.

use std::time::Duration;

use e2e::rows::tenant_rows;
use e2e::stack::{CREATE, code, message};
use e2e::{Backend, Options, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const SUSPEND: &str =
    "mutation($i: ChangeTenantStatusInput!) { suspendTenant(input: $i) { status version } }";
const RESUME: &str =
    "mutation($i: ChangeTenantStatusInput!) { resumeTenant(input: $i) { status version } }";
const RESTORE: &str =
    "mutation($i: ChangeTenantStatusInput!) { restoreTenant(input: $i) { status version } }";
const DEPROVISION: &str = "mutation($i: DeprovisionTenantInput!) { deprovisionTenant(input: $i) { status version purgeAt } }";
const PROJECT: &str = "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }";
const READ: &str = "query($id: ID!) { tenant(id: $id) { status version name projects { id } } }";

fn v(id: &str, expected: i64) -> Value {
    keyed(id, expected, &format!("k-{expected}"))
}

fn keyed(id: &str, expected: i64, key: &str) -> Value {
    json!({ "i": { "tenantId": id, "expectedVersion": expected, "idempotencyKey": key } })
}

fn project(id: &str, name: &str) -> Value {
    json!({ "i": { "tenantId": id, "name": name, "idempotencyKey": format!("k-{name}") } })
}

/// The tenant's status as its home cell holds it, polled until `want` (10 s).
async fn cell_status(s: &Stack, cell: &str, id: &str, want: &str) {
    let svc = s.token("global", &[Role::Service], &[], None);
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, v) = s
            .gql_at(
                &s.cell(cell).url(),
                Some(&svc),
                "query($id: ID!) { tenant(id: $id) { status } }",
                json!({ "id": id }),
            )
            .await;
        if v["data"]["tenant"]["status"] == want {
            return;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cell never applied {want}: {last}");
}

#[tokio::test]
async fn a_suspended_tenant_refuses_writes_and_still_reads() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let t = s.create_tenant("sleepy", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let version = t["version"].as_i64().unwrap();

    let stale = s.gql(&admin, SUSPEND, v(&id, version + 5)).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let resume_active = s.gql(&admin, RESUME, v(&id, version)).await;
    assert_eq!(code(&resume_active), Some("CONFLICT"), "{resume_active}");
    let tid: shared::ids::TenantId = id.parse().unwrap();
    let tenant_admin = s.token("ta", &[Role::TenantAdmin], &[tid], None);
    let forbidden = s.gql(&tenant_admin, SUSPEND, v(&id, version)).await;
    assert_eq!(code(&forbidden), Some("FORBIDDEN"), "{forbidden}");

    let suspended = s.gql(&admin, SUSPEND, v(&id, version)).await;
    assert_eq!(
        suspended["data"]["suspendTenant"]["status"], "SUSPENDED",
        "{suspended}"
    );
    assert_eq!(suspended["data"]["suspendTenant"]["version"], version + 1);
    let refused = s.gql(&admin, PROJECT, project(&id, "web")).await;
    assert_eq!(code(&refused), Some("CONFLICT"), "{refused}");
    assert!(message(&refused).contains("SUSPENDED"), "{refused}");
    let read = s.gql(&admin, READ, json!({ "id": id })).await;
    assert!(read.get("errors").is_none(), "{read}");
    assert_eq!(read["data"]["tenant"]["status"], "SUSPENDED");
    assert_eq!(read["data"]["tenant"]["name"], "Tenant sleepy");
    // The cell hears of it over global.directory and refuses direct writes too.
    cell_status(&s, "eu-west-1-a", &id, "SUSPENDED").await;
    let (_, direct) = s
        .gql_at(
            &s.cell("eu-west-1-a").url(),
            Some(&admin),
            PROJECT,
            project(&id, "web"),
        )
        .await;
    assert_eq!(code(&direct), Some("CONFLICT"), "{direct}");

    let resumed = s.gql(&admin, RESUME, v(&id, version + 1)).await;
    assert_eq!(
        resumed["data"]["resumeTenant"]["status"], "ACTIVE",
        "{resumed}"
    );
    cell_status(&s, "eu-west-1-a", &id, "ACTIVE").await;
    let made = s.gql(&admin, PROJECT, project(&id, "web")).await;
    assert!(made.get("errors").is_none(), "{made}");

    // The key is required; a retry with it gets the first answer (the
    // SUSPENDED tenant), not the tenant as it is since, and changes nothing.
    let keyless = s
        .gql(
            &admin,
            SUSPEND,
            json!({ "i": { "tenantId": id, "expectedVersion": version + 2 } }),
        )
        .await;
    assert_eq!(code(&keyless), Some("BAD_USER_INPUT"), "{keyless}");
    let retry = s.gql(&admin, SUSPEND, v(&id, version)).await;
    assert_eq!(
        retry["data"]["suspendTenant"],
        json!({ "status": "SUSPENDED", "version": version + 1 }),
        "{retry}"
    );
    let read = s.gql(&admin, READ, json!({ "id": id })).await;
    assert_eq!(read["data"]["tenant"]["status"], "ACTIVE", "{read}");
    assert_eq!(read["data"]["tenant"]["version"], version + 2, "{read}");
    // The key with other input is a CONFLICT.
    let reused = s
        .gql(
            &admin,
            SUSPEND,
            keyed(&id, version + 2, &format!("k-{version}")),
        )
        .await;
    assert_eq!(code(&reused), Some("CONFLICT"), "{reused}");
    s.stop().await;
}

#[tokio::test]
async fn deprovision_restore_then_purge_after_the_grace_period() {
    let mut o = Options::new(Backend::Postgres);
    o.provisioning.max_grace_period = Duration::from_secs(3600);
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    let t = s.create_tenant("leaving", "us-east-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let mut version = t["version"].as_i64().unwrap();
    let made = s.gql(&admin, PROJECT, project(&id, "web")).await;
    assert!(made.get("errors").is_none(), "{made}");

    let dep = |key: &str, grace: i64| json!({ "i": { "tenantId": id, "idempotencyKey": key, "gracePeriodSeconds": grace } });
    for grace in [-1, 3601] {
        let bad = s.gql(&admin, DEPROVISION, dep("bad", grace)).await;
        assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
        assert_eq!(
            bad.pointer("/errors/0/extensions/field")
                .and_then(|f| f.as_str()),
            Some("input.gracePeriodSeconds")
        );
    }
    let read = s.gql(&admin, READ, json!({ "id": id })).await;
    assert_eq!(
        read["data"]["tenant"]["status"], "ACTIVE",
        "refusals changed nothing"
    );

    let d = s.gql(&admin, DEPROVISION, dep("bye-1", 3600)).await;
    assert_eq!(
        d["data"]["deprovisionTenant"]["status"], "DEPROVISIONING",
        "{d}"
    );
    assert!(d["data"]["deprovisionTenant"]["purgeAt"].is_string());
    version += 1;
    let replay = s.gql(&admin, DEPROVISION, dep("bye-1", 3600)).await;
    assert_eq!(
        replay["data"]["deprovisionTenant"]["version"], version,
        "{replay}"
    );
    let refused = s.gql(&admin, PROJECT, project(&id, "api")).await;
    assert_eq!(code(&refused), Some("CONFLICT"), "{refused}");
    cell_status(&s, "us-east-1-a", &id, "DEPROVISIONING").await;

    let restored = s.gql(&admin, RESTORE, v(&id, version)).await;
    assert_eq!(
        restored["data"]["restoreTenant"]["status"], "ACTIVE",
        "{restored}"
    );
    version += 1;
    cell_status(&s, "us-east-1-a", &id, "ACTIVE").await;
    let read = s.gql(&admin, READ, json!({ "id": id })).await;
    let projects: Vec<&str> = read["data"]["tenant"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(projects, ["default", "web"], "restored intact: {read}");

    // A zero grace period: the cell purges it at its next sweep.
    let d = s.gql(&admin, DEPROVISION, dep("bye-2", 0)).await;
    assert!(d.get("errors").is_none(), "{d}");
    version += 1;
    let mut last = Value::Null;
    for _ in 0..200 {
        last = s.gql(&admin, READ, json!({ "id": id })).await;
        if last["data"]["tenant"]["status"] == "DELETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["data"]["tenant"]["status"], "DELETED", "{last}");
    let rows = tenant_rows(&s.cell_database_urls["us-east-1-a"], &id).await;
    assert!(rows.len() >= 6, "{rows:?}");
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");

    // Nothing may change a DELETED tenant; its slug stays reserved.
    let after = version + 1;
    for (q, vars) in [
        (RESTORE, v(&id, after)),
        (SUSPEND, v(&id, after)),
        (DEPROVISION, dep("bye-3", 10)),
        (PROJECT, project(&id, "late")),
    ] {
        let r = s.gql(&admin, q, vars).await;
        assert_eq!(code(&r), Some("CONFLICT"), "{r}");
        assert!(message(&r).contains("DELETED"), "{r}");
    }
    let again = s
        .gql(
            &admin,
            CREATE,
            json!({ "input": { "idempotencyKey": "reuse", "slug": "leaving", "name": "Again", "region": "us-east-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(code(&again), Some("CONFLICT"), "{again}");
    assert!(message(&again).contains("stays reserved until"), "{again}");
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_tenants_slug_is_reusable_after_the_configured_time() {
    let mut o = Options::new(Backend::Sqlite);
    o.provisioning.slug_reuse_after = Duration::ZERO;
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    let id = s.create_tenant("phoenix", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = s
        .gql(
            &admin,
            DEPROVISION,
            json!({ "i": { "tenantId": id, "idempotencyKey": "go", "gracePeriodSeconds": 0 } }),
        )
        .await;
    assert!(d.get("errors").is_none(), "{d}");
    let mut status = Value::Null;
    for _ in 0..200 {
        status = s.gql(&admin, READ, json!({ "id": id })).await["data"]["tenant"]["status"].clone();
        if status == "DELETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "DELETED");
    // The first key still answers with the tenant it made (now DELETED);
    // a new key makes a new tenant with the slug.
    let replay = s.create_tenant("phoenix", "eu-west-1").await;
    assert_eq!(replay["id"], id.as_str());
    assert_eq!(replay["status"], "DELETED");
    let again = s
        .gql(
            &admin,
            CREATE,
            json!({ "input": { "idempotencyKey": "reborn", "slug": "phoenix", "name": "Again", "region": "eu-west-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(again["data"]["createTenant"]["status"], "ACTIVE", "{again}");
    assert_ne!(again["data"]["createTenant"]["id"], id.as_str());
    s.stop().await;
}

#[tokio::test]
async fn a_purge_due_while_the_cell_was_down_runs_when_it_is_back() {
    let mut s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let id = s.create_tenant("interrupted", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = s
        .gql(
            &admin,
            DEPROVISION,
            json!({ "i": { "tenantId": id, "idempotencyKey": "go", "gracePeriodSeconds": 2 } }),
        )
        .await;
    assert!(d.get("errors").is_none(), "{d}");
    cell_status(&s, "eu-west-1-a", &id, "DEPROVISIONING").await;
    // The cell stops before the grace period ends (a purge is one
    // transaction: a crash mid-purge leaves the tenant whole and still due).
    let idx = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
        .unwrap();
    s.cells.remove(idx).stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let read = s.gql(&admin, READ, json!({ "id": id })).await;
    assert_eq!(read["data"]["tenant"]["status"], "DEPROVISIONING", "{read}");
    let url = s.cell_database_urls["eu-west-1-a"].clone();
    assert_eq!(tenant_rows(&url, &id).await["tenants"], 1);

    let spec = s
        .options
        .cells
        .iter()
        .find(|c| c.id == "eu-west-1-a")
        .unwrap()
        .clone();
    let cell = e2e::stack::start_cell(
        &spec,
        url.clone(),
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        None,
    )
    .await;
    s.cells.push(cell);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = s.gql(&admin, READ, json!({ "id": id })).await["data"]["tenant"]["status"].clone();
        if status == "DELETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "DELETED");
    assert!(tenant_rows(&url, &id).await.values().all(|n| *n == 0));
    s.stop().await;
}
