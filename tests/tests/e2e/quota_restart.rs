//! The in-memory limiter (one replica) across a cell restart: a retried
//! consume is not counted twice and answers its first decision, PERIODIC
//! counters (consumed and metered), GAUGE levels and RATE slots (no fresh
//! burst after a restart) are kept. Once when the
//! cell stops (the last flush runs after requests drained), once when the
//! cell process is killed (SIGKILL) after the persist interval passed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use e2e::process::{binary, free_port, wait_ready};
use e2e::quota::{QUOTAS, SET, consume, data_plane, define, hook, wait_synced};
use e2e::stack::{SECRET, start_cell};
use e2e::{Backend, CellSpec, Options, Stack, backing};
use serde_json::{Value, json};
use shared::quota::hooks::{CONSUME, USAGE};

const CELL: &str = "eu-west-1-a";

async fn set(s: &Stack, tenant: &str, metric: &str, extra: Value) {
    let mut i = json!({ "tenantId": tenant, "metric": metric, "expectedVersion": 0,
        "idempotencyKey": format!("{tenant}-{metric}") });
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    let v = s.gql(&s.admin(), SET, json!({ "i": i })).await;
    assert!(v.get("errors").is_none(), "setQuota: {v}");
}

async fn used(s: &Stack, tenant: &str, metric: &str) -> i64 {
    // A restarted in-process cell has a new address: the global tier routes
    // to it once its registration went through.
    let mut q = Value::Null;
    for _ in 0..100 {
        q = s.gql(&s.admin(), QUOTAS, json!({ "t": tenant })).await;
        if q["data"]["quotas"].is_array() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    q["data"]["quotas"]
        .as_array()
        .unwrap_or_else(|| panic!("no quotas: {q}"))
        .iter()
        .find(|r| r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric}: {q}"))["used"]
        .as_i64()
        .unwrap()
}

/// Consumes, meters and takes seats; returns the first consume's answer.
async fn before(s: &Stack, url: &str, tok: &str, a: &str) -> Value {
    set(
        s,
        a,
        "api.calls",
        json!({ "limit": 10, "period": "DAY", "enforcement": "HARD" }),
    )
    .await;
    set(s, a, "seats", json!({ "limit": 5, "enforcement": "HARD" })).await;
    // One a second, a burst of 3, SOFT: 100 at once are allowed and push
    // the slot's arrival time 100 s ahead.
    set(
        s,
        a,
        "api.rate",
        json!({ "limit": 1, "burst": 3, "enforcement": "SOFT" }),
    )
    .await;
    let t = Some(tok);
    let (_, r) = hook(s, url, CONSUME, t, consume(a, "api.rate", 100, "r1")).await;
    assert_eq!(
        (r["allowed"].as_bool(), r["overage"].as_i64()),
        (Some(true), Some(97)),
        "{r}"
    );
    let (st, first) = hook(s, url, CONSUME, t, consume(a, "api.calls", 4, "c1")).await;
    assert_eq!((st, first["remaining"].as_i64()), (200, Some(6)), "{first}");
    let (_, g) = hook(s, url, CONSUME, t, consume(a, "seats", 2, "g1")).await;
    assert_eq!(g["remaining"], 3, "{g}");
    let (st, v) = hook(s, url, USAGE, t, json!({ "events": [
        { "tenantId": a, "metric": "api.calls", "amount": 3, "idempotencyKey": "u1", "timestamp": Utc::now() } ] })).await;
    assert_eq!(
        (st, v["results"][0]["status"].as_str()),
        (200, Some("accepted")),
        "{v}"
    );
    first
}

/// After the restart: the retry answers the first decision, nothing is
/// counted twice, nothing is forgotten.
async fn after(s: &Stack, url: &str, tok: &str, a: &str, first: &Value) {
    let t = Some(tok);
    let (st, again) = hook(s, url, CONSUME, t, consume(a, "api.calls", 4, "c1")).await;
    assert_eq!(
        (st, &again),
        (200, first),
        "the retry answers the first decision"
    );
    let (st, v) = hook(s, url, CONSUME, t, consume(a, "api.calls", 5, "c1")).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "{v}"
    );
    assert_eq!(
        used(s, a, "api.calls").await,
        7,
        "4 consumed + 3 metered, once"
    );
    assert_eq!(used(s, a, "seats").await, 2, "the GAUGE level is kept");
    // A fresh slot would allow 1 within the burst; the kept one is 100 s
    // ahead, so the unit is overage.
    let (_, r) = hook(s, url, CONSUME, t, consume(a, "api.rate", 1, "r2")).await;
    assert_eq!(
        (
            r["allowed"].as_bool(),
            r["overage"].as_i64(),
            r["remaining"].as_i64()
        ),
        (Some(true), Some(1), Some(0)),
        "the RATE slot is kept: {r}"
    );
    let (_, d) = hook(s, url, CONSUME, t, consume(a, "api.calls", 3, "c2")).await;
    assert_eq!(
        (d["allowed"].as_bool(), d["remaining"].as_i64()),
        (Some(true), Some(0)),
        "{d}"
    );
    let (_, d) = hook(s, url, CONSUME, t, consume(a, "api.calls", 1, "c3")).await;
    assert_eq!(d["allowed"], false, "{d}");
}

