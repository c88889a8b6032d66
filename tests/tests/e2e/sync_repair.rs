//! Anti-entropy and `syncStatus`: a cell that lost an event is found by
//! digest and repaired through the stream; a stopped cell shows its lag.

use std::time::Duration;

use e2e::stack::{code, start_cell};
use e2e::{Backend, CellSpec, Options, Stack};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use shared::auth::Role;

const DEFINE: &str =
    "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }";
const STATUS: &str = "query($c: ID) { syncStatus(cellId: $c) { cell { id } kind stream lastAppliedPosition lagSeconds pendingCount lastCheckAt lastRepairAt divergentEntities divergentSample errors } }";
const REPAIR: &str = "mutation($c: ID) { repairSync(cellId: $c) { cell { id } kind lastRepairAt divergentEntities divergentSample errors } }";

fn key(name: &str, default: i64) -> Value {
    json!({ "i": { "key": name, "type": "INT", "default": default, "scopes": ["TENANT"] } })
}

async fn stack() -> Stack {
    let mut o = Options::new(Backend::Postgres);
    // Checks run when the test asks, and nothing counts as in flight.
    o.sync.repair_interval = Duration::from_secs(3600);
    o.sync.repair_grace = Duration::ZERO;
    Stack::start_with(o).await
}

async fn keys_in(db: &sea_orm::DatabaseConnection) -> Vec<(String, i64)> {
    shared::configkeys::store::all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.def.key, k.version))
        .collect()
}

async fn wait_for(db: &sea_orm::DatabaseConnection, want: &[(String, i64)]) {
    for _ in 0..200 {
        if keys_in(db).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(keys_in(db).await, want);
}

/// The `config-key` row of a one-cell answer.
fn only<'a>(v: &'a Value, field: &str) -> &'a Value {
    let rows = v["data"][field].as_array().unwrap_or_else(|| panic!("{v}"));
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["config-key", "tenant", "flag", "rollout", "metric"],
        "one cell, every kind: {v}"
    );
    &rows[0]
}

#[tokio::test]
async fn a_lost_event_is_found_by_digest_and_republished() {
    let s = stack().await;
    let admin = s.admin();
    for (i, k) in ["a.one", "a.two", "a.three"].iter().enumerate() {
        let v = s.gql(&admin, DEFINE, key(k, i as i64)).await;
        assert_eq!(v["data"]["defineConfigKey"]["version"], 1, "{v}");
    }
    let want = keys_in(&s.global.state.db).await;
    for c in &s.cells {
        wait_for(&c.state.db, &want).await;
    }
    let east = s.cell("us-east-1-a");
    let status = s.gql(&admin, STATUS, json!({ "c": "us-east-1-a" })).await;
    let row = only(&status, "syncStatus");
    assert_eq!(row["kind"], "config-key");
    assert_eq!(row["stream"], "global.config-keys");
    assert_eq!(row["pendingCount"], 0, "{row}");
    assert_eq!(row["lagSeconds"], 0.0);
    assert!(row["lastAppliedPosition"].is_string(), "{row}");
    assert!(row["lastCheckAt"].is_null(), "no check ran yet");

    // The cell loses one key as if its event had never arrived.
    for sql in [
        "DELETE FROM config_keys WHERE key = 'a.two'",
        "DELETE FROM sync_applied WHERE entity = 'config-key:a.two'",
    ] {
        east.state
            .db
            .execute_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap();
    }
    let repaired = s.gql(&admin, REPAIR, json!({ "c": "us-east-1-a" })).await;
    let row = only(&repaired, "repairSync");
    assert_eq!(row["divergentEntities"], 1, "{row}");
    assert_eq!(row["divergentSample"], json!(["config-key:a.two"]));
    assert!(row["lastRepairAt"].is_string());
    assert_eq!(row["errors"], json!([]));
    // The republished event brings it back, at the same version.
    wait_for(&east.state.db, &want).await;

    let again = s.gql(&admin, REPAIR, json!({ "c": "us-east-1-a" })).await;
    let row2 = only(&again, "repairSync");
    assert_eq!(row2["divergentEntities"], 0, "{row2}");
    assert_eq!(
        row2["lastRepairAt"], row["lastRepairAt"],
        "nothing to repair the second time"
    );

    // The other cell was never wrong.
    let west = s.gql(&admin, REPAIR, json!({ "c": "eu-west-1-a" })).await;
    assert_eq!(only(&west, "repairSync")["divergentEntities"], 0);
    assert!(only(&west, "repairSync")["lastRepairAt"].is_null());
    s.stop().await;
}

