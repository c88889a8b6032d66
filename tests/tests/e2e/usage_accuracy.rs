//! Accuracy of metering with a real cell process: 100,000 usage events, 30%
//! of them sent again, from 8 concurrent clients, the cell killed (SIGKILL)
//! and restarted once mid-run: the counts equal the unique events exactly,
//! in the cell and at the global tier.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use e2e::process::{binary, free_port, wait_ready};
use e2e::quota::define;
use e2e::stack::SECRET;
use e2e::{Backend, Options, Stack, backing};
use serde_json::json;
use shared::auth::Role;
use shared::ids::CellId;
use shared::quota::client::HooksClient;
use shared::quota::hooks::{UsageBatch, UsageEvent};

const CELL: &str = "eu-west-1-a";
const UNIQUE: usize = 100_000;
const CLIENTS: usize = 8;
const BATCH: usize = 250;

fn cell(port: u16, db: &str, prefix: &str, global: &str) -> Child {
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_counts_exactly_through_retries_and_a_cell_crash() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![];
    let s = Stack::start_with(o).await;
    define(&s, "events", "PERIODIC", "CLOSED").await;
    let (name, db_url) = backing::create_database().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = cell(port, &db_url, &s.redis_prefix, &s.url());
    wait_ready(&url, &mut child).await;
    s.wait_cells_up(1).await;
    let tenant = s.create_tenant("accuracy", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = shared::db::connect(&db_url, 2).await.unwrap();
    for _ in 0..200 {
        if shared::quota::store::get(&db, "events")
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = s
        .keys
        .mint(
            "edge",
            vec![Role::DataPlane],
            vec![],
            Some(CellId::parse(CELL).unwrap()),
            3600,
        )
        .unwrap();
    let client = HooksClient::new(&url, &token);

    let sent = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let now = Utc::now();
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let (client, tenant, sent, retried) = (
            client.clone(),
            tenant.clone(),
            sent.clone(),
            retried.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mine: Vec<String> = (0..UNIQUE / CLIENTS).map(|i| format!("w{w}-{i}")).collect();
            let mut batches: Vec<Vec<String>> = Vec::new();
            // Each batch of new events also sends 30% of earlier ones again.
            let fresh_per_batch = BATCH * 10 / 13;
            for (b, chunk) in mine.chunks(fresh_per_batch).enumerate() {
                let mut keys: Vec<String> = chunk.to_vec();
                let again = chunk.len() * 3 / 10;
                let from = b.saturating_sub(1) * fresh_per_batch;
                keys.extend(mine[from..from + again].iter().cloned());
                batches.push(keys);
            }
            // The remainder of the 30%, so exactly 30% of the events are sent twice.
            let planned: usize = batches.iter().map(|b| b.len()).sum::<usize>() - mine.len();
            let extra: Vec<String> = mine[..(mine.len() * 3 / 10).saturating_sub(planned)].to_vec();
            if !extra.is_empty() {
                batches.push(extra);
            }
            for keys in batches {
                let events: Vec<UsageEvent> = keys
                    .iter()
                    .map(|k| UsageEvent {
                        tenant_id: tenant.clone(),
                        metric: "events".into(),
                        amount: 1,
                        idempotency_key: Some(k.clone()),
                        timestamp: now,
                    })
                    .collect();
                let batch = UsageBatch { events };
                loop {
                    match client.usage(&batch).await {
                        Ok(a) => {
                            assert_eq!(a.results.len(), batch.events.len());
                            break;
                        }
                        Err(_) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                sent.fetch_add(batch.events.len(), Ordering::Relaxed);
            }
        }));
    }
    // Kill the cell once, mid-run, and restart it on the same database.
    while sent.load(Ordering::Relaxed) < UNIQUE * 13 / 10 / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = cell(port, &db_url, &s.redis_prefix, &s.url());
    wait_ready(&url, &mut child).await;
    for w in workers {
        w.await.unwrap();
    }
    let total_sent = sent.load(Ordering::Relaxed);
    assert_eq!(
        total_sent,
        UNIQUE * 13 / 10,
        "130,000 events sent, 30,000 of them again"
    );
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "some batches were cut by the crash and retried"
    );

    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(SUM(amount) AS BIGINT) AS n FROM usage_totals".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let counted: i64 = row.try_get("", "n").unwrap();
    assert_eq!(
        counted, UNIQUE as i64,
        "the cell counted each unique event once"
    );

    let q = "query($t: ID!, $f: DateTime!, $to: DateTime!) { usage(tenantId: $t, metric: \"events\", from: $f, to: $to, granularity: MONTH) { amount } }";
    let vars = json!({ "t": tenant, "f": now - chrono::Duration::days(40), "to": now + chrono::Duration::days(40) });
    let mut global_sum = 0;
    for _ in 0..300 {
        let v = s.gql(&s.admin(), q, vars.clone()).await;
        global_sum = v["data"]["usage"]
            .as_array()
            .map(|a| a.iter().map(|p| p["amount"].as_i64().unwrap()).sum())
            .unwrap_or(0);
        if global_sum == UNIQUE as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        global_sum, UNIQUE as i64,
        "the rollups at the global tier equal the unique events"
    );
    e2e::process::terminate(child);
    let _ = db.close().await;
    s.stop().await;
    backing::drop_databases(&[name]).await;
}
