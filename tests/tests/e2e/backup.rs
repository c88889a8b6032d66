//! `tenantctl backup` and `tenantctl restore` of the global database, run
//! as processes against a live stack: the restored database holds exactly
//! the rows of the backed-up one, a global tier started on it answers for
//! every tenant, and bad restores (a non-empty target, a truncated file)
//! are refused without writing anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e::backing::{create_database, drop_databases};
use e2e::process::binary;
use e2e::stack::{code, global_settings};
use e2e::{Backend, Stack};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

type Rows = BTreeMap<String, Vec<String>>;

/// Every row of every table, as the backup reads them, sorted per table.
async fn contents(url: &str) -> Rows {
    let db = shared::db::connect(url, 2).await.expect("database");
    let mut buf = Vec::new();
    global::backup::dump(&db, &mut buf).await.expect("dump");
    let _ = db.close().await;
    rows_of(&String::from_utf8(buf).unwrap())
}

/// The rows a backup file holds, sorted per table.
fn rows_of(backup: &str) -> Rows {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in backup.lines().skip(1) {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(t) = v["table"].as_str() {
            tables
                .entry(t.to_owned())
                .or_default()
                .push(v["row"].to_string());
        }
    }
    for rows in tables.values_mut() {
        rows.sort();
    }
    tables
}

fn tenantctl(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("tenantctl"))
        .args(args)
        .env_remove("TENANT_GLOBAL_DATABASE_URL")
        .output()
        .expect("tenantctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn seed(s: &Stack) -> Vec<String> {
    let mut ids = Vec::new();
    for (slug, region) in [
        ("acme", "us-east-1"),
        ("globex", "eu-west-1"),
        ("initech", "us-east-1"),
    ] {
        let t = s.create_tenant(slug, region).await;
        ids.push(t["id"].as_str().unwrap_or_else(|| panic!("{t}")).to_owned());
    }
    let inc = s
        .gql(
            &s.admin(),
            "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
            json!({ "i": { "title": "eu latency", "severity": "SEV2", "idempotencyKey": "inc-1",
                "scope": { "regions": ["eu-west-1"] } } }),
        )
        .await;
    assert!(inc.get("errors").is_none(), "{inc}");
    ids
}

async fn tenant(url: &str, token: &str, id: &str) -> Value {
    let v = e2e::process::gql(
        url,
        token,
        "query($id: ID!) { tenant(id: $id) { id slug status version region cell { id } } }",
        json!({ "id": id }),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["tenant"].clone()
}

async fn round_trip(s: &Stack, ids: &[String], target: &str, dir: &Path) {
    let file = dir.join("global.backup");
    let file_s = file.to_str().unwrap();
    let (ok, out) = tenantctl(&[
        "backup",
        "--database-url",
        &s.global_database_url,
        "--out",
        file_s,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("backed up"), "{out}");
    assert!(
        !dir.join("global.partial").exists(),
        "no partial file is left"
    );

    let (ok, out) = tenantctl(&["restore", "--database-url", target, "--from", file_s]);
    assert!(ok, "{out}");
    // The live database moves on (heartbeats, shipped audit entries): the
    // restored one must hold exactly the snapshot.
    let snapshot = rows_of(&std::fs::read_to_string(&file).unwrap());
    let restored = contents(target).await;
    assert!(
        snapshot["tenants"].len() >= ids.len(),
        "{:?}",
        snapshot.keys()
    );
    assert!(snapshot["audit_log"].len() > ids.len());
    for (table, rows) in &snapshot {
        assert_eq!(
            Some(rows),
            restored.get(table),
            "table {table}: the restored database holds the snapshot's rows"
        );
    }
    assert_eq!(snapshot.len(), restored.len());

    // A second restore into it is refused and changes nothing.
    let (ok, out) = tenantctl(&["restore", "--database-url", target, "--from", file_s]);
    assert!(!ok, "{out}");
    assert!(out.contains("not empty"), "{out}");
    assert_eq!(contents(target).await, restored);

    // A global tier started on the restored database answers for every tenant
    // as the original does.
    let mut o = s.options.clone();
    o.cells.clear();
    let restored_global = global::build(global_settings(
        target,
        &s.keys,
        &o,
        &format!("{}-restored", s.redis_prefix),
    ))
    .await
    .expect("a global tier starts on the restored database");
    let admin = s.admin();
    for id in ids {
        assert_eq!(
            tenant(&restored_global.url(), &admin, id).await,
            tenant(&s.url(), &admin, id).await
        );
    }
    let chain = e2e::process::gql(
        &restored_global.url(),
        &admin,
        "{ verifyAuditChain { valid checked } }",
        json!({}),
    )
    .await;
    assert_eq!(chain["data"]["verifyAuditChain"]["valid"], true, "{chain}");
    restored_global.stop().await;
}

#[tokio::test]
async fn a_postgres_backup_restores_every_row_and_serves() {
    let s = Stack::start(Backend::Postgres).await;
    let ids = seed(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let (name, target) = create_database().await;
    round_trip(&s, &ids, &target, dir.path()).await;

    // A truncated backup is refused, and a new database stays empty.
    let file = dir.path().join("global.backup");
    let text = std::fs::read_to_string(&file).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, cut[..cut.len() - 2].join("\n")).unwrap();
    let (name2, empty) = create_database().await;
    let (ok, out) = tenantctl(&[
        "restore",
        "--database-url",
        &empty,
        "--from",
        truncated.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");
    let db = shared::db::connect(&empty, 1).await.unwrap();
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .unwrap();
    assert!(
        tables.is_empty(),
        "nothing was written: {} tables",
        tables.len()
    );
    let _ = db.close().await;
    // A backup of the other backend is refused too.
    let sqlite = shared::config::sqlite_url(&dir.path().join("other.db"));
    let (ok, out) = tenantctl(&[
        "restore",
        "--database-url",
        &sqlite,
        "--from",
        file.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("postgres"), "{out}");
    s.stop().await;
    drop_databases(&[name, name2]).await;
}

#[tokio::test]
async fn a_sqlite_backup_taken_while_serving_restores_and_serves() {
    let s = Stack::start(Backend::Sqlite).await;
    let mut ids = seed(&s).await;
    // Writes keep coming while the backup runs: the snapshot is consistent
    // (the comparison below is of the quiet database after them).
    let writer = {
        let url = s.url();
        let admin = s.admin();
        tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..5 {
                let v = e2e::process::gql(
                    &url,
                    &admin,
                    "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id status } }",
                    json!({ "i": { "idempotencyKey": format!("bk-{i}"), "slug": format!("busy-{i}"),
                        "name": "Busy", "region": "eu-west-1", "plan": "pro" } }),
                )
                .await;
                assert!(code(&v).is_none(), "{v}");
                made.push(v["data"]["createTenant"]["id"].as_str().unwrap().to_owned());
            }
            made
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let during = dir.path().join("during.backup");
    let (ok, out) = tenantctl(&[
        "backup",
        "--database-url",
        &s.global_database_url,
        "--out",
        during.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    ids.extend(writer.await.unwrap());
    // The backup taken under writes restores (its trailer matches its rows).
    let mid = shared::config::sqlite_url(&dir.path().join("mid.db"));
    let (ok, out) = tenantctl(&[
        "restore",
        "--database-url",
        &mid,
        "--from",
        during.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");

    let target = shared::config::sqlite_url(&dir.path().join("restored.db"));
    round_trip(&s, &ids, &target, dir.path()).await;
    s.stop().await;
}
