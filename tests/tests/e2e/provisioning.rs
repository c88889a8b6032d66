//! The provisioning saga, in process: every step recorded, a cell that comes
//! back within the deadline, compensation past it, and the cell purge.

use std::time::Duration;

use e2e::rows::tenant_rows;
use e2e::stack::{CREATE, code, message, start_cell};
use e2e::ws::{connect, next_json, subscribe};
use e2e::{Backend, Options, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const TENANT: &str = "query($id: ID!) { tenant(id: $id) { id slug status version cell { id } \
    provisioning { status reason steps { name status attempts lastError } } \
    projects { id name version environments { name } } } }";

fn input(key: &str, slug: &str) -> Value {
    json!({ "input": { "idempotencyKey": key, "slug": slug, "name": "Saga", "region": "eu-west-1", "plan": "pro" } })
}

async fn tenant(s: &Stack, id: &str) -> Value {
    let v = s.gql(&s.admin(), TENANT, json!({ "id": id })).await;
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["tenant"].clone()
}

async fn id_of(s: &Stack, slug: &str) -> String {
    let v = s
        .gql(
            &s.admin(),
            "query($s: String!) { tenantBySlug(slug: $s) { id } }",
            json!({ "s": slug }),
        )
        .await;
    v["data"]["tenantBySlug"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

/// Polls the tenant until `done` holds (20 s at most).
async fn until(s: &Stack, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = tenant(s, id).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tenant never {what}: {last}");
}

fn step<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["provisioning"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {t}"))
}

async fn stop_cell(s: &mut Stack, id: &str) {
    let idx = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == id)
        .unwrap();
    s.cells.remove(idx).stop().await;
}

async fn restart_cell(s: &mut Stack, id: &str) {
    let spec = s.options.cells.iter().find(|c| c.id == id).unwrap().clone();
    let url = s.cell_database_urls[id].clone();
    let cell = start_cell(
        &spec,
        url,
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        None,
    )
    .await;
    s.cells.push(cell);
}

async fn cell_tenant_count(s: &Stack, cell: &str) -> i64 {
    let svc = s.token("global", &[Role::Service], &[], None);
    let (_, v) = s
        .gql_at(
            &s.cell(cell).url(),
            Some(&svc),
            "{ cell { tenantCount } }",
            json!({}),
        )
        .await;
    v["data"]["cell"]["tenantCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("{v}"))
}

#[tokio::test]
async fn provisioning_records_each_step_and_makes_the_default_project() {
    let s = Stack::start(Backend::Postgres).await;
    let made = s.create_tenant("stepwise", "eu-west-1").await;
    assert_eq!(made["status"], "ACTIVE", "{made}");
    let t = tenant(&s, made["id"].as_str().unwrap()).await;
    assert_eq!(t["provisioning"]["status"], "DONE", "{t}");
    let names: Vec<&str> = t["provisioning"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["reserve", "place", "create", "allocate", "activate"]
    );
    for st in t["provisioning"]["steps"].as_array().unwrap() {
        assert_eq!(st["status"], "DONE", "{t}");
        assert_eq!(st["attempts"], 1, "{t}");
        assert!(st["lastError"].is_null(), "{t}");
    }
    let projects = t["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{t}");
    assert_eq!(projects[0]["id"], "default");
    assert_eq!(projects[0]["version"], 1);
    let mut envs: Vec<&str> = projects[0]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    envs.sort();
    assert_eq!(envs, ["dev", "prod", "stage"]);
    assert_eq!(cell_tenant_count(&s, "eu-west-1-a").await, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_cell_back_within_the_deadline_finishes_the_saga_once_and_streams_each_step() {
    let mut o = Options::new(Backend::Postgres);
    o.provisioning.wait = Duration::from_millis(500);
    // The stopped cell must stay UP in the registry for the whole test (a
    // slow, loaded machine must not turn it DOWN, which placement avoids).
    o.heartbeat_timeout = Duration::from_secs(120);
    let mut s = Stack::start_with(o).await;
    // The cell stops; the registry still has it UP (its heartbeats are not overdue yet).
    stop_cell(&mut s, "eu-west-1-a").await;

    let first = s.gql(&s.admin(), CREATE, input("back-1", "comeback")).await;
    assert_eq!(code(&first), Some("UNAVAILABLE"), "{first}");
    assert!(message(&first).contains("step `create`"), "{first}");
    assert!(
        message(&first).contains("retry with the same idempotency key"),
        "{first}"
    );
    let id = id_of(&s, "comeback").await;
    let t = tenant(&s, &id).await;
    assert_eq!(t["status"], "PROVISIONING", "{t}");
    assert_eq!(t["cell"]["id"], "eu-west-1-a");
    assert_eq!(step(&t, "place")["status"], "DONE");
    let create = step(&t, "create");
    assert_eq!(create["status"], "RUNNING", "{t}");
    assert!(create["attempts"].as_i64().unwrap() >= 1, "{t}");
    assert!(create["lastError"].is_string(), "{t}");

    let proto = "graphql-transport-ws";
    let (mut ws, ack) = connect(
        &s.url(),
        proto,
        json!({ "Authorization": format!("Bearer {}", s.admin()) }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let sub = format!(
        "subscription {{ tenantLifecycle(tenantId: \"{id}\") {{ tenantId step status attempts lastError }} }}"
    );
    subscribe(&mut ws, proto, "1", &sub).await;
    // First the steps as they stand (the subscription is live by then):
    // reserve and place done, create still retrying.
    let mut seen = Vec::new();
    loop {
        let m = next_json(&mut ws).await;
        let ev = &m["payload"]["data"]["tenantLifecycle"];
        assert_eq!(ev["tenantId"], id, "{m}");
        seen.push((
            ev["step"].as_str().unwrap().to_owned(),
            ev["status"].as_str().unwrap().to_owned(),
        ));
        if ev["step"] == "create" {
            break;
        }
    }
    assert_eq!(seen[0], ("reserve".into(), "DONE".into()), "{seen:?}");
    assert_eq!(seen[1], ("place".into(), "DONE".into()), "{seen:?}");
    assert_eq!(seen.last().unwrap().1, "RUNNING", "{seen:?}");

    restart_cell(&mut s, "eu-west-1-a").await;
    let mut done = Vec::new();
    while !done.contains(&"activate".to_string()) {
        let m = next_json(&mut ws).await;
        let ev = &m["payload"]["data"]["tenantLifecycle"];
        assert!(ev.is_object(), "{m}");
        if ev["status"] == "DONE" {
            done.push(ev["step"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(done, ["create", "allocate", "activate"]);

    let t = until(&s, &id, "finished", |t| {
        t["provisioning"]["status"] == "DONE"
    })
    .await;
    assert_eq!(t["status"], "ACTIVE", "{t}");
    assert_eq!(t["projects"][0]["id"], "default", "{t}");
    let again = s.gql(&s.admin(), CREATE, input("back-1", "comeback")).await;
    assert!(again.get("errors").is_none(), "{again}");
    assert_eq!(again["data"]["createTenant"]["id"], id.as_str());
    assert_eq!(again["data"]["createTenant"]["status"], "ACTIVE");
    assert_eq!(
        cell_tenant_count(&s, "eu-west-1-a").await,
        1,
        "created once"
    );
    s.stop().await;
}

#[tokio::test]
async fn past_the_deadline_the_saga_compensates_leaves_nothing_and_frees_the_slug() {
    let mut o = Options::new(Backend::Sqlite);
    o.provisioning.wait = Duration::from_millis(300);
    o.provisioning.deadline = Duration::from_secs(3);
    o.heartbeat_timeout = Duration::from_secs(120);
    let mut s = Stack::start_with(o).await;
    stop_cell(&mut s, "eu-west-1-a").await;

    let first = s.gql(&s.admin(), CREATE, input("late-1", "toolate")).await;
    assert_eq!(code(&first), Some("UNAVAILABLE"), "{first}");
    let id = id_of(&s, "toolate").await;
    // Past the deadline: FAILED at once, undoing waits for the cell.
    let t = until(&s, &id, "failed", |t| t["status"] == "FAILED").await;
    let reason = t["provisioning"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("deadline"), "{t}");
    assert!(reason.contains("step `create`"), "{t}");
    assert_eq!(step(&t, "create")["status"], "FAILED", "{t}");

    restart_cell(&mut s, "eu-west-1-a").await;
    let t = until(&s, &id, "compensated", |t| {
        t["provisioning"]["status"] == "FAILED"
    })
    .await;
    for name in ["reserve", "place", "create"] {
        assert_eq!(step(&t, name)["status"], "COMPENSATED", "{t}");
    }
    for name in ["allocate", "activate"] {
        assert_eq!(step(&t, name)["status"], "PENDING", "{t}");
        assert_eq!(step(&t, name)["attempts"], 0, "{t}");
    }
    assert_eq!(t["status"], "FAILED");
    let rows = tenant_rows(&s.cell_database_urls["eu-west-1-a"], &id).await;
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");
    assert_eq!(cell_tenant_count(&s, "eu-west-1-a").await, 0);
    let cells = s
        .gql(&s.admin(), "{ cells { id tenantCount } }", json!({}))
        .await;
    let eu = cells["data"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "eu-west-1-a")
        .unwrap()
        .clone();
    assert_eq!(eu["tenantCount"], 0, "a FAILED tenant takes no room");

    // The slug is free again for a new tenant (retried with its key while
    // its saga runs past the short wait this test sets).
    let mut again = Value::Null;
    for _ in 0..50 {
        again = s.gql(&s.admin(), CREATE, input("late-2", "toolate")).await;
        if code(&again) != Some("UNAVAILABLE") {
            break;
        }
    }
    assert!(again.get("errors").is_none(), "{again}");
    assert_eq!(again["data"]["createTenant"]["status"], "ACTIVE");
    assert_ne!(again["data"]["createTenant"]["id"], id.as_str());
    s.stop().await;
}

#[tokio::test]
async fn purge_leaves_no_row_of_the_tenant_in_any_cell_table() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let id = s.create_tenant("purged", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keep = s.create_tenant("kept", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for t in [&id, &keep] {
        let p = s
            .gql(
                &admin,
                "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
                json!({ "i": { "tenantId": t, "name": "web", "idempotencyKey": "p-web" } }),
            )
            .await;
        assert!(p.get("errors").is_none(), "{p}");
        let r = s
            .gql(
                &admin,
                "mutation($i: SetSecretRefInput!) { setSecretRef(input: $i) { version } }",
                json!({ "i": { "tenantId": t, "name": "db.password", "ref": "vault://secret/x#pw" } }),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let url = &s.cell_database_urls["eu-west-1-a"];
    let before = tenant_rows(url, &id).await;
    for table in [
        "tenants",
        "projects",
        "environments",
        "secret_refs",
        "audit_log",
    ] {
        assert!(before[table] > 0, "{table}: {before:?}");
    }
    // Every tenant-scoped table of the schema is one the purge knows (the
    // audit log's entries are erased, not deleted: their chain holds).
    let known: Vec<&str> = cell::service::purge::TENANT_TABLES
        .iter()
        .map(|(t, _)| *t)
        .chain(["audit_log"])
        .collect();
    for table in before.keys() {
        assert!(known.contains(&table.as_str()), "purge misses {table}");
    }

    let svc = s.token("global", &[Role::Service], &[], None);
    let purge = "mutation($t: ID!) { purgeTenant(tenantId: $t) }";
    let cell_url = s.cell("eu-west-1-a").url();
    let (_, first) = s
        .gql_at(&cell_url, Some(&svc), purge, json!({ "t": id }))
        .await;
    assert_eq!(
        first["data"]["purgeTenant"].as_i64().unwrap(),
        before.values().sum::<i64>(),
        "{first}"
    );
    let after = tenant_rows(url, &id).await;
    assert!(after.values().all(|n| *n == 0), "{after:?}");
    let (_, second) = s
        .gql_at(&cell_url, Some(&svc), purge, json!({ "t": id }))
        .await;
    assert_eq!(
        second["data"]["purgeTenant"], 0,
        "a purge run again is a no-op"
    );
    // The other tenant is untouched.
    let other = tenant_rows(url, &keep).await;
    assert_eq!(other, before_counts_without_audit(&other, &before));
    // Only the control plane may purge.
    let viewer = s.token("v", &[Role::TenantViewer], &[], None);
    let (_, refused) = s
        .gql_at(&cell_url, Some(&viewer), purge, json!({ "t": keep }))
        .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"), "{refused}");
    s.stop().await;
}

/// The other tenant's counts match the purged one's before the purge,
/// except its audit rows (they differ by what each tenant was asked).
fn before_counts_without_audit(
    other: &std::collections::BTreeMap<String, i64>,
    before: &std::collections::BTreeMap<String, i64>,
) -> std::collections::BTreeMap<String, i64> {
    let mut want = before.clone();
    want.insert("audit_log".into(), other["audit_log"]);
    want
}

/// A saga that gave up on its `create` step compensates with a purge; a
/// `createTenant` of that attempt reaching the cell afterwards (a slow
/// network, a timeout race) is refused and leaves nothing in the cell.
#[tokio::test]
async fn a_create_arriving_after_the_compensating_purge_is_refused() {
    let s = Stack::start(Backend::Postgres).await;
    let svc = s.token("global", &[Role::Service], &[], None);
    let cell_url = s.cell("eu-west-1-a").url();
    let create = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id status } }";
    let purge = "mutation($t: ID!) { purgeTenant(tenantId: $t) }";
    let made = |id: &str| json!({ "i": { "id": id, "slug": "late-one", "name": "Late", "region": "eu-west-1", "plan": "pro" } });

    // Purged before it was ever made: the create comes too late.
    let early = uuid::Uuid::now_v7().to_string();
    let (_, p) = s
        .gql_at(&cell_url, Some(&svc), purge, json!({ "t": early }))
        .await;
    assert_eq!(p["data"]["purgeTenant"], 0, "{p}");
    let (_, late) = s.gql_at(&cell_url, Some(&svc), create, made(&early)).await;
    assert_eq!(code(&late), Some("CONFLICT"), "{late}");
    assert!(message(&late).contains("purged"), "{late}");
    let rows = tenant_rows(&s.cell_database_urls["eu-west-1-a"], &early).await;
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");

    // Made, purged, then a retry of the create: refused as well.
    let id = uuid::Uuid::now_v7().to_string();
    let (_, first) = s.gql_at(&cell_url, Some(&svc), create, made(&id)).await;
    assert_eq!(first["data"]["createTenant"]["status"], "ACTIVE", "{first}");
    let (_, p) = s
        .gql_at(&cell_url, Some(&svc), purge, json!({ "t": id }))
        .await;
    assert!(p["data"]["purgeTenant"].as_i64().unwrap() >= 1, "{p}");
    let (_, retry) = s.gql_at(&cell_url, Some(&svc), create, made(&id)).await;
    assert_eq!(code(&retry), Some("CONFLICT"), "{retry}");
    let rows = tenant_rows(&s.cell_database_urls["eu-west-1-a"], &id).await;
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");
    // Its slug was never taken: another tenant may have it.
    let other = uuid::Uuid::now_v7().to_string();
    let (_, ok) = s.gql_at(&cell_url, Some(&svc), create, made(&other)).await;
    assert_eq!(ok["data"]["createTenant"]["status"], "ACTIVE", "{ok}");
    s.stop().await;
}
