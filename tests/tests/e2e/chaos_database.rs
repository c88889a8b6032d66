//! Chaos: a cell's database down. The EU cell reaches PostgreSQL through a
//! TCP proxy the test runs; the test cuts every connection and refuses new
//! ones. That cell answers 503 on /readyz; its quota hooks decide by each
//! metric's fail mode (OPEN allows, CLOSED denies), flags keep being served
//! from its compiled snapshot, usage and writes answer UNAVAILABLE; it
//! withholds its heartbeat, so the global tier marks it DOWN and
//! provisioning into its region is refused; the other cells are
//! untouched. When the proxy listens again the cell recovers by itself.
//! Prints the detection and recovery times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::chaos::{CELLS, Chaos, METRIC, meter, ms};
use e2e::process::terminate;
use e2e::stack::{CREATE, code};
use e2e::tcp_proxy::Proxy;
use serde_json::json;
use shared::error::Code;

const CLOSED: &str = "api.closed";

async fn readyz(c: &Chaos, i: usize) -> u16 {
    c.http
        .get(format!("{}/readyz", c.cell_url(i)))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `tcp_quota_store_unavailable_total{metric, decision}` of cell `i`.
async fn failed_over(c: &Chaos, i: usize, metric: &str, decision: &str) -> u64 {
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
            l.starts_with("tcp_quota_store_unavailable_total")
                && l.contains(&format!("metric=\"{metric}\""))
                && l.contains(&format!("decision=\"{decision}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_without_its_database_is_not_ready_and_fails_by_each_metrics_mode() {
    let mut chaos = Chaos::new(None).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    chaos.cell_db_override[2] = Some(proxy.url(&chaos.urls[3]));
    let c = Arc::new(chaos);
    let _reaper = c.reaper();
    let (global, cells) = c.start().await;
    let us = c.create("d-us-0", "us-east-1").await;
    let eu = c.create("d-eu-0", "eu-west-1").await;
    c.catalog(&[&us, &eu]).await;
    let v = c
        .gql(
            e2e::quota::DEFINE,
            json!({ "i": { "name": CLOSED, "kind": "PERIODIC", "unit": "call", "failMode": "CLOSED" } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    for t in [&us, &eu] {
        c.wait_variant(t.cell, &t.id, "on", Duration::from_secs(20))
            .await;
        // Both metrics in the cell's catalog, probed with the US tenant
        // only: the EU cell has not cached the EU tenant's rules before the
        // cut.
        for _ in 0..200 {
            let h = c.hooks(t.cell);
            let known = |r: Result<_, shared::Error>| !matches!(r, Err(e) if e.code() == Code::BadUserInput);
            if known(h.check(&us.id, METRIC, 1).await) && known(h.check(&us.id, CLOSED, 1).await) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(readyz(&c, 2).await, 200);

    // The database goes away under the EU cell.
    proxy.cut();
    let cut = Instant::now();
    while readyz(&c, 2).await != 503 {
        assert!(
            cut.elapsed() < Duration::from_secs(15),
            "the EU cell never reported not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "database down: /readyz 503 {} ms after the cut",
        ms(cut.elapsed())
    );

    // It withholds its heartbeat: the global tier marks it DOWN, and
    // provisioning into its region (it is the only cell there) is refused.
    c.wait_status(&[2], "DOWN", Duration::from_secs(15)).await;
    eprintln!(
        "database down: the EU cell DOWN at the global tier {} ms after the cut",
        ms(cut.elapsed())
    );
    let refused = c
        .gql(
            CREATE,
            json!({ "input": { "idempotencyKey": "d-eu-new", "slug": "d-eu-new", "name": "x", "region": "eu-west-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(code(&refused), Some("UNAVAILABLE"), "{refused}");
    let others = c.statuses().await;
    assert_eq!(
        (others[CELLS[0].0].as_str(), others[CELLS[1].0].as_str()),
        ("UP", "UP")
    );

    // Its hooks: the tenant's rules cannot be read, so each metric's fail
    // mode decides; flags are served from the compiled snapshot.
    let h = c.hooks(2);
    let open = h.consume(&eu.id, METRIC, 1, "db-open").await.unwrap();
    assert!(open.allowed && open.limit.is_none(), "fail-open: {open:?}");
    let closed = h.consume(&eu.id, CLOSED, 1, "db-closed").await.unwrap();
    assert!(
        !closed.allowed && closed.retry_after_ms == Some(1000),
        "fail-closed: {closed:?}"
    );
    assert_eq!(failed_over(&c, 2, METRIC, "allowed").await, 1);
    assert_eq!(failed_over(&c, 2, CLOSED, "denied").await, 1);
    assert_eq!(c.evaluate(2, &eu.id).await.as_deref(), Ok("on"));
    let usage = meter(&h, &eu.id, 1, "db-usage").await;
    assert_eq!(
        usage,
        Err("Unavailable".into()),
        "usage is never acknowledged without its database"
    );
    let write = c.write_config(&eu.id, 0, 1, "db-write").await;
    assert_eq!(write, Err("UNAVAILABLE".into()));

    // The other cells are untouched.
    assert_eq!(readyz(&c, 0).await, 200);
    assert_eq!(readyz(&c, 1).await, 200);
    let hu = c.hooks(us.cell);
    let d = hu.consume(&us.id, METRIC, 1, "db-us").await.unwrap();
    assert!(d.allowed && d.limit.is_some(), "{d:?}");
    let d = hu.consume(&us.id, CLOSED, 1, "db-us-closed").await.unwrap();
    assert!(d.allowed, "{d:?}");
    meter(&hu, &us.id, 1, "db-us-usage").await.unwrap();
    assert_eq!(c.write_config(&us.id, 0, 1, "us-write").await, Ok(1));
    assert_eq!(c.evaluate(us.cell, &us.id).await.as_deref(), Ok("on"));
    assert_eq!(failed_over(&c, us.cell, METRIC, "allowed").await, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The database comes back: the cell recovers by itself.
    proxy.restore().await;
    let back = Instant::now();
    while readyz(&c, 2).await != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the EU cell never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = back.elapsed();
    let mut written = c.write_config(&eu.id, 0, 1, "db-write-2").await;
    while written.is_err() && back.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        written = c.write_config(&eu.id, 0, 1, "db-write-2").await;
    }
    assert_eq!(written, Ok(1), "the refused write left nothing behind");
    let d = h.consume(&eu.id, CLOSED, 1, "db-closed-2").await.unwrap();
    assert!(d.allowed && d.limit.is_none(), "no rule on {CLOSED}: {d:?}");
    let d = h.consume(&eu.id, METRIC, 1, "db-open-2").await.unwrap();
    assert!(
        d.allowed && d.limit.is_some(),
        "the plan's rule again: {d:?}"
    );
    meter(&h, &eu.id, 1, "db-usage").await.unwrap();
    c.wait_usage(&eu.id, 1, Duration::from_secs(20)).await;
    c.wait_status(&[2], "UP", Duration::from_secs(15)).await;
    c.create("d-eu-1", "eu-west-1").await;
    eprintln!(
        "database down: EU cell ready {} ms after the proxy listened again, serving writes {} ms after",
        ms(ready),
        ms(back.elapsed())
    );

    for cell in cells {
        terminate(cell);
    }
    terminate(global);
    drop(proxy);
    c.drop_databases().await;
}