#[tokio::test]
async fn a_stopped_cell_keeps_counters_and_consume_keys() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![CellSpec {
        id: CELL,
        region: "eu-west-1",
        capacity: 100,
    }];
    // Longer than the test: only the flush at stop writes anything.
    o.quota.persist_interval = Duration::from_secs(3600);
    let mut s = Stack::start_with(o).await;
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    define(&s, "api.rate", "RATE", "CLOSED").await;
    wait_synced(&s, &["api.calls", "seats", "api.rate"]).await;
    let a = s.create_tenant("restart-a", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = data_plane(&s, CELL, &[]);
    let first = before(&s, &s.cell(CELL).url(), &tok, &a).await;

    let spec = s.options.cells[0].clone();
    s.cells.remove(0).stop().await;
    let cell = start_cell(
        &spec,
        s.cell_database_urls[CELL].clone(),
        &s.url(),
        &s.keys,
        &s.options,
        &s.redis_prefix,
        None,
    )
    .await;
    s.cells.push(cell);
    after(&s, &s.cell(CELL).url(), &tok, &a, &first).await;
    s.stop().await;
}

fn cell_process(port: u16, db: &str, prefix: &str, global: &str) -> Child {
    Command::new(binary("cell"))
        .env("TENANT_CELL_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CELL_ID", CELL)
        .env("TENANT_CELL_REGION", "eu-west-1")
        .env("TENANT_CELL_DATABASE_URL", db)
        .env("TENANT_CELL_REDIS_URL", backing::redis_url())
        .env("TENANT_CELL_REDIS_PREFIX", prefix)
        .env("TENANT_CELL_JWT_SECRET", SECRET)
        .env("TENANT_CELL_DB_POOL_SIZE", "6")
        .env("TENANT_CELL_GLOBAL_URL", global)
        .env("TENANT_CELL_HEARTBEAT_INTERVAL_SECS", "1")
        .env("TENANT_CELL_QUOTA_PERSIST_INTERVAL_MS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::temp_dir().join(format!("tcp-quota-restart-{port}.log")))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cell_keeps_what_it_persisted_before_the_crash() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![];
    let s = Stack::start_with(o).await;
    define(&s, "api.calls", "PERIODIC", "CLOSED").await;
    define(&s, "seats", "GAUGE", "CLOSED").await;
    define(&s, "api.rate", "RATE", "CLOSED").await;
    let (name, db_url) = backing::create_database().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = cell_process(port, &db_url, &s.redis_prefix, &s.url());
    wait_ready(&url, &mut child).await;
    s.wait_cells_up(1).await;
    let a = s.create_tenant("crash-a", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = shared::db::connect(&db_url, 2).await.unwrap();
    for _ in 0..200 {
        if shared::quota::store::all(&db).await.unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tok = data_plane(&s, CELL, &[]);
    let first = before(&s, &url, &tok, &a).await;
    // Past the persist interval (50 ms): written, then SIGKILL (no last flush).
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = cell_process(port, &db_url, &s.redis_prefix, &s.url());
    wait_ready(&url, &mut child).await;
    after(&s, &url, &tok, &a, &first).await;
    e2e::process::terminate(child);
    let _ = db.close().await;
    s.stop().await;
    backing::drop_databases(&[name]).await;
}
