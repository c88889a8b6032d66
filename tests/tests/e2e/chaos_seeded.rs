//! Chaos, seeded failure modes of docs/FAILURE-MODES.md that no other test
//! reproduces: cells' copies of a config key, a flag, a rollout plan and
//! a metric definition changed, or deleted, behind their backs (straight in their databases, the sync
//! bookkeeping untouched, so neither the stream nor the anti-entropy
//! digest can see it). The next resync from the global tier rewrites them
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

use e2e::chaos::{Chaos, FLAG, KEY, METRIC};
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

/// The cell's stored flag `FLAG` (definition and version), if any.
async fn stored_flag(db_url: &str) -> Option<shared::flags::eval::StoredFlag> {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    let s = shared::flags::store::get(&db, FLAG).await.unwrap();
    db.close().await.unwrap();
    s.map(|r| r.flag)
}

async fn exec(db_url: &str, sql: &str) {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    db.execute_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap();
    db.close().await.unwrap();
}

/// The cell's rollout plans with their versions.
async fn stored_plans(db_url: &str) -> Vec<(shared::flags::RolloutPlan, i64)> {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    let s = shared::flags::store::plans(&db).await.unwrap();
    db.close().await.unwrap();
    s
}

/// The cell's stored definition of `METRIC` and its version, if any.
async fn stored_metric(db_url: &str) -> Option<shared::quota::store::Stored> {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    let s = shared::quota::store::get(&db, METRIC).await.unwrap();
    db.close().await.unwrap();
    s
}

