//! `tenant(id)` against `{ __typename }` on the same global tier, with the
//! same client, in the same run: requests per second, p50 and p99.
//!
//! cargo bench -p e2e --bench graphql_read -- [--backend postgres|sqlite] [--secs N] [--concurrency N] [--tracing]
//!
//! `--tracing` installs an info-level JSON subscriber writing to a sink, to
//! measure what per-request spans cost.

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Backend, Stack};
use serde_json::json;

struct Args {
    backend: Backend,
    secs: u64,
    concurrency: usize,
    tracing: bool,
}

fn args() -> Args {
    let mut a = Args {
        backend: Backend::Postgres,
        secs: 10,
        concurrency: 16,
        tracing: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--backend" => {
                a.backend = if it.next().as_deref() == Some("sqlite") {
                    Backend::Sqlite
                } else {
                    Backend::Postgres
                }
            }
            "--secs" => a.secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.secs),
            "--concurrency" => {
                a.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.concurrency)
            }
            "--tracing" => a.tracing = true,
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

struct Result {
    name: &'static str,
    requests: usize,
    errors: usize,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn run(
    name: &'static str,
    url: &str,
    token: &str,
    body_for: Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>,
    a: &Args,
) -> Result {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let workers = (0..a.concurrency).map(|w| {
        let client = client.clone();
        let url = format!("{url}/graphql");
        let token = token.to_owned();
        let body_for = body_for.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = w;
            while Instant::now() < deadline {
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body_for(i))
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .map(|v| v.get("errors").is_none())
                        .unwrap_or(false),
                    _ => false,
                };
                lat.push(started.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        })
    });
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in futures_util::future::join_all(workers).await {
        let (lat, e) = w.expect("worker");
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Result {
        name,
        requests: all.len(),
        errors,
        rps: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn main() {
    let a = args();
    if a.tracing {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(std::io::sink)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = Stack::start(a.backend).await;
        let mut ids = Vec::new();
        for i in 0..50 {
            let region = if i % 2 == 0 { "us-east-1" } else { "eu-west-1" };
            ids.push(s.create_tenant(&format!("bench-{i}"), region).await["id"].as_str().unwrap().to_owned());
        }
        let token = s.admin();
        let ids = Arc::new(ids);
        let typename: Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync> = Arc::new(|_| json!({ "query": "{ __typename }" }));
        let tenant: Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync> = {
            let ids = ids.clone();
            Arc::new(move |i| json!({
                "query": "query($id: ID!) { tenant(id: $id) { id slug name plan status version cell { id region } } }",
                "variables": { "id": ids[i % ids.len()] },
            }))
        };
        // Warm up both paths (connection pools, caches).
        let warm = Args { secs: 1, ..a };
        run("warmup", &s.url(), &token, typename.clone(), &warm).await;
        run("warmup", &s.url(), &token, tenant.clone(), &warm).await;
        let base = run("{ __typename }", &s.url(), &token, typename, &a).await;
        let read = run("tenant(id)", &s.url(), &token, tenant, &a).await;
        println!(
            "backend={:?} concurrency={} secs={} tracing={}",
            a.backend, a.concurrency, a.secs, if a.tracing { "info spans (JSON to sink)" } else { "off" }
        );
        println!("{:<16} {:>10} {:>8} {:>10} {:>9} {:>9}", "query", "requests", "errors", "req/s", "p50 ms", "p99 ms");
        for r in [&base, &read] {
            println!(
                "{:<16} {:>10} {:>8} {:>10.0} {:>9.2} {:>9.2}",
                r.name, r.requests, r.errors, r.rps, r.p50_us as f64 / 1000.0, r.p99_us as f64 / 1000.0
            );
        }
        println!("ratio tenant(id)/__typename throughput: {:.2}", read.rps / base.rps);
        s.stop().await;
    });
}
