//! Production mode: the `global` and `cell` binaries as separate processes
//! on PostgreSQL and Redis, configured by file, environment and flags.

use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::backing;
use e2e::process::{free_port, gql, terminate, wait_ready};
use e2e::stack::SECRET;
use serde_json::{Value, json};

#[tokio::test]
async fn global_and_cell_binaries_run_on_postgres_and_redis() {
    let (global_db_name, global_db) = backing::create_database().await;
    let (cell_db_name, cell_db) = backing::create_database().await;
    let prefix = backing::redis_prefix().await;
    let (gport, cport) = (free_port(), free_port());
    let global_url = format!("http://127.0.0.1:{gport}");
    let cell_url = format!("http://127.0.0.1:{cport}");

    let mut global = Command::new(e2e::process::binary("global"))
        .env("TENANT_GLOBAL_LISTEN", format!("127.0.0.1:{gport}"))
        .env("TENANT_GLOBAL_DATABASE_URL", &global_db)
        .env("TENANT_GLOBAL_REDIS_URL", backing::redis_url())
        .env("TENANT_GLOBAL_REDIS_PREFIX", &prefix)
        .env("TENANT_GLOBAL_JWT_SECRET", SECRET)
        .env("TENANT_GLOBAL_DB_POOL_SIZE", "6")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&global_url, &mut global).await;

    // The cell takes its region and capacity from a file, its identity and
    // database from the environment, its heartbeat interval from a flag.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cell.toml");
    std::fs::write(
        &file,
        "region = \"eu-west-1\"\ncapacity = 7\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let mut cell = Command::new(e2e::process::binary("cell"))
        .args(["--config"])
        .arg(&file)
        .args(["--heartbeat-interval-secs", "1"])
        .env("TENANT_CELL_LISTEN", format!("127.0.0.1:{cport}"))
        .env("TENANT_CELL_ID", "eu-west-1-a")
        .env("TENANT_CELL_DATABASE_URL", &cell_db)
        .env("TENANT_CELL_REDIS_URL", backing::redis_url())
        .env("TENANT_CELL_REDIS_PREFIX", &prefix)
        .env("TENANT_CELL_GLOBAL_URL", &global_url)
        .env("TENANT_CELL_JWT_SECRET", SECRET)
        .env("TENANT_CELL_DB_POOL_SIZE", "6")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&cell_url, &mut cell).await;

    let keys = shared::auth::Keys::hs256(
        &[SECRET.into()],
        shared::auth::DEFAULT_ISSUER,
        shared::auth::DEFAULT_AUDIENCE,
    )
    .unwrap();
    let admin = keys
        .mint(
            "ops",
            vec![shared::auth::Role::PlatformAdmin],
            vec![],
            None,
            600,
        )
        .unwrap();
    let mut registered = Value::Null;
    for _ in 0..50 {
        registered = gql(
            &global_url,
            &admin,
            "{ cells { id region endpoint status capacity } }",
            json!({}),
        )
        .await;
        if registered["data"]["cells"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = &registered["data"]["cells"][0];
    assert_eq!(c["id"], "eu-west-1-a", "{registered}");
    assert_eq!(c["region"], "eu-west-1");
    assert_eq!(c["capacity"], 7, "the file layer applies");
    assert_eq!(
        c["endpoint"], cell_url,
        "the environment overrides the file"
    );
    assert_eq!(c["status"], "UP");

    let created = gql(
        &global_url,
        &admin,
        "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id status name cell { id } } }",
        json!({ "i": { "idempotencyKey": "prod-1", "slug": "prod", "name": "Prod Co", "region": "eu-west-1", "plan": "enterprise" } }),
    )
    .await;
    assert_eq!(
        created["data"]["createTenant"]["status"], "ACTIVE",
        "{created}"
    );
    assert_eq!(created["data"]["createTenant"]["name"], "Prod Co");

    terminate(cell);
    let logs = terminate(global);
    // JSON logs, one object a line, with the request span's fields.
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines on stdout: {logs}");
    assert!(lines.iter().any(|l| l.get("level").is_some()));
    backing::drop_databases(&[global_db_name, cell_db_name]).await;
}

#[test]
fn invalid_configuration_stops_at_start_with_a_reason() {
    let out = Command::new(e2e::process::binary("global"))
        .env("TENANT_GLOBAL_JWT_SECRET", SECRET)
        .env("TENANT_GLOBAL_DB_POOL_SIZE", "6")
        .env_remove("TENANT_GLOBAL_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database_url is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(e2e::process::binary("cell"))
        .args([
            "--id",
            "x-1",
            "--region",
            "x",
            "--database-url",
            "sqlite::memory:",
            "--jwt-secret",
            "short",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 32 characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(e2e::process::binary("cell"))
        .args([
            "--id",
            "Not Valid",
            "--region",
            "x",
            "--database-url",
            "sqlite::memory:",
            "--jwt-secret",
            SECRET,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cell id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
