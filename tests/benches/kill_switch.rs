//! How long the kill switch takes to reach every cell: from sending
//! `killFlag` to the last of three cells serving the off variant, on
//! PostgreSQL + Redis.
//!
//! cargo bench -p e2e --bench kill_switch -- [--kills N]
//!
//! Each round turns the flag on for everyone (`setFlagTargeting`), waits
//! until every cell serves it, then kills it and polls each cell's compiled
//! snapshot (in process, every 100 µs) until it serves `off`.

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use e2e::flags::{boolean_flag, kill_flag, set_targeting};
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::json;
use shared::flags::eval::Context;

fn kills() -> usize {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--kills" {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(200);
        }
    }
    200
}

async fn all_serve(s: &Stack, tenants: &[(uuid::Uuid, usize)], variant: &str) {
    let ctx = Context::new();
    loop {
        let done = tenants.iter().all(|(t, cell)| {
            s.cells[*cell]
                .state
                .flags
                .engine()
                .evaluate(*t, "bench-kill", "prod", &ctx)
                .ok()
                .and_then(|e| e.variant)
                == Some(variant)
        });
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

fn main() {
    let n = kills();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = Options::new(Backend::Postgres);
        o.cells = vec![
            CellSpec {
                id: "us-east-1-a",
                region: "us-east-1",
                capacity: 10,
            },
            CellSpec {
                id: "us-east-1-b",
                region: "us-east-1",
                capacity: 10,
            },
            CellSpec {
                id: "eu-west-1-a",
                region: "eu-west-1",
                capacity: 10,
            },
        ];
        let s = Stack::start_with(o).await;
        let admin = s.admin();
        let mut tenants = Vec::new();
        for i in 0..6 {
            let region = if i % 2 == 0 { "us-east-1" } else { "eu-west-1" };
            let t = s.create_tenant(&format!("kill-{i}"), region).await;
            let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
            let cell = s
                .cells
                .iter()
                .position(|c| c.state.cell_id.as_str() == t["cell"]["id"].as_str().unwrap())
                .unwrap();
            tenants.push((id, cell));
        }
        let mut version = boolean_flag(&s, "bench-kill").await["version"]
            .as_i64()
            .unwrap();
        let mut samples = Vec::with_capacity(n);
        for round in 0..n {
            let on = s
                .gql(
                    &admin,
                    &set_targeting(),
                    json!({ "i": { "key": "bench-kill", "environment": "prod",
                "enabled": true, "rules": [], "defaultVariant": "on", "expectedVersion": version,
                "idempotencyKey": format!("on-{round}") } }),
                )
                .await;
            assert!(on.get("errors").is_none(), "{on}");
            all_serve(&s, &tenants, "on").await;
            let started = Instant::now();
            let killed = s
                .gql(
                    &admin,
                    &kill_flag(),
                    json!({ "k": "bench-kill", "e": "prod" }),
                )
                .await;
            version = killed["data"]["killFlag"]["version"]
                .as_i64()
                .unwrap_or_else(|| panic!("{killed}"));
            all_serve(&s, &tenants, "off").await;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!("kills={n} cells=3 tenants={}", tenants.len());
        println!(
            "kill switch → every cell serves off, ms: p50={:.2} p90={:.2} p99={:.2} max={:.2}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            samples[samples.len() - 1]
        );
        s.stop().await;
    });
}
