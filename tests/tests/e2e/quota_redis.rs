//! Several replicas of a cell share their limiter state in Redis (one
//! atomic script per decision). When Redis is unreachable each metric's
//! fail-open/fail-closed choice decides, counted in `/metrics`; decisions
//! come from Redis again once it returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::quota::{SET, consume, data_plane, define, hook, wait_synced};
use e2e::stack::start_cell;
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::json;
use shared::quota::hooks::{CHECK, CONSUME};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to the real Redis that can be cut (connections dropped,
/// new ones closed at once) and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (u, g) = (up.clone(), generation.clone());
        let target = e2e::backing::redis_url()
            .trim_start_matches("redis://")
            .to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = g.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn unavailable(metrics: &str, metric: &str, decision: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("tcp_quota_store_unavailable_total")
                && l.contains(&format!("metric=\"{metric}\""))
                && l.contains(&format!("decision=\"{decision}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn replicas_share_limits_in_redis_and_each_metric_fails_open_or_closed() {
    let proxy = Proxy::start().await;
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![CellSpec {
        id: "eu-west-1-a",
        region: "eu-west-1",
        capacity: 100,
    }];
    o.quota.limiter = cell::quota::LimiterKind::Redis;
    o.quota.redis_url = Some(format!("redis://127.0.0.1:{}", proxy.port));
    o.quota.redis_timeout = Duration::from_millis(200);
    let s = Stack::start_with(o.clone()).await;
    define(&s, "m.open", "PERIODIC", "OPEN").await;
    define(&s, "m.closed", "PERIODIC", "CLOSED").await;
    wait_synced(&s, &["m.open", "m.closed"]).await;
    let t = s.create_tenant("redis-t", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for m in ["m.open", "m.closed"] {
        let v = s
            .gql(
                &s.admin(),
                SET,
                json!({ "i": { "tenantId": t, "metric": m, "limit": 5, "period": "DAY",
            "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": m } }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    // A second replica of the same cell, on the same database and Redis.
    let spec = o.cells[0].clone();
    let db = s.cell_database_urls[spec.id].clone();
    let replica = start_cell(&spec, db, &s.url(), &s.keys, &o, &s.redis_prefix, None).await;
    replica.state.quota.reload_catalog().await.unwrap();
    let (one, two) = (s.cell(spec.id).url(), replica.url());
    let tok = data_plane(&s, spec.id, &[]);
    let tk = Some(tok.as_str());

    let (_, d) = hook(&s, &one, CONSUME, tk, consume(&t, "m.closed", 3, "k1")).await;
    assert_eq!(
        (d["allowed"].as_bool(), d["remaining"].as_i64()),
        (Some(true), Some(2)),
        "{d}"
    );
    // The other replica sees the count, and answers the same key's retry with the first decision.
    let (_, again) = hook(&s, &two, CONSUME, tk, consume(&t, "m.closed", 3, "k1")).await;
    assert_eq!(again, d);
    let (_, d2) = hook(&s, &two, CONSUME, tk, consume(&t, "m.closed", 3, "k2")).await;
    assert_eq!(d2["allowed"], false, "3 + 3 > 5 across replicas: {d2}");

    proxy.cut();
    let (_, open) = hook(&s, &one, CONSUME, tk, consume(&t, "m.open", 1, "o1")).await;
    assert_eq!(open["allowed"], true, "fail-open: {open}");
    let (_, closed) = hook(&s, &one, CONSUME, tk, consume(&t, "m.closed", 1, "c1")).await;
    assert_eq!(closed["allowed"], false, "fail-closed: {closed}");
    let (_, checked) = hook(
        &s,
        &one,
        CHECK,
        tk,
        json!({ "tenantId": t, "metric": "m.closed", "amount": 1 }),
    )
    .await;
    assert_eq!(checked["allowed"], false);
    let text = e2e::stack::metrics_request(&reqwest::Client::new(), &one)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(unavailable(&text, "m.open", "allowed"), 1, "{text}");
    assert_eq!(unavailable(&text, "m.closed", "denied"), 2, "{text}");

    proxy.restore();
    let mut back = serde_json::Value::Null;
    for i in 0..50 {
        back = hook(
            &s,
            &one,
            CONSUME,
            tk,
            consume(&t, "m.closed", 2, &format!("after{i}")),
        )
        .await
        .1;
        if back["allowed"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (back["allowed"].as_bool(), back["remaining"].as_i64()),
        (Some(true), Some(0)),
        "Redis kept the count of 3: {back}"
    );
    replica.stop().await;
    s.stop().await;
}