#[tokio::test]
async fn a_cell_ahead_of_the_global_tier_is_reported_not_rolled_back() {
    let s = stack().await;
    let admin = s.admin();
    s.gql(&admin, DEFINE, key("b.one", 1)).await;
    let want = keys_in(&s.global.state.db).await;
    let east = s.cell("us-east-1-a");
    wait_for(&east.state.db, &want).await;
    east.state
        .db
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "UPDATE sync_applied SET version = 7 WHERE entity = 'config-key:b.one'",
        ))
        .await
        .unwrap();
    let r = s.gql(&admin, REPAIR, json!({ "c": "us-east-1-a" })).await;
    let row = only(&r, "repairSync");
    assert_eq!(row["divergentEntities"], 1, "{row}");
    assert!(
        row["lastRepairAt"].is_null(),
        "nothing can be republished for it"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_stopped_cell_shows_its_lag_and_catches_up() {
    let mut s = stack().await;
    let admin = s.admin();
    s.gql(&admin, DEFINE, key("c.zero", 0)).await;
    let idx = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
        .unwrap();
    wait_for(&s.cells[idx].state.db, &keys_in(&s.global.state.db).await).await;
    // The row is applied before its entry is acknowledged: stop the cell
    // only once nothing is pending, so the count below is the three new keys.
    for _ in 0..100 {
        let v = s.gql(&admin, STATUS, json!({ "c": "eu-west-1-a" })).await;
        if only(&v, "syncStatus")["pendingCount"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = s.cells.remove(idx);
    stopped.stop().await;
    for i in 1..=3 {
        s.gql(&admin, DEFINE, key(&format!("c.k{i}"), i)).await;
    }
    let mut row = Value::Null;
    for _ in 0..100 {
        let v = s.gql(&admin, STATUS, json!({ "c": "eu-west-1-a" })).await;
        row = only(&v, "syncStatus").clone();
        if row["pendingCount"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row["pendingCount"], 3, "{row}");
    assert!(row["lagSeconds"].as_f64().unwrap() > 0.0, "{row}");
    // The check cannot reach the stopped cell, and says so.
    let r = s.gql(&admin, REPAIR, json!({ "c": "eu-west-1-a" })).await;
    let errors = only(&r, "repairSync")["errors"].clone();
    assert!(
        errors
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("last check")),
        "{r}"
    );

    let spec = CellSpec {
        id: "eu-west-1-a",
        region: "eu-west-1",
        capacity: 100,
    };
    let url = s.cell_database_urls["eu-west-1-a"].clone();
    let back = start_cell(
        &spec,
        url,
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        None,
    )
    .await;
    wait_for(&back.state.db, &keys_in(&s.global.state.db).await).await;
    for _ in 0..100 {
        let v = s.gql(&admin, STATUS, json!({ "c": "eu-west-1-a" })).await;
        row = only(&v, "syncStatus").clone();
        if row["pendingCount"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row["pendingCount"], 0, "{row}");
    assert_eq!(row["lagSeconds"], 0.0);
    back.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn sync_status_is_for_operators() {
    let s = stack().await;
    let t = s.create_tenant("sync-reader", "eu-west-1").await;
    let tenant_admin = s.token(
        "ta",
        &[Role::TenantAdmin],
        &[t["id"].as_str().unwrap().parse().unwrap()],
        None,
    );
    let v = s.gql(&tenant_admin, STATUS, json!({})).await;
    assert_eq!(code(&v), Some("FORBIDDEN"), "{v}");
    let v = s.gql(&tenant_admin, REPAIR, json!({})).await;
    assert_eq!(code(&v), Some("FORBIDDEN"), "{v}");
    let sre = s.token("sre", &[Role::Sre], &[], None);
    let v = s.gql(&sre, STATUS, json!({ "c": "nowhere-1-a" })).await;
    assert_eq!(code(&v), Some("NOT_FOUND"), "{v}");
    let v = s.gql(&sre, STATUS, json!({})).await;
    assert_eq!(
        v["data"]["syncStatus"].as_array().map(|a| a.len()),
        Some(10),
        "two cells × five kinds: {v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_lost_metric_definition_is_republished_too() {
    let s = stack().await;
    let admin = s.admin();
    e2e::quota::define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    e2e::quota::wait_synced(&s, &["api.calls"]).await;
    let east = s.cell("us-east-1-a");
    for sql in [
        "DELETE FROM metrics WHERE name = 'api.calls'",
        "DELETE FROM sync_applied WHERE entity = 'metric:api.calls'",
    ] {
        east.state
            .db
            .execute_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap();
    }
    let r = s.gql(&admin, REPAIR, json!({ "c": "us-east-1-a" })).await;
    let metric = r["data"]["repairSync"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .find(|row| row["kind"] == "metric")
        .cloned()
        .unwrap();
    assert_eq!(
        metric["divergentSample"],
        json!(["metric:api.calls"]),
        "{r}"
    );
    assert!(metric["lastRepairAt"].is_string());
    e2e::quota::wait_synced(&s, &["api.calls"]).await;
    s.stop().await;
}
