//! Provisioning throughput: N tenants created by C concurrent clients on a
//! stack with three cells; latency of `createTenant` until the tenant is
//! ACTIVE (createTenant answers once its saga ended), p50/p99, tenants/s.
//!
//! cargo bench -p e2e --bench provisioning -- [--backend postgres|sqlite] [--tenants N] [--concurrency C]

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::stack::CREATE;
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::json;

fn args() -> (Backend, usize, usize) {
    let (mut backend, mut tenants, mut concurrency) = (Backend::Postgres, 1000, 16);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--backend" => {
                backend = if it.next().as_deref() == Some("sqlite") {
                    Backend::Sqlite
                } else {
                    Backend::Postgres
                }
            }
            "--tenants" => tenants = it.next().and_then(|v| v.parse().ok()).unwrap_or(tenants),
            "--concurrency" => {
                concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(concurrency)
            }
            _ => {} // cargo bench passes --bench
        }
    }
    (backend, tenants, concurrency)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let (backend, tenants, concurrency) = args();
    let mut o = Options::new(backend);
    o.cells = ["us-east-1-a", "us-east-1-b", "us-east-1-c"]
        .into_iter()
        .map(|id| CellSpec {
            id,
            region: "us-east-1",
            capacity: 1_000_000,
        })
        .collect();
    let s = Arc::new(Stack::start_with(o).await);
    let admin = s.admin();
    // Warm-up: connections, prepared statements.
    for i in 0..20 {
        s.create_tenant(&format!("warm-{i}"), "us-east-1").await;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (s, next, admin) = (s.clone(), next.clone(), admin.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tenants {
                        return (lat, errors);
                    }
                    let t0 = Instant::now();
                    let v = s
                        .gql(
                            &admin,
                            CREATE,
                            json!({ "input": { "idempotencyKey": format!("bench-{i}"), "slug": format!("bench-{i}"),
                                "name": "Bench", "region": "us-east-1", "plan": "pro" } }),
                        )
                        .await;
                    if v["data"]["createTenant"]["status"] == "ACTIVE" {
                        lat.push(t0.elapsed());
                    } else {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("not ACTIVE: {v}");
                        }
                    }
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed();
    lat.sort();
    println!(
        "backend={backend:?} cells=3 tenants={tenants} clients={concurrency} active={} errors={errors} \
         wall={:.1}s tenants/s={:.1} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => eprintln!("stack still shared; not stopped"),
    }
}
