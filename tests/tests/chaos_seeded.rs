//! Chaos, seeded failure modes of docs/FAILURE-MODES.md that no other test
//! reproduces: a cell's copy of a config key changed, and another's
//! deleted, behind the cells' backs (straight in their databases, the sync
//! bookkeeping untouched, so neither the stream nor the anti-entropy
//! digest can see it). The next resync from the global tier rewrites both
//! and counts it in `tcp_sync_events_total{outcome="repaired"}`.
//!
//! The other seeded modes are proven elsewhere: partial provisioning in
//! `provisioning_processes.rs` (a crash point between saga steps, a cell
//! back within and past the deadline), stuck rollouts in
//! `rollout_failures.rs` (an unacknowledged stage names its cells) and
//! `rollouts.rs` (gates that cannot be judged), a lost stream event in
//! `sync_repair.rs` (found by digest and republished).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::chaos::{Chaos, KEY};
use e2e::process::terminate;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

/// The cell's stored definition of `KEY`, if any.
async fn stored(db_url: &str) -> Option<shared::configkeys::store::Stored> {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    let s = shared::configkeys::store::get(&db, KEY).await.unwrap();
    db.close().await.unwrap();
    s
}

async fn exec(db_url: &str, sql: &str) {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    db.execute_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap();
    db.close().await.unwrap();
}

/// `tcp_sync_events_total{stream="global.config-keys", outcome="repaired"}`
/// of cell `i`: the rows its resyncs rewrote.
async fn repaired(c: &Chaos, i: usize) -> u64 {
    let text = c
        .http
        .get(format!("{}/metrics", c.cell_url(i)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("tcp_sync_events_total")
                && l.contains("outcome=\"repaired\"")
                && l.contains("stream=\"global.config-keys\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_rows_changed_behind_the_cells_back_are_rewritten_by_the_next_resync() {
    let mut chaos = Chaos::new(None).await;
    chaos
        .cell_env
        .push(("TENANT_CELL_RESYNC_INTERVAL_SECS".into(), "2".into()));
    let c = Arc::new(chaos);
    let _reaper = c.reaper();
    let (global, cells) = c.start().await;
    let eu = c.create("seeded-eu", "eu-west-1").await;
    let v = c
        .gql(
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": KEY, "type": "INT", "default": 0, "scopes": ["TENANT"] } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    let mut want = None;
    for _ in 0..200 {
        want = stored(&c.urls[3]).await;
        if want.is_some() && stored(&c.urls[2]).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = want.expect("the EU cell holds the key");
    assert_eq!(want.version, 1);
    assert_eq!(c.config(&eu.id).await.0, json!(0));

    // Behind the cells' backs: the EU cell's row now says default 99, the
    // second US cell's row is gone; `sync_applied` still says version 1.
    let mut def = serde_json::to_value(&want.def).unwrap();
    def["default"] = json!(99);
    exec(
        &c.urls[3],
        &format!(
            "UPDATE config_keys SET def = '{}' WHERE key = '{KEY}'",
            def.to_string().replace('\'', "''")
        ),
    )
    .await;
    exec(
        &c.urls[2],
        &format!("DELETE FROM config_keys WHERE key = '{KEY}'"),
    )
    .await;
    assert_eq!(
        stored(&c.urls[3]).await.map(|s| s.def.default),
        Some(json!(99)),
        "the change is in place"
    );
    // Anti-entropy compares applied versions: it sees nothing to repair.
    let digest = c
        .gql(
            "mutation { repairSync(cellId: \"eu-west-1-a\") { kind divergentEntities } }",
            json!({}),
        )
        .await;
    let kinds = digest["data"]["repairSync"]
        .as_array()
        .unwrap_or_else(|| panic!("{digest}"));
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k["divergentEntities"] == 0),
        "{digest}"
    );

    // The next resync (every 2 s here, a minute by default) rewrites both.
    let at = Instant::now();
    for i in [1, 2] {
        let mut now = None;
        while at.elapsed() < Duration::from_secs(15) {
            now = stored(&c.urls[i + 1]).await;
            if now.as_ref() == Some(&want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(now.as_ref(), Some(&want), "cell {i} repaired");
    }
    eprintln!(
        "seeded: rows changed behind two cells' backs rewritten {} ms after the change",
        at.elapsed().as_millis()
    );
    assert_eq!(
        c.config(&eu.id).await.0,
        json!(0),
        "the tenant sees the registry's default again"
    );
    for i in [1, 2] {
        assert_eq!(repaired(&c, i).await, 1, "cell {i} counts what it repaired");
    }
    // Repaired once: later resyncs find nothing to rewrite.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in [1, 2] {
        assert_eq!(repaired(&c, i).await, 1, "cell {i} repaired once");
    }
    assert_eq!(repaired(&c, 0).await, 0);

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    c.drop_databases().await;
}
