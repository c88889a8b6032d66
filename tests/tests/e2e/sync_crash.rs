//! A cell process killed (SIGKILL) in the middle of applying a batch: the
//! batch was never committed, stays pending in its consumer group, is taken
//! over by the restarted process and applied exactly once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::process::{binary, free_port, terminate, wait_ready};
use e2e::stack::SECRET;
use e2e::{Backend, Options, Stack, backing};
use serde_json::json;
use shared::sync::Transport;
use shared::sync::redis::Redis;

const DEFINE: &str =
    "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }";
const CHANGES: usize = 20;

fn cell(port: u16, db: &str, prefix: &str, apply_delay_ms: u64) -> Child {
    // No global URL: the stream is this cell's only source, so what it
    // holds came through the consumer group (no resync from the API).
    Command::new(binary("cell"))
        .env("TENANT_CELL_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CELL_ID", "eu-west-1-a")
        .env("TENANT_CELL_REGION", "eu-west-1")
        .env("TENANT_CELL_DATABASE_URL", db)
        .env("TENANT_CELL_REDIS_URL", backing::redis_url())
        .env("TENANT_CELL_REDIS_PREFIX", prefix)
        .env("TENANT_CELL_JWT_SECRET", SECRET)
        .env("TENANT_CELL_DB_POOL_SIZE", "6")
        .env("TENANT_CELL_SYNC_CLAIM_IDLE_MS", "1000")
        .env(
            "TENANT_CELL_TEST_APPLY_DELAY_MS",
            apply_delay_ms.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `tcp_sync_events_total{outcome=…, stream="global.config-keys"}` of a process.
async fn counted(url: &str, outcome: &str) -> u64 {
    let text = e2e::stack::metrics_request(&reqwest::Client::new(), url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("tcp_sync_events_total")
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains("stream=\"global.config-keys\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_cell_killed_mid_batch_applies_the_redelivered_batch_once() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![];
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    // The changes wait in the stream before the cell starts, so its first
    // read takes them all as one batch.
    for i in 0..CHANGES {
        let v = s
            .gql(&admin, DEFINE, json!({ "i": { "key": format!("crash.k{i}"), "type": "INT", "default": i, "scopes": ["TENANT"] } }))
            .await;
        assert_eq!(v["data"]["defineConfigKey"]["version"], 1, "{v}");
    }
    let streams = Redis::new(&backing::redis_url(), &s.redis_prefix, 10_000).unwrap();
    let (name, db_url) = backing::create_database().await;
    let db = shared::db::connect(&db_url, 2).await.unwrap();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut first = cell(port, &db_url, &s.redis_prefix, 30_000);
    wait_ready(&url, &mut first).await;
    let mut delivered = false;
    let mut last = Default::default();
    for _ in 0..600 {
        let g = streams
            .group_status("global.config-keys", "cell.eu-west-1-a")
            .await
            .unwrap();
        if g.pending == CHANGES as u64 {
            delivered = true;
            break;
        }
        last = g;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        delivered,
        "the whole batch was delivered to the first process: {last:?}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        shared::configkeys::store::all(&db)
            .await
            .unwrap()
            .is_empty(),
        "the killed process committed nothing of its batch"
    );

    let mut second = cell(port, &db_url, &s.redis_prefix, 0);
    wait_ready(&url, &mut second).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held = shared::configkeys::store::all(&db).await.unwrap();
        if held.len() == CHANGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if held.len() != CHANGES {
        use std::io::Read;
        second.kill().unwrap();
        let mut err = String::new();
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!(
            "the batch was not applied after the restart: {} keys; cell said: {err}",
            held.len()
        );
    }
    assert!(held.iter().all(|k| k.version == 1));
    let mut g = Default::default();
    for _ in 0..100 {
        g = streams
            .group_status("global.config-keys", "cell.eu-west-1-a")
            .await
            .unwrap();
        if g.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!((g.pending, g.undelivered), (0, 0), "{g:?}");
    assert_eq!(
        counted(&url, "applied").await,
        CHANGES as u64,
        "applied once each"
    );
    assert_eq!(counted(&url, "duplicate").await, 0);
    terminate(second);
    db.close().await.unwrap();
    s.stop().await;
    backing::drop_databases(&[name]).await;
}