/// `tcp_sync_events_total{stream, outcome="repaired"}` of cell `i`: the
/// rows of `stream` its resyncs rewrote.
async fn repaired(c: &Chaos, i: usize, stream: &str) -> u64 {
    let text = c
        .http
        .get(format!("{}/metrics", c.cell_url(i)))
        .bearer_auth(e2e::stack::metrics_token())
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
                && l.contains(&format!("stream=\"{stream}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// `(config keys, flags, metrics)` repaired, per cell.
async fn repair_counts(c: &Chaos) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push((
            repaired(c, i, "global.config-keys").await,
            repaired(c, i, "global.flags").await,
            repaired(c, i, shared::quota::STREAM).await,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_changed_behind_the_cells_back_are_rewritten_by_the_next_resync() {
    let mut chaos = Chaos::new(None).await;
    chaos
        .cell_env
        .push(("TENANT_CELL_RESYNC_INTERVAL_SECS".into(), "2".into()));
    let c = Arc::new(chaos);
    let _reaper = c.reaper();
    let (global, cells) = c.start().await;
    let us = c.create("seeded-us", "us-east-1").await;
    let eu = c.create("seeded-eu", "eu-west-1").await;
    assert_eq!(us.cell, 0, "the first us-east-1 tenant goes to us-east-1-a");
    // The config key, the metric and the flag, `on` for the US tenant.
    c.catalog(&[&us]).await;
    c.wait_variant(0, &us.id, "on", Duration::from_secs(20))
        .await;
    let mut want = None;
    let mut want_flag = None;
    for _ in 0..200 {
        want = stored(&c.urls[3]).await;
        want_flag = stored_flag(&c.urls[1]).await;
        if want.is_some()
            && want_flag.is_some()
            && stored(&c.urls[2]).await.is_some()
            && stored_flag(&c.urls[2]).await == want_flag
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = want.expect("the EU cell holds the key");
    let want_flag = want_flag.expect("us-east-1-a holds the flag");
    let mut want_metric = None;
    for _ in 0..200 {
        want_metric = stored_metric(&c.urls[3]).await;
        if want_metric.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want_metric = want_metric.expect("the EU cell holds the metric");
    // A rollout of a second flag, its plan held by every cell.
    let v = c
        .gql(
            "mutation($i: CreateFlagInput!) { createFlag(input: $i) { version } }",
            json!({ "i": { "key": "seeded-roll", "description": "rolled", "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": "create-seeded-roll" } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    let v = c
        .gql(
            &e2e::flags::start_rollout(),
            json!({ "i": { "flagKey": "seeded-roll", "environment": "prod", "variant": "on",
                "stages": [{ "name": "canary", "cohort": { "tenantIds": [us.id] }, "soakSeconds": 3600 }],
                "ackDeadlineSeconds": 300, "idempotencyKey": "seeded-roll-1" } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    let mut want_plans = Vec::new();
    for _ in 0..200 {
        want_plans = stored_plans(&c.urls[1]).await;
        if !want_plans.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(want_plans.len(), 1, "us-east-1-a holds the plan");
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
    // And the flag: us-east-1-a's row loses its prod targeting, the second
    // US cell's row is gone.
    let mut flag = serde_json::to_value(&want_flag.def).unwrap();
    flag["description"] = json!("tampered");
    flag["environments"] = json!({});
    exec(
        &c.urls[1],
        &format!(
            "UPDATE flags SET def = '{}' WHERE key = '{FLAG}'",
            flag.to_string().replace('\'', "''")
        ),
    )
    .await;
    exec(
        &c.urls[2],
        &format!("DELETE FROM flags WHERE key = '{FLAG}'"),
    )
    .await;
    // us-east-1-a's rollout plan now exposes `off`.
    let mut plan = serde_json::to_value(&want_plans[0].0).unwrap();
    plan["variant"] = json!("off");
    exec(
        &c.urls[1],
        &format!(
            "UPDATE rollout_plans SET plan = '{}' WHERE id = '{}'",
            plan.to_string().replace('\'', "''"),
            want_plans[0].0.id
        ),
    )
    .await;
    // And the EU cell's metric turns fail-closed.
    let mut metric = serde_json::to_value(&want_metric.def).unwrap();
    assert_eq!(metric["fail_mode"], json!("OPEN"), "{metric}");
    metric["fail_mode"] = json!("CLOSED");
    exec(
        &c.urls[3],
        &format!(
            "UPDATE metrics SET def = '{}' WHERE name = '{METRIC}'",
            metric.to_string().replace('\'', "''")
        ),
    )
    .await;
    // A resync may already have run: the `repaired` counts below show
    // each change was found in place.
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
    for i in [0, 1] {
        let mut now = None;
        while at.elapsed() < Duration::from_secs(15) {
            now = stored_flag(&c.urls[i + 1]).await;
            if now.as_ref() == Some(&want_flag) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(now.as_ref(), Some(&want_flag), "cell {i}'s flag repaired");
    }
    assert_eq!(c.evaluate(0, &us.id).await.as_deref(), Ok("on"));
    let mut now = None;
    while at.elapsed() < Duration::from_secs(15) {
        now = stored_metric(&c.urls[3]).await;
        if now.as_ref() == Some(&want_metric) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        now.as_ref(),
        Some(&want_metric),
        "the EU cell's metric repaired"
    );
    let mut plans = Vec::new();
    while at.elapsed() < Duration::from_secs(15) {
        plans = stored_plans(&c.urls[1]).await;
        if plans == want_plans {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(plans, want_plans, "us-east-1-a's rollout plan repaired");
    eprintln!(
        "seeded: config key, flag, rollout plan and metric rows changed behind three cells' backs rewritten {} ms after the change",
        at.elapsed().as_millis()
    );
    assert_eq!(
        c.config(&eu.id).await.0,
        json!(0),
        "the tenant sees the registry's default again"
    );
    // Flags and rollout plans are resynced together (counted as `global.flags`).
    let want_counts = vec![(0, 2, 0), (1, 1, 0), (1, 0, 1)];
    // Counted just after the rewrite commits.
    for _ in 0..50 {
        if repair_counts(&c).await == want_counts {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        repair_counts(&c).await,
        want_counts,
        "each cell counts what it repaired: (config keys, flags, metrics)"
    );
    // Repaired once: later resyncs find nothing to rewrite.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(repair_counts(&c).await, want_counts, "repaired once");

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    c.drop_databases().await;
}
