//! Chaos: Redis down. The test runs its own `redis-server` (no
//! persistence) under the global tier and three cells, freezes it with
//! SIGSTOP for 30 s while config writes, flag changes, a config key
//! definition, consumes and usage go on, then lets it run again. The
//! writes wait in the outboxes and flow when it returns; every cell ends
//! at the global tier's exact flag and key versions, and the metered usage
//! at the global tier is exactly what was accepted.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::chaos::{CELLS, Chaos, FLAG, Tenant, ms, signal};
use e2e::process::{free_port, terminate};
use e2e::workload::{Workload, check_acknowledged};
use serde_json::json;

const OUTAGE: Duration = Duration::from_secs(30);

fn redis_server(port: u16) -> Child {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (apt-get install redis-server)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server never listened on {port}");
}

/// `(flag version, config key versions)` a cell's database holds.
async fn held(db_url: &str) -> (i64, Vec<(String, i64)>) {
    let db = shared::db::connect(db_url, 1).await.unwrap();
    let flag = shared::flags::store::get(&db, FLAG)
        .await
        .unwrap()
        .map(|r| r.flag.version)
        .unwrap_or(0);
    let keys = shared::configkeys::store::all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.def.key.clone(), k.version))
        .collect();
    db.close().await.unwrap();
    (flag, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_wait_in_the_outboxes_while_redis_is_stopped_and_flow_once() {
    let port = free_port();
    let mut redis = redis_server(port);
    let mut chaos = Chaos::new(Some(format!("redis://127.0.0.1:{port}"))).await;
    // No periodic resync from the global API during the test: what reaches
    // the cells comes through the streams.
    chaos
        .cell_env
        .push(("TENANT_CELL_RESYNC_INTERVAL_SECS".into(), "3600".into()));
    let c = Arc::new(chaos);
    let _reaper = c.reaper();
    let redis_pid = c.track_pid(redis.id());
    let (global, cells) = c.start().await;
    let t: Vec<Tenant> = vec![
        c.create("r-us-0", "us-east-1").await,
        c.create("r-us-1", "us-east-1").await,
        c.create("r-eu-0", "eu-west-1").await,
    ];
    c.catalog(&[&t[0]]).await;
    for x in &t {
        let want = if x.id == t[0].id { "on" } else { "off" };
        c.wait_variant(x.cell, &x.id, want, Duration::from_secs(20))
            .await;
        for _ in 0..200 {
            if c.hooks(x.cell)
                .check(&x.id, e2e::chaos::METRIC, 1)
                .await
                .is_ok()
                && c.config(&x.id).await.0 == json!(0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let load = Workload::start(&c, &t, &[0, 1, 2]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    signal(redis_pid, "STOP");
    let stopped = Instant::now();
    // Flag changes and a new config key while Redis is away: each is
    // committed at the global tier with its event in the outbox.
    let mut version = 2;
    for (n, on) in [vec![&t[1]], vec![&t[2]], vec![&t[1], &t[2]]]
        .into_iter()
        .enumerate()
    {
        let v = c.target(&on, version, &format!("redis-{n}")).await;
        assert!(v.get("errors").is_none(), "{v}");
        version = v["data"]["setFlagTargeting"]["version"].as_i64().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let v = c
        .gql(
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "chaos.during", "type": "INT", "default": 7, "scopes": ["TENANT"] } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    // Nothing reached the cells: they still serve the flag as before.
    assert_eq!(c.evaluate(t[1].cell, &t[1].id).await.as_deref(), Ok("off"));
    let remaining = OUTAGE.saturating_sub(stopped.elapsed());
    tokio::time::sleep(remaining).await;
    signal(redis_pid, "CONT");
    let back = Instant::now();

    // Every cell converges on the global tier's versions.
    let want_keys = vec![
        ("chaos.during".to_owned(), 1),
        (e2e::chaos::KEY.to_owned(), 1),
    ];
    for (i, (id, _)) in CELLS.iter().enumerate() {
        let mut last = (0, Vec::new());
        for _ in 0..300 {
            last = held(&c.urls[i + 1]).await;
            if last == (version, want_keys.clone()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last, (version, want_keys.clone()), "cell {id}");
    }
    for x in &t {
        let want = if x.id == t[0].id { "off" } else { "on" };
        c.wait_variant(x.cell, &x.id, want, Duration::from_secs(20))
            .await;
    }
    let converged = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tallies = load.finish().await;
    for (name, tally) in &tallies {
        assert!(tally.errors.is_empty(), "{name}: {:?}", tally.errors);
    }
    let mut writes = 0;
    for x in &t {
        let (lost, consumed) = check_acknowledged(&c, &tallies, x).await;
        assert_eq!(lost, 0, "no process died: every consume is counted");
        writes += consumed;
    }
    let usage_at = back.elapsed();
    writes += tallies
        .iter()
        .filter(|(k, _)| k.starts_with("config:") || k.starts_with("usage:"))
        .map(|(_, x)| x.acked.len() as i64)
        .sum::<i64>();
    eprintln!(
        "redis down {} ms: {writes} writes acknowledged meanwhile and around, 0 errors, 0 lost; \
         every cell at the global tier's versions {} ms after Redis returned, usage at the global tier exact after {} ms",
        ms(back - stopped),
        ms(converged),
        ms(usage_at)
    );

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    let _ = redis.kill();
    let _ = redis.wait();
    c.drop_databases().await;
}
