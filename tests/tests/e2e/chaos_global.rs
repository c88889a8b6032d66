//! Chaos: the global tier down. With the global process SIGKILLed, the
//! three cells keep evaluating flags and enforcing quotas from their own
//! state (a cell even restarts without it), meter usage, and acknowledge a
//! rollout stage that reached them; once the global tier is back every
//! usage rollup and the acknowledgement arrive, counted exactly. Prints the
//! measured global RTO.
//!
//! Static stability is shown, not simulated: a cell holds no lease or TTL
//! granted by the global tier (docs/DR.md lists every clock a cell reads),
//! so ten minutes without it differ from the seconds here only by more
//! failed heartbeats and resyncs, which change nothing the cell serves.
//! The cells here resync every second instead of every minute, so the 15 s
//! outage runs each resync loop into the unreachable global tier about 15 times,
//! more than ten minutes at the default interval would (10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::chaos::{CELLS, Chaos, METRIC, kill, meter, ms, signal};
use e2e::flags::{evaluate, get_rollout, start_rollout};
use e2e::process::terminate;
use serde_json::json;

const OUTAGE: Duration = Duration::from_secs(15);
const LIMIT: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cells_serve_without_the_global_tier_and_report_once_it_returns() {
    let mut chaos = Chaos::new(None).await;
    chaos
        .cell_env
        .push(("TENANT_CELL_RESYNC_INTERVAL_SECS".into(), "1".into()));
    let c = Arc::new(chaos);
    let _reaper = c.reaper();
    let (global, mut cells) = c.start().await;
    let a = c.create("g-us-0", "us-east-1").await;
    let b = c.create("g-us-1", "us-east-1").await;
    let e = c.create("g-eu-0", "eu-west-1").await;
    c.catalog(&[&a, &e]).await;
    let set = c
        .gql(
            e2e::quota::SET,
            json!({ "i": { "tenantId": e.id, "metric": METRIC, "limit": LIMIT, "period": "MONTH",
                "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": "hard-40" } }),
        )
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    for (t, want) in [(&a, "on"), (&b, "off"), (&e, "on")] {
        c.wait_variant(t.cell, &t.id, want, Duration::from_secs(20))
            .await;
        for _ in 0..200 {
            if c.hooks(t.cell).check(&t.id, METRIC, 1).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let roll = c
        .gql(
            "mutation($i: CreateFlagInput!) { createFlag(input: $i) { version } }",
            json!({ "i": { "key": "chaos-roll", "description": "rolled out", "kind": "BOOLEAN",
                "variants": [{ "name": "on", "value": true }, { "name": "off", "value": false }],
                "offVariant": "off", "idempotencyKey": "create-chaos-roll" } }),
        )
        .await;
    assert!(roll.get("errors").is_none(), "{roll}");

    // The EU cell is frozen while the rollout starts, so its plan waits in
    // the stream and the cell acknowledges the stage only once the global
    // tier is gone.
    let eu_pid = cells[2].id();
    signal(eu_pid, "STOP");
    let started = c
        .gql(
            &start_rollout(),
            json!({ "i": { "flagKey": "chaos-roll", "environment": "prod", "variant": "on",
                "stages": [{ "name": "canary", "cohort": { "tenantIds": [e.id] }, "soakSeconds": 3600 }],
                "ackDeadlineSeconds": 300, "idempotencyKey": "roll-1" } }),
        )
        .await;
    let rollout = started["data"]["startRollout"]["id"]
        .as_str()
        .unwrap_or_else(|| {
            signal(eu_pid, "CONT");
            panic!("{started}")
        })
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    kill(global);
    signal(eu_pid, "CONT");

    // Without the global tier: the rollout's plan reaches the EU cell.
    let (url, tok) = (c.cell_url(2), c.data_plane(2));
    let mut served = None;
    for _ in 0..200 {
        let (st, body) = evaluate(&url, &tok, &e.id, "chaos-roll", "prod").await;
        if st == 200 && body["variant"] == "on" {
            served = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served.is_some(), "the EU cell applied the rollout's plan");

    // A cell restarted while the global tier is down starts from its own
    // database and serves.
    kill(cells.remove(1));
    let at = Instant::now();
    cells.insert(1, c.spawn_cell(1).await);
    eprintln!(
        "global down: {} restarted to /readyz in {} ms without the global tier",
        CELLS[1].0,
        ms(at.elapsed())
    );

    // The outage: flags, quotas and usage, all from the cells.
    let hooks_e = c.hooks(e.cell);
    let (mut allowed, mut denied, mut evaluations) = (0, 0, 0);
    let mut metered = [0i64; 2];
    // Twice the HARD limit, whatever the pace of the machine: half allowed.
    for i in 0..2 * LIMIT {
        let d = hooks_e
            .consume(&e.id, METRIC, 1, &format!("down-{i}"))
            .await
            .expect("consume answers without the global tier");
        if d.allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
    }
    let mut i = 0;
    while killed_at.elapsed() < OUTAGE {
        for (t, want) in [(&a, "on"), (&b, "off"), (&e, "on")] {
            assert_eq!(
                c.evaluate(t.cell, &t.id).await.as_deref(),
                Ok(want),
                "cell {} evaluates without the global tier",
                CELLS[t.cell].0
            );
            evaluations += 1;
        }
        for (n, t) in [&a, &b].into_iter().enumerate() {
            meter(&c.hooks(t.cell), &t.id, 2, &format!("down-{i}"))
                .await
                .expect("usage accepted without the global tier");
            metered[n] += 2;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (allowed, denied),
        (LIMIT, LIMIT),
        "the HARD limit is enforced without the global tier"
    );

    // The global tier returns: measure to ready, to every cell UP, to a
    // write accepted in a cell through it.
    let restart = Instant::now();
    let global = c.spawn_global().await;
    let ready = restart.elapsed();
    c.wait_status(&[0, 1, 2], "UP", Duration::from_secs(20))
        .await;
    let up = restart.elapsed();
    let mut written = c.write_config(&e.id, 0, 1, "after-global").await;
    while written.is_err() && restart.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        written = c.write_config(&e.id, 0, 1, "after-global").await;
    }
    assert_eq!(written, Ok(1));
    let serving = restart.elapsed();
    eprintln!(
        "global RTO: start to /readyz {} ms, to every cell UP {} ms, to a write accepted {} ms (outage {} ms)",
        ms(ready),
        ms(up),
        ms(serving),
        ms(restart - killed_at)
    );

    // What the cells produced meanwhile arrives, once.
    let mut acked = serde_json::Value::Null;
    for _ in 0..200 {
        let r = c.gql(&get_rollout(), json!({ "id": rollout })).await;
        acked = r["data"]["rollout"].clone();
        let eu = acked["cells"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["id"] == CELLS[2].0).cloned());
        if eu.is_some_and(|x| !x["ackedStage"].is_null()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let eu = acked["cells"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["id"] == CELLS[2].0).cloned())
        .unwrap_or_else(|| panic!("{acked}"));
    assert_eq!(eu["ackedStage"], acked["stage"], "{acked}");
    assert_eq!(eu["exposedTenants"], 1, "{acked}");
    let waited = restart.elapsed();
    for (n, t) in [&a, &b].into_iter().enumerate() {
        c.wait_usage(&t.id, metered[n], Duration::from_secs(20))
            .await;
    }
    eprintln!(
        "global down: {evaluations} flag evaluations and {} consumes answered by the cells, {} usage units metered; \
         the acknowledgement and every rollup at the global tier {} ms after its restart",
        allowed + denied,
        metered[0] + metered[1],
        ms(restart.elapsed().max(waited))
    );
    // Still exact a moment later: nothing is applied twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (n, t) in [&a, &b].into_iter().enumerate() {
        assert_eq!(c.usage_at_global(&t.id).await, metered[n]);
    }
    assert_eq!(
        c.used(&e.id).await,
        LIMIT,
        "the cell counted what it allowed"
    );

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    c.drop_databases().await;
}
